package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"go.uber.org/goleak"
)

var brokers brokertest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	brokers.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// kafkaVersions are the releases the interop runs against: the Java client
// (4.4.0) with both group coordinators.
var kafkaVersions = []string{"4.x", "3.9.x"}

func kafkaBroker(t *testing.T, version string) *brokertest.Broker {
	return brokers.Get(t, "kafka-"+version, func(tb testing.TB) *brokertest.Broker {
		return brokertest.Kafka(tb, brokertest.KafkaVersion(version))
	})
}

// javaEvent is one line the Java program prints.
type javaEvent struct {
	Mode              string  `json:"mode"`
	ID                string  `json:"id"`
	Source            string  `json:"source"`
	Type              string  `json:"type"`
	Key               *string `json:"key"`
	PartitionKey      *string `json:"partitionkey"`
	DataContentType   *string `json:"datacontenttype"`
	ContentTypeHeader *string `json:"contenttypeheader"`
	Data              *string `json:"data"`
}

// javaProgram returns the java command line prefix for the interop program,
// building it first when .build/interop does not hold the current sources.
func javaProgram(t *testing.T) []string {
	t.Helper()
	src, err := filepath.Abs("java")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(src, "..", "..", "..", ".build", "interop")
	stamp := sourceStamp(t, src)
	java, errJava := exec.LookPath("java")
	if errJava != nil {
		missingSoftware(t, "java")
	}
	if _, err := os.Stat(filepath.Join(out, stamp)); err != nil {
		mvn, err := exec.LookPath("mvn")
		if err != nil {
			missingSoftware(t, "mvn (Maven) to build the Java interop program")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_ = os.RemoveAll(out)
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		cmd := exec.CommandContext(ctx, mvn, "-q", "-B", "-Dstyle.color=never",
			"-f", filepath.Join(src, "pom.xml"), "-Dinterop.out="+out, "package")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building the Java interop program: %v\n%s", err, b)
		}
		if err := os.WriteFile(filepath.Join(out, stamp), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("built the Java interop program in %v", time.Since(begin).Round(time.Millisecond))
	}
	cp := filepath.Join(out, "classes") + string(os.PathListSeparator) + filepath.Join(out, "libs", "*")
	return []string{java, "-Xmx256m", "-cp", cp, "interop.Main"}
}

// sourceStamp hashes the Java sources like scripts/install-brokers does
// (the contents of every file, in byte order of their paths).
func sourceStamp(t *testing.T, src string) string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "target" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func missingSoftware(t *testing.T, what string) {
	t.Helper()
	msg := what + " is not installed; install it with " + brokertest.InstallCommand
	if v, _ := strconv.ParseBool(os.Getenv(brokertest.RequireEnv)); v {
		t.Fatalf("%s (%s is set)", msg, brokertest.RequireEnv)
	}
	t.Skip(msg)
}

// runJava runs the interop program and parses its output lines.
func runJava(t *testing.T, args ...string) []javaEvent {
	t.Helper()
	prog := javaProgram(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, prog[0], append(prog[1:], args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("java %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	var evs []javaEvent
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var e javaEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("java output line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// newBus returns a bus on a Kafka adapter of addr; ser nil means the
// default (JSON) Serializer.
func newBus(t *testing.T, addr string, binary bool, ser eventstream.Serializer) eventstream.Bus {
	t.Helper()
	a, err := kafka.NewAdapter(kafka.Config{
		Brokers:           []string{addr},
		AutoCreateTopics:  true,
		TopicPartitions:   3,
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: 500 * time.Millisecond,
		RebalanceTimeout:  6 * time.Second,
		CommitInterval:    100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.Distributed.BinaryMode = binary
	if ser != nil {
		cfg.Distributed.Serializer = ser
	}
	cfg.Source = "/go/interop"
	bus, err := eventstream.New(cfg)
	if err != nil {
		_ = a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bus.Close(); err != nil {
			t.Errorf("bus.Close: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("adapter Close: %v", err)
		}
	})
	return bus
}

type payload struct {
	N    int    `json:"n"`
	Mode string `json:"mode"`
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

const events = 6

func jsonLine(e javaEvent) string {
	b, _ := json.Marshal(e)
	return string(b)
}

func TestJavaReadsWhatTheBusEmits(t *testing.T) {
	for _, v := range kafkaVersions {
		t.Run("kafka-"+v, func(t *testing.T) { javaReads(t, kafkaBroker(t, v)) })
	}
}

func javaReads(t *testing.T, b *brokertest.Broker) {
	for _, mode := range []string{"structured", "binary"} {
		t.Run(mode, func(t *testing.T) {
			topic := fmt.Sprintf("interop.go-to-java.%s.%d", mode, time.Now().UnixNano())
			bus := newBus(t, b.Addr(), mode == "binary", nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			want := map[string]javaEvent{}
			for i := range events {
				id := fmt.Sprintf("go-%s-%d", mode, i)
				key := fmt.Sprintf("customer-%d", i%3)
				data, err := json.Marshal(payload{N: i, Mode: mode})
				if err != nil {
					t.Fatal(err)
				}
				d := string(data)
				want[id] = javaEvent{Mode: mode, ID: id, Source: "/go/interop", Type: "io.eventstream.interop.go", Key: &key, Data: &d}
				err = bus.Publish(ctx, &eventstream.Event{Topic: topic, ID: id, Type: "io.eventstream.interop.go", Key: key, Data: payload{N: i, Mode: mode}})
				if err != nil {
					t.Fatalf("Publish %s: %v", id, err)
				}
			}
			got := runJava(t, "consume", b.Addr(), topic, strconv.Itoa(events), "60000")
			if len(got) != events {
				t.Fatalf("java read %d events, want %d", len(got), events)
			}
			t.Logf("java read e.g. %s", jsonLine(got[0]))
			for _, g := range got {
				w, ok := want[g.ID]
				if !ok {
					t.Errorf("java read an unknown event %+v", g)
					continue
				}
				delete(want, g.ID)
				if g.Mode != w.Mode || g.Source != w.Source || g.Type != w.Type || str(g.Key) != str(w.Key) || str(g.Data) != str(w.Data) {
					t.Errorf("event %s: java read mode %s source %q type %q key %q data %q; want mode %s source %q type %q key %q data %q",
						g.ID, g.Mode, g.Source, g.Type, str(g.Key), str(g.Data), w.Mode, w.Source, w.Type, str(w.Key), str(w.Data))
				}
				if str(g.PartitionKey) != str(w.Key) {
					t.Errorf("event %s: partitionkey extension %q, want the key %q", g.ID, str(g.PartitionKey), str(w.Key))
				}
				if str(g.DataContentType) != "application/json" {
					t.Errorf("event %s: datacontenttype %q, want application/json", g.ID, str(g.DataContentType))
				}
			}
		})
	}
}

func TestBusHandlesWhatJavaProduces(t *testing.T) {
	for _, v := range kafkaVersions {
		t.Run("kafka-"+v, func(t *testing.T) { busHandles(t, kafkaBroker(t, v)) })
	}
}

func busHandles(t *testing.T, b *brokertest.Broker) {
	for _, mode := range []string{"structured", "binary"} {
		t.Run(mode, func(t *testing.T) {
			topic := fmt.Sprintf("interop.java-to-go.%s.%d", mode, time.Now().UnixNano())
			sent := runJava(t, "produce", b.Addr(), topic, mode, strconv.Itoa(events))
			if len(sent) != events {
				t.Fatalf("java reported %d events sent, want %d", len(sent), events)
			}
			t.Logf("java sent e.g. %s", jsonLine(sent[0]))
			bus := newBus(t, b.Addr(), false, nil)
			var mu sync.Mutex
			got := map[string]*eventstream.Event{}
			all := make(chan struct{})
			_, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
				mu.Lock()
				defer mu.Unlock()
				got[e.ID] = e
				if len(got) == events {
					close(all)
				}
				return nil
			}, eventstream.WithConsumerGroup("go-interop"))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-all:
			case <-time.After(time.Minute):
				mu.Lock()
				t.Fatalf("bus handled %d of %d events", len(got), events)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range sent {
				e, ok := got[s.ID]
				if !ok {
					t.Errorf("event %s not handled", s.ID)
					continue
				}
				data, _ := e.Data.([]byte)
				if e.Source != s.Source || e.Type != s.Type || e.Key != str(s.Key) || string(data) != str(s.Data) || e.ContentType != "application/json" {
					t.Errorf("event %s: bus saw source %q type %q key %q data %q content type %q; java sent source %q type %q key %q data %q",
						s.ID, e.Source, e.Type, e.Key, data, e.ContentType, s.Source, s.Type, str(s.Key), str(s.Data))
				}
				var p payload
				if err := e.Unmarshal(&p); err != nil || p.Mode != mode {
					t.Errorf("event %s: Unmarshal: %+v, %v", s.ID, p, err)
				}
			}
		})
	}
}

// textSerializer reads and writes plain text (text/plain): Marshal takes a
// string, Unmarshal fills a *string.
type textSerializer struct{}

func (textSerializer) ContentType() string { return "text/plain" }

func (textSerializer) Marshal(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("textSerializer: %T is not a string", v)
	}
	return []byte(s), nil
}

func (textSerializer) Unmarshal(data []byte, v any) error {
	p, ok := v.(*string)
	if !ok {
		return fmt.Errorf("textSerializer: %T is not a *string", v)
	}
	*p = string(data)
	return nil
}

// plainSerializers are the non-JSON content types whose text payloads a
// structured envelope carries as a JSON string in "data".
var plainSerializers = []eventstream.Serializer{eventstream.RawSerializer{}, textSerializer{}}

// rawValue returns the value of the first record of topic, read with an
// adapter of its own.
func rawValue(t *testing.T, addr, topic string) []byte {
	t.Helper()
	a, err := kafka.NewAdapter(kafka.Config{Brokers: []string{addr}, SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, stop, err := a.Subscribe(ctx, topic, "raw-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case m := <-ch:
		return bytes.Clone(m.Value())
	case <-ctx.Done():
		t.Fatalf("no record on %s", topic)
		return nil
	}
}

func TestJavaReadsPlainText(t *testing.T) {
	for _, v := range kafkaVersions {
		t.Run("kafka-"+v, func(t *testing.T) { javaReadsText(t, kafkaBroker(t, v)) })
	}
}

// javaReadsText: plain-text payloads of non-JSON content types, as the bus
// emits them (in structured mode a JSON string in "data", not
// "data_base64"), read by the Java SDK as the same text with the same
// datacontenttype.
func javaReadsText(t *testing.T, b *brokertest.Broker) {
	for _, ser := range plainSerializers {
		for _, mode := range []string{"structured", "binary"} {
			t.Run(strings.ReplaceAll(ser.ContentType(), "/", "-")+"/"+mode, func(t *testing.T) {
				topic := fmt.Sprintf("interop.go-to-java.text.%s.%d", mode, time.Now().UnixNano())
				bus := newBus(t, b.Addr(), mode == "binary", ser)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				want := map[string]string{}
				for i := range events {
					id := fmt.Sprintf("go-text-%s-%d", mode, i)
					text := fmt.Sprintf("línea %d from Go, %s", i, mode)
					want[id] = text
					err := bus.Publish(ctx, &eventstream.Event{Topic: topic, ID: id, Type: "io.eventstream.interop.text", Key: "k", Data: text})
					if err != nil {
						t.Fatalf("Publish %s: %v", id, err)
					}
				}
				if mode == "structured" {
					v := rawValue(t, b.Addr(), topic)
					if !bytes.Contains(v, []byte(`"data":"línea `)) || bytes.Contains(v, []byte("data_base64")) {
						t.Fatalf("the envelope does not carry the text as a JSON string in \"data\": %s", v)
					}
				}
				got := runJava(t, "consume", b.Addr(), topic, strconv.Itoa(events), "60000")
				if len(got) != events {
					t.Fatalf("java read %d events, want %d", len(got), events)
				}
				t.Logf("java read e.g. %s", jsonLine(got[0]))
				for _, g := range got {
					w, ok := want[g.ID]
					if !ok {
						t.Errorf("java read an unknown event %+v", g)
						continue
					}
					delete(want, g.ID)
					if g.Mode != mode || str(g.Data) != w || str(g.DataContentType) != ser.ContentType() {
						t.Errorf("event %s: java read mode %s data %q datacontenttype %q; want mode %s data %q datacontenttype %q",
							g.ID, g.Mode, str(g.Data), str(g.DataContentType), mode, w, ser.ContentType())
					}
				}
			})
		}
	}
}

func TestBusHandlesPlainTextFromJava(t *testing.T) {
	for _, v := range kafkaVersions {
		t.Run("kafka-"+v, func(t *testing.T) { busHandlesText(t, kafkaBroker(t, v)) })
	}
}

// busHandlesText: text/plain events the Java SDK writes (in structured mode
// the text as a JSON string in "data") reach a handler as the same text.
func busHandlesText(t *testing.T, b *brokertest.Broker) {
	for _, mode := range []string{"structured", "binary"} {
		t.Run(mode, func(t *testing.T) {
			topic := fmt.Sprintf("interop.java-to-go.text.%s.%d", mode, time.Now().UnixNano())
			sent := runJava(t, "produce", b.Addr(), topic, mode, strconv.Itoa(events), "text")
			if len(sent) != events {
				t.Fatalf("java reported %d events sent, want %d", len(sent), events)
			}
			t.Logf("java sent e.g. %s", jsonLine(sent[0]))
			if mode == "structured" {
				if v := rawValue(t, b.Addr(), topic); !bytes.Contains(v, []byte(`"data":"l`)) {
					t.Fatalf("the Java SDK did not write the text as a JSON string in \"data\": %s", v)
				}
			}
			bus := newBus(t, b.Addr(), false, textSerializer{})
			var mu sync.Mutex
			got := map[string]*eventstream.Event{}
			all := make(chan struct{})
			_, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
				mu.Lock()
				defer mu.Unlock()
				got[e.ID] = e
				if len(got) == events {
					close(all)
				}
				return nil
			}, eventstream.WithConsumerGroup("go-interop-text"))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-all:
			case <-time.After(time.Minute):
				mu.Lock()
				t.Fatalf("bus handled %d of %d events", len(got), events)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range sent {
				e, ok := got[s.ID]
				if !ok {
					t.Errorf("event %s not handled", s.ID)
					continue
				}
				var text string
				if err := e.Unmarshal(&text); err != nil || text != str(s.Data) || e.ContentType != "text/plain" {
					t.Errorf("event %s: bus read %q (%v), content type %q; java sent %q as text/plain", s.ID, text, err, e.ContentType, str(s.Data))
				}
			}
		})
	}
}
