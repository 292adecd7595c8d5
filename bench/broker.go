package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerEnv makes a bench binary (the report runner or the test binary)
// run the embedded broker instead of its usual work: see MaybeRunBroker.
const brokerEnv = "EVENTSTREAM_BENCH_KFAKE"

// MaybeRunBroker turns the current process into the broker process when it
// was started by StartBroker: it starts kfake exactly like the command in
// adapters/kafka/kafkatest/cmd/kfake (kafkatest.Start with one broker on a
// free port), prints the broker addresses, one per line, and serves until
// its standard input is closed (the parent exited or called Broker.Close),
// then exits. Call it first thing in main and TestMain; it returns at once
// in any other process.
func MaybeRunBroker() {
	spec := os.Getenv(brokerEnv)
	if spec == "" {
		return
	}
	partitions, err := strconv.Atoi(spec)
	if err != nil || partitions < 1 {
		fmt.Fprintln(os.Stderr, "kfake: bad partition count", spec)
		os.Exit(2)
	}
	c, err := kafkatest.Start(kfake.DefaultNumPartitions(partitions), kfake.AllowAutoTopicCreation())
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	for _, a := range c.Addrs() {
		fmt.Println(a)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	c.Close()
	os.Exit(0)
}

// Broker is an embedded Kafka-protocol broker running in a child process.
type Broker struct {
	Addrs []string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// StartBroker starts the broker process: this same executable, re-run with
// an environment variable that makes MaybeRunBroker take over. Topics that
// are auto-created get partitions partitions.
func StartBroker(partitions int) (*Broker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), brokerEnv+"="+strconv.Itoa(partitions))
	cmd.Stderr = os.Stderr
	setParentDeathSignal(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting broker process: %w", err)
	}
	b := &Broker{cmd: cmd, stdin: stdin}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			_ = b.Close()
			return nil, errors.New("broker process exited before printing its address")
		}
		b.Addrs = []string{strings.TrimSpace(l)}
	case <-time.After(30 * time.Second):
		_ = b.Close()
		return nil, errors.New("broker process did not print its address within 30s")
	}
	go func() {
		for range lines {
		}
	}()
	return b, nil
}

// Pid is the process id of the broker process.
func (b *Broker) Pid() int { return b.cmd.Process.Pid }

// Close stops the broker process and waits for it.
func (b *Broker) Close() error {
	_ = b.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		return <-done
	}
}

// KafkaPartitions is the partition count of every topic a run creates.
const KafkaPartitions = 6

// KafkaEnv is the broker every Kafka peer of a run uses.
type KafkaEnv struct {
	Brokers []string
	// Partitions is the partition count of every topic the run creates.
	Partitions int
	// BrokerPid is the broker's process id when it runs on this machine
	// (StartBroker), so that its CPU time can be measured; 0 otherwise.
	BrokerPid int
	admin     *kgo.Client
	seq       atomic.Int64
	run       string
}

// NewKafkaEnv connects to brokers; topics it creates get partitions
// partitions.
func NewKafkaEnv(brokers []string, partitions int) (*KafkaEnv, error) {
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	return &KafkaEnv{
		Brokers:    brokers,
		Partitions: partitions,
		admin:      admin,
		run:        strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
	}, nil
}

// Close releases the admin client.
func (e *KafkaEnv) Close() { e.admin.Close() }

// Name returns a name unique to this run: topic and group names.
func (e *KafkaEnv) Name(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, e.run, e.seq.Add(1))
}

// NewTopic creates a topic with e.Partitions partitions and returns its
// name.
func (e *KafkaEnv) NewTopic(prefix string) (string, error) {
	name := e.Name(sanitize(prefix))
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic = name
	t.NumPartitions = int32(e.Partitions)
	t.ReplicationFactor = 1
	req.Topics = append(req.Topics, t)
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, e.admin)
	if err != nil {
		return "", fmt.Errorf("creating topic %s: %w", name, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return "", fmt.Errorf("creating topic %s: %w", name, err)
		}
	}
	// Apache Kafka answers CreateTopics before every broker knows the new
	// partitions: a produce right away can fail with
	// UNKNOWN_TOPIC_OR_PARTITION (kafka-go does not retry that on its first
	// write). kfake has them at once.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ready, err := e.topicReady(ctx, name)
		if ready {
			return name, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("topic %s has no leader for every partition: %v", name, errors.Join(err, ctx.Err()))
		case <-tick.C:
		}
	}
}

// topicReady reports whether metadata lists every partition of topic with
// a leader.
func (e *KafkaEnv) topicReady(ctx context.Context, topic string) (bool, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, e.admin)
	if err != nil {
		return false, err
	}
	if len(resp.Topics) != 1 {
		return false, nil
	}
	t := resp.Topics[0]
	if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
		return false, err
	}
	if len(t.Partitions) != e.Partitions {
		return false, nil
	}
	for _, p := range t.Partitions {
		if p.ErrorCode != 0 || p.Leader < 0 {
			return false, kerr.ErrorForCode(p.ErrorCode)
		}
	}
	return true, nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}
