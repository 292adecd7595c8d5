package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
)

// What every broker's measurements share: the timed produce and consume
// loops, and the two eventstream peers each broker has (the bus over the
// broker's adapter, and the adapter alone).

// The broker may still be busy with an earlier step when a measurement
// starts: a preload, its own collection of what a previous peer left, a
// group expiring. Before timing, settle waits until the broker process used
// at most settleBusy of CPU time over a settleWindow (its clock ticks are
// 10ms), giving up after settleMax.
const (
	settleWindow = 100 * time.Millisecond
	settleBusy   = 10 * time.Millisecond
	settleMax    = 3 * time.Second
)

// settle waits for the broker process pid to be idle (see settleWindow); it
// returns at once without a pid.
func settle(pid int) {
	if pid <= 0 {
		return
	}
	for start := time.Now(); time.Since(start) < settleMax; {
		c0 := procCPU(pid)
		time.Sleep(settleWindow)
		if procCPU(pid)-c0 <= settleBusy {
			return
		}
	}
}

// timedProduce warms prod up, then times sc.Events sends from sc.Producers
// goroutines, each waiting for one send to return before the next.
// brokerPid is the broker process, for its CPU (0: unknown).
func timedProduce(prod kProducer, sc Scenario, brokerPid int) (Sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	value := newData(sc.Payload)
	send := func(int, int) error { return prod.send(ctx, value) }
	// Warm up: metadata, connections, producer state.
	if err := runProducers(sc.Producers, 4*sc.Producers, send); err != nil {
		return Sample{}, fmt.Errorf("warm-up: %w", err)
	}
	settle(brokerPid)
	runtime.GC()
	m0, cpu0, bcpu0 := mallocs(), selfCPU(), procCPU(brokerPid)
	closeWindow := sc.window()
	start := time.Now()
	err := runProducers(sc.Producers, sc.Events, send)
	elapsed := time.Since(start)
	closeWindow()
	m1, cpu1, bcpu1 := mallocs(), selfCPU(), procCPU(brokerPid)
	if err != nil {
		return Sample{}, err
	}
	return Sample{Events: sc.Events, Elapsed: elapsed, Mallocs: m1 - m0, CPU: cpu1 - cpu0, BrokerCPU: bcpu1 - bcpu0}, nil
}

// timedConsume times from calling subscribe until its handlers were called
// events×groups times, and closes what subscribe started. window is the
// scenario's (see Scenario.Window).
func timedConsume(subscribe func(on func()) (kConsumer, error), events, groups, brokerPid int, window func() (end func())) (Sample, error) {
	c := newCounter(int64(events * groups))
	settle(brokerPid)
	runtime.GC()
	m0, cpu0, bcpu0 := mallocs(), selfCPU(), procCPU(brokerPid)
	closeWindow := window()
	start := time.Now()
	cons, err := subscribe(c.add)
	if err != nil {
		closeWindow()
		return Sample{}, err
	}
	err = c.wait(3 * time.Minute)
	closeWindow()
	m1, cpu1, bcpu1 := mallocs(), selfCPU(), procCPU(brokerPid)
	if cerr := cons.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Sample{}, err
	}
	end := time.Unix(0, c.last.Load())
	return Sample{Events: events, Handled: c.n.Load(), Elapsed: end.Sub(start), Mallocs: m1 - m0,
		CPU: cpu1 - cpu0, BrokerCPU: bcpu1 - bcpu0}, nil
}

// lessJoin is the drain full less join, the same peer joining and
// delivering a one-message backlog (see KafkaConsume); join's time is
// reported as Startup.
func lessJoin(full, join Sample) Sample {
	elapsed := full.Elapsed - join.Elapsed
	if elapsed < full.Elapsed/20 {
		// Join time varies; never let it eat the whole measurement.
		elapsed = full.Elapsed / 20
	}
	var m uint64
	if full.Mallocs > join.Mallocs {
		m = full.Mallocs - join.Mallocs
	}
	return Sample{
		Events:    full.Events,
		Handled:   full.Handled,
		Elapsed:   elapsed,
		Mallocs:   m,
		CPU:       max(0, full.CPU-join.CPU),
		BrokerCPU: max(0, full.BrokerCPU-join.BrokerCPU),
		Startup:   join.Elapsed,
	}
}

