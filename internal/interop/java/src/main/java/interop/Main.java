package interop;

import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.jackson.JsonFormat;
import io.cloudevents.kafka.CloudEventDeserializer;
import io.cloudevents.kafka.CloudEventSerializer;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java side of the eventstream interop test: reads CloudEvents with the
 * official Kafka client and the CloudEvents SDK's Kafka binding, or writes
 * them, and prints one JSON line per event (id, source, type, key, data, mode)
 * for the Go test to compare. produce writes JSON data (application/json), or
 * with "text" plain-text data (text/plain; in structured mode as a JSON string
 * in "data", which the SDK writes only when told to).
 *
 * <pre>
 * consume BOOTSTRAP TOPIC COUNT TIMEOUT_MS
 * produce BOOTSTRAP TOPIC binary|structured COUNT [json|text]
 * </pre>
 */
public final class Main {
  public static void main(String[] args) throws Exception {
    if (args.length == 5 && args[0].equals("consume")) {
      consume(args[1], args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]));
    } else if ((args.length == 5 || args.length == 6) && args[0].equals("produce")) {
      boolean text = args.length == 6 && args[5].equals("text");
      produce(args[1], args[2], args[3], Integer.parseInt(args[4]), text);
    } else {
      System.err.println("usage: consume BOOTSTRAP TOPIC COUNT TIMEOUT_MS | produce BOOTSTRAP TOPIC binary|structured COUNT [json|text]");
      System.exit(2);
    }
  }

  static void consume(String bootstrap, String topic, int count, long timeoutMs) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, "java-interop-" + UUID.randomUUID());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    // The SDK deserializer tells the modes apart: binary by the ce_
    // headers, structured by the content-type header.
    CloudEventDeserializer ce = new CloudEventDeserializer();
    ce.configure(new HashMap<>(), false);
    long deadline = System.currentTimeMillis() + timeoutMs;
    int seen = 0;
    try (KafkaConsumer<String, byte[]> c =
        new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
      c.subscribe(List.of(topic));
      while (seen < count) {
        if (System.currentTimeMillis() > deadline) {
          System.err.printf("timed out after %d of %d events%n", seen, count);
          System.exit(1);
        }
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
          String mode = r.headers().lastHeader("ce_specversion") != null ? "binary" : "structured";
          CloudEvent ev = ce.deserialize(r.topic(), r.headers(), r.value());
          Header ct = r.headers().lastHeader("content-type");
          print(mode, ev, r.key(), ct == null ? null : new String(ct.value(), StandardCharsets.UTF_8));
          seen++;
        }
      }
    }
  }

  static void produce(String bootstrap, String topic, String mode, int count, boolean text) throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    Map<String, Object> ceConf = new HashMap<>();
    ceConf.put(CloudEventSerializer.ENCODING_CONFIG, mode.equals("binary") ? "BINARY" : "STRUCTURED");
    ceConf.put(CloudEventSerializer.EVENT_FORMAT_CONFIG, JsonFormat.CONTENT_TYPE);
    CloudEventSerializer sdk = new CloudEventSerializer();
    sdk.configure(ceConf, false);
    Serializer<CloudEvent> ser = sdk;
    if (text && mode.equals("structured")) {
      // The SDK's structured format writes non-JSON data as data_base64
      // unless told to write text as a string, which the Kafka serializer's
      // configuration cannot say.
      JsonFormat format = new JsonFormat().withForceNonJsonDataToString();
      ser =
          new Serializer<>() {
            @Override
            public byte[] serialize(String topic, CloudEvent ev) {
              return format.serialize(ev);
            }

            @Override
            public byte[] serialize(String topic, Headers headers, CloudEvent ev) {
              headers.add("content-type", JsonFormat.CONTENT_TYPE.getBytes(StandardCharsets.UTF_8));
              return format.serialize(ev);
            }
          };
    }
    try (KafkaProducer<String, CloudEvent> prod = new KafkaProducer<>(p, new StringSerializer(), ser)) {
      for (int i = 0; i < count; i++) {
        String data =
            text ? "l\u00ednea " + i + " de Java, " + mode : "{\"n\":" + i + ",\"mode\":\"" + mode + "\"}";
        CloudEvent ev =
            CloudEventBuilder.v1()
                .withId("java-" + mode + "-" + i)
                .withSource(URI.create("/java/interop"))
                .withType("io.eventstream.interop.java")
                .withTime(OffsetDateTime.now())
                .withDataContentType(text ? "text/plain" : "application/json")
                .withData(data.getBytes(StandardCharsets.UTF_8))
                .build();
        String key = "key-" + (i % 3);
        prod.send(new ProducerRecord<>(topic, key, ev)).get();
        print(mode, ev, key, null);
      }
    }
  }

  static void print(String mode, CloudEvent ev, String key, String contentTypeHeader) {
    StringBuilder b = new StringBuilder("{");
    field(b, "mode", mode);
    field(b, "id", ev.getId());
    field(b, "source", ev.getSource().toString());
    field(b, "type", ev.getType());
    field(b, "key", key);
    Object pk = ev.getExtension("partitionkey");
    field(b, "partitionkey", pk == null ? null : pk.toString());
    field(b, "datacontenttype", ev.getDataContentType());
    field(b, "contenttypeheader", contentTypeHeader);
    field(b, "data", ev.getData() == null ? null : new String(ev.getData().toBytes(), StandardCharsets.UTF_8));
    b.setLength(b.length() - 1);
    System.out.println(b.append('}'));
    System.out.flush();
  }

  static void field(StringBuilder b, String name, String v) {
    b.append('"').append(name).append("\":");
    if (v == null) {
      b.append("null,");
      return;
    }
    b.append('"');
    for (char c : v.toCharArray()) {
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          // Escaped outside printable ASCII: stdout's charset is the locale's.
          if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
          else b.append(c);
        }
      }
    }
    b.append("\",");
  }
}
