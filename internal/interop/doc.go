// Package interop checks that events the bus writes to Apache Kafka are read
// correctly by the official Java client with the CloudEvents Java SDK
// (io.cloudevents:cloudevents-kafka), in structured and binary mode, and that
// CloudEvents the Java SDK writes are handled by the bus with the same
// attributes. The Java program is in java/ (a Maven project); the tests
// build it into .build/interop when scripts/install-brokers has not, and
// skip (fail with EVENTSTREAM_REQUIRE_BROKERS=1) when Java, Maven or Kafka
// are missing. The package has no API.
package interop