// openAdapter opens a new adapter of one broker.
type openAdapter func() (eventstream.MQAdapter, error)

// busOver is a distributed bus as every broker's eventstream peer uses it:
// DefaultDistributedConfig, RawSerializer, CloudEvents binary mode when
// binary is set. It returns a function closing the bus and the adapter.
func busOver(open openAdapter, binary bool) (eventstream.Bus, func() error, error) {
	ad, err := open()
	if err != nil {
		return nil, nil, err
	}
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Logger = quiet
	cfg.Distributed.MQAdapter = ad
	cfg.Distributed.Serializer = eventstream.RawSerializer{}
	cfg.Distributed.BinaryMode = binary
	bus, err := eventstream.New(cfg)
	if err != nil {
		_ = ad.Close()
		return nil, nil, err
	}
	return bus, func() error { return errors.Join(bus.Close(), ad.Close()) }, nil
}

// busProducerOver emits to topic through a bus over a new adapter.
func busProducerOver(open openAdapter, binary bool, topic string) (kProducer, error) {
	bus, closeAll, err := busOver(open, binary)
	if err != nil {
		return kProducer{}, err
	}
	return kProducer{
		send:  func(ctx context.Context, v []byte) error { return bus.Emit(ctx, topic, v) },
		close: closeAll,
	}, nil
}

// busConsumerOver subscribes every group of groups to topic on one bus over
// a new adapter, with a handler that takes the []byte payload and calls on.
func busConsumerOver(open openAdapter, binary bool, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	bus, closeAll, err := busOver(open, binary)
	if err != nil {
		return kConsumer{}, err
	}
	h := func(_ context.Context, e *eventstream.Event) error {
		_ = e.Data.([]byte)
		on()
		return nil
	}
	for _, g := range groups {
		if _, err := bus.On(topic, h, eventstream.WithConsumerGroup(g), eventstream.WithConcurrency(concurrency)); err != nil {
			_ = closeAll()
			return kConsumer{}, err
		}
	}
	return kConsumer{close: closeAll}, nil
}

// adapterProducerOver publishes to topic with a new adapter alone.
func adapterProducerOver(open openAdapter, topic string) (kProducer, error) {
	ad, err := open()
	if err != nil {
		return kProducer{}, err
	}
	return kProducer{
		send:  func(ctx context.Context, v []byte) error { return ad.Publish(ctx, topic, v) },
		close: ad.Close,
	}, nil
}

// adapterConsumerOver subscribes every group of groups to topic with a new
// adapter alone: one goroutine per group reads the value, calls on and
// acks. The adapter has no handler pool, so only concurrency 1 is measured.
func adapterConsumerOver(open openAdapter, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("the adapter has no handler pool (that is the bus's job)")
	}
	ad, err := open()
	if err != nil {
		return kConsumer{}, err
	}
	var wg sync.WaitGroup
	ctx := context.Background()
	for _, g := range groups {
		msgs, _, err := ad.Subscribe(ctx, topic, g)
		if err != nil {
			_ = ad.Close()
			wg.Wait()
			return kConsumer{}, err
		}
		wg.Go(func() {
			for m := range msgs {
				_ = m.Value()
				on()
				_ = ad.Ack(ctx, g, m)
			}
		})
	}
	return kConsumer{close: func() error {
		err := ad.Close()
		wg.Wait()
		return err
	}}, nil
}

// preloadWith sends n messages of size bytes from 64 goroutines with a
// producer from newProducer.
func preloadWith(newProducer func() (kProducer, error), n, size int) error {
	prod, err := newProducer()
	if err != nil {
		return err
	}
	defer prod.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v := newData(size)
	return runProducers(64, n, func(int, int) error { return prod.send(ctx, v) })
}
