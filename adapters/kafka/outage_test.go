package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// outageLog records what the publishers of TestRealBrokerOutage were told
// and what the consumer received.
type outageLog struct {
	mu       sync.Mutex
	acked    map[int]bool // Emit returned nil
	received map[int]int  // deliveries per value
	spanned  int          // Emits that began while the broker was down and succeeded
	maxWait  time.Duration
}

func (l *outageLog) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// missing returns how many acknowledged values were not received yet, and
// one of them.
func (l *outageLog) missing() (int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, example := 0, -1
	for v := range l.acked {
		if l.received[v] == 0 {
			n++
			example = v
		}
	}
	return n, example
}

// TestRealBrokerOutage stops real Kafka for more than 5 s mid-stream and
// restarts it on the same data directory, then kills it with SIGKILL and
// restarts it again, while publishers keep emitting through one bus and a
// consumer group of the same bus keeps handling. Every event whose Emit
// returned nil is handled; an Emit during the outage with a short context
// fails with its deadline; Emits with a long context wait and succeed after
// the restart; nothing succeeds while the broker is down; the consumer
// resumes without restarting the bus.
func TestRealBrokerOutage(t *testing.T) {
	for _, v := range kafkaVersions {
		t.Run("kafka"+v, func(t *testing.T) {
			t.Parallel()
			b := brokertest.Kafka(t, brokertest.KafkaVersion(v))
			if b.External() {
				t.Skip("the outage test stops and kills the broker: it needs a private one (KAFKA_BROKERS is set)")
			}
			testOutage(t, b)
		})
	}
}

