package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The SASL user that KafkaSASL creates, for PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512 alike.
const (
	KafkaSASLUser     = "eventstream"
	KafkaSASLPassword = "eventstream-secret"
)

// KafkaOption configures Kafka.
type KafkaOption func(*kafkaConfig)

type kafkaConfig struct {
	version string
	sasl    bool
	props   [][2]string
}

// KafkaVersion selects the Kafka release: "4.x" (the default) is the newest
// installed 4.x release, "3.9.x" the newest installed 3.9 release (its
// group coordinator is the old one), and a full version such as "4.4.0"
// that exact release. scripts/install-brokers installs the releases the
// project tests with.
func KafkaVersion(v string) KafkaOption { return func(c *kafkaConfig) { c.version = v } }

// KafkaSASL adds a SASL_PLAINTEXT listener (Broker.SASLAddr) that accepts
// PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for the user KafkaSASLUser with
// password KafkaSASLPassword. The PLAINTEXT listener stays. For an external
// Kafka the SASL address comes from KAFKA_SASL_BROKERS; without it the test
// is skipped.
func KafkaSASL() KafkaOption { return func(c *kafkaConfig) { c.sasl = true } }

// KafkaProperty sets a broker property (server.properties key and value),
// overriding the test defaults described at Kafka. It is ignored for an
// external Kafka.
func KafkaProperty(key, value string) KafkaOption {
	return func(c *kafkaConfig) { c.props = append(c.props, [2]string{key, value}) }
}

// kafkaDefaults are the single-node test settings. Replication factors of 1
// are required with one broker; the rest make tests fast.
var kafkaDefaults = [][2]string{
	{"auto.create.topics.enable", "true"},
	{"delete.topic.enable", "true"},
	{"num.partitions", "3"},
	{"default.replication.factor", "1"},
	{"offsets.topic.replication.factor", "1"},
	{"offsets.topic.num.partitions", "3"},
	{"transaction.state.log.replication.factor", "1"},
	{"transaction.state.log.min.isr", "1"},
	{"transaction.state.log.num.partitions", "3"},
	{"share.coordinator.state.topic.replication.factor", "1"},
	{"share.coordinator.state.topic.min.isr", "1"},
	{"group.initial.rebalance.delay.ms", "0"},
	{"group.min.session.timeout.ms", "500"},
	{"log.segment.bytes", strconv.Itoa(16 << 20)},
	// After a SIGKILL the restarted broker cannot register until the
	// controller has fenced its previous incarnation, which takes the
	// broker session timeout (default 9s, measured: restart 13.9s instead
	// of ~5s).
	{"broker.session.timeout.ms", "2000"},
	{"broker.heartbeat.interval.ms", "500"},
}

