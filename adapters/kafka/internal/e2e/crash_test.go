package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"github.com/eventstream-go/eventstream/internal/crashtest"
)

// Environment of the crash test's consumer processes (internal/crashtest).
const (
	envBrokers = "EVENTSTREAM_E2E_BROKERS"
	envConfig  = "EVENTSTREAM_E2E_CONFIG" // "fast" or "default", see crashConfig
)

// newCrashAdapter is the adapter of a crash-test consumer process (see
// TestMain): the brokers and the config named by the environment, logging to
// log.
func newCrashAdapter(log *slog.Logger) (eventstream.MQAdapter, error) {
	cfg := crashConfig(os.Getenv(envConfig), strings.Split(os.Getenv(envBrokers), ","))
	cfg.Logger = log
	return kafka.NewAdapter(cfg)
}

// crashRun is one run of the crash test: where the broker is and how the
// consumers are configured.
type crashRun struct {
	brokers []string
	// config names the consumers' adapter config: "fast" (fastGroupConfig)
	// or "default" (kafka.Config defaults).
	config string
	// session is the consumers' session timeout; the stream must be
	// finished within session+5s of the last kill.
	session time.Duration
	// kills is how many times a member is killed.
	kills int
}

// defaultSessionTimeout is kafka.Config's documented default.
const defaultSessionTimeout = 10 * time.Second

// crashConfig is the adapter config of the consumer processes.
func crashConfig(name string, brokers []string) kafka.Config {
	if name == "default" {
		return kafka.Config{Brokers: brokers}
	}
	return fastGroupConfig(brokers)
}

// crashRuns is how many times the crash test runs on the embedded broker
// with short group timeouts: EVENTSTREAM_CRASH_RUNS, default 2.
func crashRuns(t *testing.T) int {
	s := os.Getenv("EVENTSTREAM_CRASH_RUNS")
	if s == "" {
		return 2
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("EVENTSTREAM_CRASH_RUNS=%q is not a positive number", s)
	}
	return n
}

// TestCrashConsumerAtLeastOnce runs the whole bus across processes
// (internal/crashtest): this process emits 20,000 keyed events on a
// 4-partition topic while two consumer processes (one consumer group,
// concurrency 8 each) handle them. Five times mid-stream (twice with the
// default timeouts) the member that handled the most events in its current
// life is killed with SIGKILL; after every kill but the last a new process
// takes its place, after the last the surviving member alone has to finish
// the stream. A killed member never leaves the group, so its partitions move
// only after its session timeout: the stream must be finished within
// SessionTimeout + 5s of the last kill, and every event must have been
// handled at least once.
//
// Every kill waits until the group is Stable with every live process as a
// member and each of them handled events in its current life, so a kill
// always hits a member that owns partitions, never one held in a join (the
// embedded broker gives a member that dies there no session timer and only
// drops it after the rebalance timeout). The emitters stay at most a window
// ahead of what was handled, and the last event waits for the last kill,
// so the stream cannot be finished by one member before the others joined.
//
// It runs on the embedded broker with short group timeouts
// (EVENTSTREAM_CRASH_RUNS times, default 2) and with the adapter's
// defaults, and on Apache Kafka 4.x and 3.9.x with short timeouts.
func TestCrashConsumerAtLeastOnce(t *testing.T) {
	const partitions = 4
	kfakeCluster := func(t *testing.T) []string {
		return kafkatest.NewCluster(t, kfake.SeedTopics(partitions, crashTopic,
			eventstream.DeadLetterTopicName(crashTopic, crashGroup))).Addrs()
	}
	for i := range crashRuns(t) {
		t.Run(fmt.Sprintf("kfake/run-%d", i+1), func(t *testing.T) {
			runCrash(t, crashRun{brokers: kfakeCluster(t), config: "fast", session: fastGroupConfig(nil).SessionTimeout, kills: 5})
		})
	}
	t.Run("kfake/defaults", func(t *testing.T) {
		// Two kills only: each takes a session timeout (10s) to recover.
		runCrash(t, crashRun{brokers: kfakeCluster(t), config: "default", session: defaultSessionTimeout, kills: 2})
	})
	for _, v := range []string{"4.x", "3.9.x"} {
		t.Run("kafka-"+v, func(t *testing.T) {
			b := brokertest.Kafka(t, brokertest.KafkaVersion(v))
			brokers := []string{b.Addr()}
			kadmin.CreateTopic(t, brokers, crashTopic, partitions)
			kadmin.CreateTopic(t, brokers, eventstream.DeadLetterTopicName(crashTopic, crashGroup), partitions)
			runCrash(t, crashRun{brokers: brokers, config: "fast", session: fastGroupConfig(nil).SessionTimeout, kills: 5})
		})
	}
}