func testOutage(t *testing.T, b *brokertest.Broker) {
	const (
		topic, group = "outage", "g-outage"
		publishers   = 4
		perPhase     = 100 // acknowledged events between two faults
		downFor      = 5 * time.Second
		probeTimeout = 2 * time.Second
	)
	cfg := realConfig(b)
	a := newAdapter(t, cfg)
	bcfg := eventstream.DefaultDistributedConfig()
	bcfg.Distributed.MQAdapter = a
	bcfg.DrainTimeout = 5 * time.Second
	bus, err := eventstream.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })

	l := &outageLog{acked: map[int]bool{}, received: map[int]int{}}
	_, err = bus.On(topic, func(_ context.Context, e *eventstream.Event) error {
		var n int
		if err := e.Unmarshal(&n); err != nil {
			return err
		}
		l.mu.Lock()
		l.received[n]++
		l.mu.Unlock()
		return nil
	}, eventstream.WithConsumerGroup(group), eventstream.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}

	var down atomic.Bool // the broker is stopped or killed
	stop := make(chan struct{})
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := int(next.Add(1))
				wasDown := down.Load()
				begin := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				err := bus.Emit(ctx, topic, n, eventstream.WithKey(fmt.Sprint(n%16)))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("Emit %d (begun with the broker %s): %w", n, map[bool]string{true: "down", false: "up"}[wasDown], err)
					return
				}
				took := time.Since(begin)
				l.mu.Lock()
				l.acked[n] = true
				l.maxWait = max(l.maxWait, took)
				if wasDown {
					l.spanned++
				}
				l.mu.Unlock()
			}
		}()
	}
	stopPublishers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopPublishers)

	// progress waits until target events were acknowledged and all of them
	// handled.
	progress := func(what string, target int) {
		t.Helper()
		waitFor(t, 3*time.Minute, what, func() bool {
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			n, _ := l.missing()
			return l.ackedCount() >= target && n == 0
		})
	}
	// probe checks that an Emit with a short context fails by its deadline
	// while the broker is down.
	probe := func(phase string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		begin := time.Now()
		err := bus.Emit(ctx, topic, -1)
		took := time.Since(begin)
		t.Logf("%s: Emit with a %v context returned after %v: %v", phase, probeTimeout, took.Round(time.Millisecond), err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: Emit with the broker down: %v, want an error wrapping context.DeadlineExceeded", phase, err)
		}
		if took > probeTimeout+5*time.Second {
			t.Errorf("%s: Emit returned %v after its %v deadline", phase, took-probeTimeout, probeTimeout)
		}
	}
	// outage takes the broker down with fault, calls down, probes, calls
	// during, keeps the broker down for at least minDown and restarts it;
	// nothing may be acknowledged meanwhile.
	outage := func(phase string, fault func(testing.TB), minDown time.Duration, onDown, during func()) {
		t.Helper()
		down.Store(true)
		fault(t)
		downAt := time.Now()
		if onDown != nil {
			onDown()
		}
		probe(phase)
		if during != nil {
			during()
		}
		// Every write begun before the fault was answered or failed by now.
		before := l.ackedCount()
		if wait := time.Until(downAt.Add(minDown)); wait > 0 {
			time.Sleep(wait) // the outage itself, not a wait for an effect
		}
		if n := l.ackedCount(); n != before {
			t.Errorf("%s: %d Emits succeeded while the broker was down", phase, n-before)
		}
		restartAt := time.Now()
		b.Restart(t)
		down.Store(false)
		t.Logf("%s: broker down for %v before the restart, which took %v", phase,
			restartAt.Sub(downAt).Round(time.Millisecond), b.StartTime().Round(time.Millisecond))
	}

	// An adapter created while the broker is down (an application that
	// starts before Kafka): its first Publish waits for the broker.
	lateTopic := topic + "-late"
	lateErr := make(chan error, 1)
	startLate := func() {
		late := newAdapter(t, cfg)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			lateErr <- late.Publish(ctx, lateTopic, []byte("late"))
		}()
	}

	// An adapter closed while the broker is down, with a Publish waiting
	// (begun before the probe, so it is retrying by then): Close returns
	// promptly and the Publish fails with ErrAdapterClosed.
	var closing *kafka.Adapter
	closingErr := make(chan error, 1)
	startClosing := func() {
		closing = newAdapter(t, cfg)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			closingErr <- closing.Publish(ctx, topic+"-closing", []byte("never acknowledged"))
		}()
	}
	closeDuringOutage := func() {
		begin := time.Now()
		if err := closing.Close(); err != nil {
			t.Errorf("Close during the outage: %v", err)
		}
		took := time.Since(begin)
		var err error
		select {
		case err = <-closingErr:
		case <-time.After(10 * time.Second):
			t.Fatal("a Publish waiting when the adapter was closed did not return within 10s")
		}
		t.Logf("Close during the outage took %v; the waiting Publish returned after %v: %v",
			took.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), err)
		if !errors.Is(err, eventstream.ErrAdapterClosed) {
			t.Errorf("Publish waiting when the adapter was closed: %v, want an error wrapping ErrAdapterClosed", err)
		}
		if took > 10*time.Second {
			t.Errorf("Close during the outage took %v", took)
		}
	}

	// committedCatchUp waits until the group committed as many records as
	// events were handled when it was called: the consumer resumes from
	// committed offsets after the restart, not from the start of the log.
	committedCatchUp := func(what string) {
		t.Helper()
		l.mu.Lock()
		handled := len(l.received)
		l.mu.Unlock()
		waitFor(t, 3*time.Minute, what, func() bool {
			sum := int64(0)
			for _, off := range committed(t, addrs(b.Addr()), group, topic) {
				sum += off
			}
			return sum >= int64(handled)
		})
	}

	progress("events before the outage", perPhase)
	committedCatchUp("offsets committed before the outage")
	outage("stop", b.Stop, downFor, startClosing, func() { closeDuringOutage(); startLate() })
	if err := <-lateErr; err != nil {
		t.Fatalf("first Publish of an adapter created during the outage: %v", err)
	}
	progress("events after the restart", l.ackedCount()+perPhase)
	committedCatchUp("offsets committed after the restart")
	outage("kill -9", b.Kill, 0, nil, nil)
	progress("events after the restart from SIGKILL", l.ackedCount()+perPhase)
	stopPublishers()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	waitFor(t, 3*time.Minute, "every acknowledged event handled", func() bool {
		n, _ := l.missing()
		return n == 0
	})

	l.mu.Lock()
	defer l.mu.Unlock()
	dups := 0
	for _, c := range l.received {
		dups += c - 1
	}
	lctx := ctxT(t, time.Minute)
	lch, lcancel, err := a.Subscribe(lctx, lateTopic, "g-late")
	if err != nil {
		t.Fatal(err)
	}
	defer lcancel()
	receiveValues(t, lctx, a, "g-late", lch, []string{"late"})

	t.Logf("%d events acknowledged, all handled (%d redeliveries); %d Emits begun during an outage succeeded after the restart; longest Emit %v",
		len(l.acked), dups, l.spanned, l.maxWait.Round(time.Millisecond))
	// Offsets were committed before each outage: re-reading from the start
	// of the log would redeliver most events (two thirds of them at the
	// kill), resuming from the committed offsets only the last few.
	if dups > len(l.acked)/2 {
		t.Errorf("%d redeliveries of %d events: the consumer did not resume from its committed offsets", dups, len(l.acked))
	}
	if l.spanned == 0 {
		t.Error("no Emit begun during an outage waited for the restart")
	}
}