// Kafka starts a private single-node Apache Kafka in KRaft mode (combined
// broker and controller, from the Maven jars that scripts/install-brokers
// puts under .build/kafka/<version>/libs) on free loopback ports with its
// own data directory, and returns once a Kafka metadata request on the
// PLAINTEXT listener lists the broker. Defaults for tests: topics are
// auto-created with 3 partitions, every replication factor is 1, the first
// group join is not delayed, session timeouts down to 500ms are accepted;
// KafkaProperty overrides any of them. Restart reuses the formatted data
// directory. The jars are looked up in the nearest .build/kafka above the
// working directory, or in $EVENTSTREAM_KAFKA_DIR. It skips t when Java or the jars are missing (fails it with
// RequireEnv set). With KAFKA_BROKERS set it returns that cluster as
// External instead (Addr is then the variable's value).
func Kafka(t testing.TB, opts ...KafkaOption) *Broker {
	t.Helper()
	cfg := kafkaConfig{version: "4.x"}
	for _, o := range opts {
		o(&cfg)
	}
	if addr := os.Getenv("KAFKA_BROKERS"); addr != "" {
		b := &Broker{kind: "kafka", addr: addr, url: addr, external: true}
		if cfg.sasl {
			b.saslAddr = os.Getenv("KAFKA_SASL_BROKERS")
			if b.saslAddr == "" {
				t.Skip("brokertest: KAFKA_BROKERS is set but KAFKA_SASL_BROKERS (a SASL_PLAINTEXT listener) is not")
			}
		}
		return b
	}
	java := findProgram("java")
	if home := os.Getenv("JAVA_HOME"); home != "" && isExecutable(filepath.Join(home, "bin", "java")) {
		java = filepath.Join(home, "bin", "java")
	}
	version, libs := findKafka(cfg.version)
	if java == "" || libs == "" {
		missing(t, fmt.Sprintf("Apache Kafka %s (java and the jars under .build/kafka)", cfg.version))
	}
	dir := newDir(t, "kafka-"+version)
	ports := freePorts(t, 3)
	port, ctrlPort, saslPort := ports[0], ports[1], ports[2]
	addr := "127.0.0.1:" + strconv.Itoa(port)

	listeners := fmt.Sprintf("PLAINTEXT://%s,CONTROLLER://127.0.0.1:%d", addr, ctrlPort)
	advertised := "PLAINTEXT://" + addr
	protocols := "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
	props := [][2]string{
		{"process.roles", "broker,controller"},
		{"node.id", "1"},
		{"controller.quorum.voters", fmt.Sprintf("1@127.0.0.1:%d", ctrlPort)},
		{"controller.listener.names", "CONTROLLER"},
		{"inter.broker.listener.name", "PLAINTEXT"},
		{"log.dirs", filepath.Join(dir, "data")},
	}
	var saslAddr string
	if cfg.sasl {
		saslAddr = "127.0.0.1:" + strconv.Itoa(saslPort)
		listeners += ",SASL_PLAINTEXT://" + saslAddr
		advertised += ",SASL_PLAINTEXT://" + saslAddr
		protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
		const scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
		props = append(props,
			[2]string{"sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"},
			[2]string{"listener.name.sasl_plaintext.plain.sasl.jaas.config", fmt.Sprintf(
				`org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`, KafkaSASLUser, KafkaSASLPassword)},
			[2]string{"listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config", scram},
			[2]string{"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config", scram},
		)
	}
	props = append(props,
		[2]string{"listeners", listeners},
		[2]string{"advertised.listeners", advertised},
		[2]string{"listener.security.protocol.map", protocols},
	)
	props = append(props, kafkaDefaults...)
	props = append(props, cfg.props...)
	var conf strings.Builder
	for _, kv := range props {
		// Later entries win in java.util.Properties, so overrides work.
		fmt.Fprintf(&conf, "%s=%s\n", kv[0], kv[1])
	}
	confPath := filepath.Join(dir, "server.properties")
	writeFile(t, confPath, conf.String(), 0o644)
	logArg := writeKafkaLogConfig(t, dir, version)
	classpath := filepath.Join(libs, "*") // java expands dir/* itself

	b := &Broker{
		tool: func(ctx context.Context, class string, args ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, java, append([]string{logArg, "-Dlog.level=WARN", "-Xmx256m",
				"-cp", classpath, class}, args...)...)
			cmd.Dir = dir
			return cmd
		},
		kind:        "kafka",
		version:     version,
		addr:        addr,
		url:         addr,
		saslAddr:    saslAddr,
		dir:         dir,
		logPath:     filepath.Join(dir, "broker.log"),
		deathSignal: syscall.SIGKILL,
		command: func() *exec.Cmd {
			cmd := exec.Command(java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
				"-Djava.awt.headless=true", logArg, "-Dlog.level=INFO", "-Dkafka.logs.dir="+filepath.Join(dir, "logs"),
				"-cp", classpath, "kafka.Kafka", confPath)
			cmd.Dir = dir
			return cmd
		},
		ready: func() error {
			if err := kafkaMetadataReady(addr); err != nil {
				return err
			}
			if saslAddr != "" {
				c, err := net.DialTimeout("tcp", saslAddr, dialTimeout)
				if err != nil {
					return err
				}
				_ = c.Close()
			}
			return nil
		},
	}
	t.Cleanup(b.cleanup) // removes dir even if formatting fails
	begin := time.Now()
	format := []string{logArg, "-Dlog.level=WARN", "-Xmx256m", "-cp", classpath,
		"kafka.tools.StorageTool", "format", "-t", randomClusterID(t), "-c", confPath}
	if cfg.sasl {
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
			format = append(format, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", mech, KafkaSASLUser, KafkaSASLPassword))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, java, format...).CombinedOutput()
	writeFile(t, b.logPath, "=== brokertest: kafka-storage format ===\n"+string(out), 0o644)
	if err != nil {
		t.Fatalf("brokertest: formatting kafka %s storage: %v\n%s", version, err, out)
	}
	formatTime := time.Since(begin)
	b.launch(t)
	t.Logf("brokertest: kafka %s: format %v, start %v", version, formatTime.Round(time.Millisecond), b.StartTime().Round(time.Millisecond))
	return b
}

// KafkaTool runs a Java command-line tool of the private Kafka broker's
// release with its jars, for example
//
//	b.KafkaTool(t, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
//		"--bootstrap-server", b.Addr(), "--describe", "--group", "g")
//
// Classes in both 3.9.2 and 4.4.0: org.apache.kafka.tools.TopicCommand,
// org.apache.kafka.tools.GetOffsetShell and the ConsumerGroupCommand above;
// ConsoleProducer and ConfigCommand are in kafka.tools / kafka.admin in
// 3.9.2 and in org.apache.kafka.tools in 4.4.0. It returns the
// standard output and fails t when the tool fails or runs longer than two
// minutes. It skips t for an external broker and fails it for other brokers.
func (b *Broker) KafkaTool(t testing.TB, class string, args ...string) string {
	t.Helper()
	b.skipExternal(t, "KafkaTool")
	if b.tool == nil {
		t.Fatalf("brokertest: KafkaTool: %s is not Kafka", b.kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	cmd := b.tool(ctx, class, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("brokertest: %s %s: %v\n%s%s", class, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// SASLAddr returns the host:port of the SASL_PLAINTEXT listener that
// KafkaSASL adds ("" without it).
func (b *Broker) SASLAddr() string { return b.saslAddr }

// writeKafkaLogConfig writes a console-only logging configuration (the log
// goes to the Broker's log file) and returns the JVM flag that selects it.
// Kafka 4.x logs through log4j 2, 3.9 through reload4j (log4j 1 API).
func writeKafkaLogConfig(t testing.TB, dir, version string) string {
	t.Helper()
	if strings.HasPrefix(version, "3.") {
		p := filepath.Join(dir, "log4j.properties")
		writeFile(t, p, `log4j.rootLogger=${log.level}, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
`, 0o644)
		return "-Dlog4j.configuration=file:" + p
	}
	p := filepath.Join(dir, "log4j2.properties")
	writeFile(t, p, `status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:log.level:-INFO}
rootLogger.appenderRef.stderr.ref = STDERR
`, 0o644)
	return "-Dlog4j2.configurationFile=" + p
}

// findKafka resolves a KafkaVersion selector to an installed release and its
// libs directory ("" when none is installed).
func findKafka(selector string) (version, libs string) {
	root := kafkaRoot()
	if root == "" {
		return selector, ""
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return selector, ""
	}
	prefix := strings.TrimSuffix(selector, "x")
	var found []string
	for _, e := range entries {
		v := e.Name()
		if v != selector && (!strings.HasSuffix(selector, ".x") || !strings.HasPrefix(v, prefix)) {
			continue
		}
		// A complete install has the broker jar (install-brokers copies
		// into a temporary directory and renames it).
		if m, _ := filepath.Glob(filepath.Join(root, v, "libs", "kafka_2.13-*.jar")); len(m) > 0 {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return selector, ""
	}
	sort.Slice(found, func(i, j int) bool { return versionLess(found[i], found[j]) })
	v := found[len(found)-1]
	return v, filepath.Join(root, v, "libs")
}

// kafkaRoot finds .build/kafka: $EVENTSTREAM_KAFKA_DIR, else the nearest
// ancestor of the working directory that has one.
func kafkaRoot() string {
	if d := os.Getenv("EVENTSTREAM_KAFKA_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, ".build", "kafka")
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// versionLess compares dotted numeric versions.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.Atoi(as[i])
		y, _ := strconv.Atoi(bs[i])
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

func randomClusterID(t testing.TB) string {
	t.Helper()
	// Like Kafka's Uuid.randomUuid, never start with '-': StorageTool's
	// argument parser would take such an id for an option.
	for {
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			t.Fatalf("brokertest: %v", err)
		}
		if s := base64.RawURLEncoding.EncodeToString(id[:]); s[0] != '-' {
			return s
		}
	}
}

// kafkaMetadataReady sends a Metadata request (v8: non-flexible, served by
// Kafka 2.3 through 4.x) and succeeds when the reply lists a broker and a
// controller: the broker is unfenced and serves clients.
func kafkaMetadataReady(addr string) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 8
	const correlationID = 1
	clientID := "brokertest"
	frame := []byte{0, 0, 0, 0} // size, filled in below
	frame = binary.BigEndian.AppendUint16(frame, uint16(req.Key()))
	frame = binary.BigEndian.AppendUint16(frame, uint16(req.Version))
	frame = binary.BigEndian.AppendUint32(frame, correlationID)
	frame = binary.BigEndian.AppendUint16(frame, uint16(len(clientID)))
	frame = append(frame, clientID...)
	frame = req.AppendTo(frame)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	if _, err := c.Write(frame); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 64<<20 {
		return fmt.Errorf("metadata response of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(body) != correlationID {
		return errors.New("metadata response with a wrong correlation id")
	}
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	resp.Version = req.Version
	if err := resp.ReadFrom(body[4:]); err != nil {
		return fmt.Errorf("decoding metadata response: %w", err)
	}
	if len(resp.Brokers) == 0 || resp.ControllerID < 0 {
		return fmt.Errorf("metadata lists %d brokers, controller %d", len(resp.Brokers), resp.ControllerID)
	}
	return nil
}