const (
	crashTopic = "crash"
	crashGroup = "crash-group"
)

func runCrash(t *testing.T, run crashRun) {
	const (
		n          = 20000
		partitions = 4
	)
	// Kills happen when the number of distinct handled events passes these
	// thresholds, from 2000 to 18000 (and the group is stable); with a
	// window of 2000 the emitters are still running, and at most 2000
	// events are left after the last kill, so the time until the stream is
	// finished is mostly the failover.
	kills := []int{2000}
	for i := 1; i < run.kills; i++ {
		kills = append(kills, 2000+i*16000/(run.kills-1))
	}
	brokers := run.brokers
	admin := kadmin.Client(t, brokers)
	defer admin.Close()

	// Emit from this process through the bus.
	bus := newBus(t, newAdapter(t, fastGroupConfig(brokers)), nil)
	res := crashtest.Run(t, crashtest.Config{
		Bus: bus, Topic: crashTopic, Group: crashGroup,
		Env:    []string{envBrokers + "=" + strings.Join(brokers, ","), envConfig + "=" + run.config},
		Events: n, Members: 2, Concurrency: 8, Window: 2000, Kills: kills,
		MinHandled: 50, AllHandled: true, SurvivorsFinish: true,
		// A kill waits until the group is Stable with every live member.
		Ready: func(ctx context.Context, live int) (bool, error) {
			return groupStable(t, ctx, admin, crashGroup, live), nil
		},
		Timeout: 150*time.Second + 10*run.session,
	})
	t.Logf("the group was Stable without the killed member %v after the last kill, the stream was finished after %v "+
		"(session timeout %v, %s config)",
		res.ReadyAgain.Round(time.Millisecond), res.SinceLastKill.Round(time.Millisecond), run.session, run.config)
	if limit := run.session + 5*time.Second; res.SinceLastKill > limit {
		logTails(t, res.Logs)
		t.Errorf("the stream was finished %v after the last kill, more than session timeout + 5s = %v",
			res.SinceLastKill.Round(time.Millisecond), limit)
	}
	for i, st := range res.Stats {
		t.Logf("stats of surviving member %d: %+v", i, st)
	}
	require.Equal(t, uint64(n), bus.Stats().Emitted)

	// Nothing was dead-lettered and the graceful leave committed everything.
	for p, off := range kadmin.EndOffsets(t, brokers, eventstream.DeadLetterTopicName(crashTopic, crashGroup), partitions) {
		require.Zero(t, off, "dead-letter partition %d", p)
	}
	require.Equal(t, kadmin.EndOffsets(t, brokers, crashTopic, partitions), kadmin.Committed(t, brokers, crashGroup, crashTopic, partitions),
		"committed offsets after the last members left")
	if os.Getenv("E2E_DUMP") != "" {
		logTails(t, res.Logs)
	}
}

// logTails logs the end of each member's stderr.
func logTails(t *testing.T, logs []string) {
	t.Helper()
	for i, s := range logs {
		t.Logf("member %d stderr tail:\n%s", i, s[max(0, len(s)-4000):])
	}
}

// groupStable reports whether group is Stable with exactly members members,
// asking the broker directly.
func groupStable(t *testing.T, ctx context.Context, admin *kgo.Client, group string, members int) bool {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, admin)
	if err != nil {
		t.Logf("describe group %s: %v", group, err)
		return false
	}
	if len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
		return false
	}
	return resp.Groups[0].State == "Stable" && len(resp.Groups[0].Members) == members
}
