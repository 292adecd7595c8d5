package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	evbus "github.com/asaskevich/EventBus"
	"github.com/eventstream-go/eventstream"
)

// Names of the peers, as they appear in the report.
const (
	PeerEventstream = "eventstream"
	PeerRawChannel  = "raw channel"
	// PeerRawChannelEvent is the raw channel carrying a new *Event per
	// emit: the allocation and clock read every Emit needs, without a bus.
	PeerRawChannelEvent = "raw channel, new *Event per emit"
	PeerEventBus        = "EventBus (async)"
	PeerGoChannel       = "Watermill GoChannel"
)

// memTarget is a set-up in-process peer: emit is called concurrently by the
// producers, close tears everything down once every event was handled.
type memTarget struct {
	emit  func(p *Payload) error
	close func() error
}

// MemoryPeer is an in-process event bus under test. setup subscribes
// sc.Groups subscriptions with sc.Concurrency handler goroutines each; every
// handler call must call on exactly once.
type MemoryPeer struct {
	Name  string
	setup func(sc Scenario, on func()) (memTarget, error)
}

// MemoryPeers returns the in-process peers, eventstream first.
func MemoryPeers() []MemoryPeer {
	return []MemoryPeer{
		{PeerEventstream, setupBus},
		{PeerRawChannel, setupRawChannel},
		{PeerRawChannelEvent, setupRawChannelEvent},
		{PeerEventBus, setupEventBus},
		{PeerGoChannel, setupGoChannel},
	}
}

// MemoryPeerByName returns the named peer.
func MemoryPeerByName(name string) (MemoryPeer, bool) {
	for _, p := range MemoryPeers() {
		if p.Name == name {
			return p, true
		}
	}
	return MemoryPeer{}, false
}

// memQueue is the per-subscription queue size of every peer that has one:
// eventstream's default BufferSize.
const memQueue = 1024

// MemoryThroughput emits sc.Events events from sc.Producers goroutines (each
// reusing one *Payload) and measures until every handler call returned.
func MemoryThroughput(p MemoryPeer, sc Scenario) (Sample, error) {
	var cur atomic.Pointer[counter]
	t, err := p.setup(sc, func() { cur.Load().add() })
	if err != nil {
		return Sample{}, err
	}
	payloads := make([]*Payload, sc.Producers)
	for i := range payloads {
		payloads[i] = &Payload{Data: newData(sc.Payload)}
	}
	emit := func(w, _ int) error { return t.emit(payloads[w]) }
	// Warm up (goroutines, queues, pools), then time a fresh counter.
	warm := min(max(sc.Events/10, sc.Producers), 20000)
	cur.Store(newCounter(int64(warm * sc.Groups)))
	err = runProducers(sc.Producers, warm, emit)
	if err == nil {
		err = cur.Load().wait(time.Minute)
	}
	if err != nil {
		_ = t.close()
		return Sample{}, fmt.Errorf("%s: warm-up: %w", p.Name, err)
	}
	c := newCounter(int64(sc.Events * sc.Groups))
	cur.Store(c)
	runtime.GC()
	m0, cpu0 := mallocs(), selfCPU()
	closeWindow := sc.window()
	start := time.Now()
	err = runProducers(sc.Producers, sc.Events, emit)
	if err == nil {
		err = c.wait(2 * time.Minute)
	}
	elapsed := time.Since(start)
	closeWindow()
	m1, cpu1 := mallocs(), selfCPU()
	if cerr := t.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return Sample{Events: sc.Events, Handled: c.n.Load(), Elapsed: elapsed, Mallocs: m1 - m0, CPU: cpu1 - cpu0}, nil
}

// MemoryLatency measures n unloaded Emit→handler latencies with one
// subscription: each event is emitted only after the previous one reached
// its handler, and the latency runs from just before Emit to the handler
// call.
func MemoryLatency(p MemoryPeer, n, payload int) ([]time.Duration, error) {
	got := make(chan time.Time, 1)
	t, err := p.setup(Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: payload}, func() { got <- time.Now() })
	if err != nil {
		return nil, err
	}
	defer t.close()
	pl := &Payload{Data: newData(payload)}
	const warmup = 200
	out := make([]time.Duration, 0, n)
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for i := range warmup + n {
		t0 := time.Now()
		if err := t.emit(pl); err != nil {
			return nil, err
		}
		select {
		case t1 := <-got:
			if i >= warmup {
				out = append(out, t1.Sub(t0))
			}
		case <-timeout.C:
			return nil, fmt.Errorf("%s: latency run timed out", p.Name)
		}
	}
	return out, nil
}

// setupBus is the eventstream memory bus with default settings, one
// subscription per consumer group.
func setupBus(sc Scenario, on func()) (memTarget, error) {
	cfg := eventstream.DefaultConfig()
	cfg.Logger = quiet
	bus, err := eventstream.New(cfg)
	if err != nil {
		return memTarget{}, err
	}
	h := func(_ context.Context, e *eventstream.Event) error {
		_ = e.Data.(*Payload)
		on()
		return nil
	}
	for g := range sc.Groups {
		if _, err := bus.On("bench", h,
			eventstream.WithConsumerGroup("g"+strconv.Itoa(g)),
			eventstream.WithConcurrency(sc.Concurrency),
			eventstream.WithBufferSize(memQueue)); err != nil {
			_ = bus.Close()
			return memTarget{}, err
		}
	}
	ctx := context.Background()
	return memTarget{
		emit:  func(p *Payload) error { return bus.Emit(ctx, "bench", p) },
		close: bus.Close,
	}, nil
}

// setupRawChannel is the floor: one buffered channel per subscription, read
// by sc.Concurrency goroutines; an emit sends to every channel.
func setupRawChannel(sc Scenario, on func()) (memTarget, error) {
	chans := make([]chan *Payload, sc.Groups)
	var wg sync.WaitGroup
	for g := range chans {
		ch := make(chan *Payload, memQueue)
		chans[g] = ch
		for range sc.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range ch {
					_ = p
					on()
				}
			}()
		}
	}
	return memTarget{
		emit: func(p *Payload) error {
			for _, ch := range chans {
				ch <- p
			}
			return nil
		},
		close: func() error {
			for _, ch := range chans {
				close(ch)
			}
			wg.Wait()
			return nil
		},
	}, nil
}

// setupRawChannelEvent is setupRawChannel carrying, instead of the payload
// pointer, a new *eventstream.Event per emit with its topic, time and
// payload set (one event for every group, as the memory bus shares one): what
// a bus that hands handlers an event must at least pay, without the bus.
func setupRawChannelEvent(sc Scenario, on func()) (memTarget, error) {
	chans := make([]chan *eventstream.Event, sc.Groups)
	var wg sync.WaitGroup
	for g := range chans {
		ch := make(chan *eventstream.Event, memQueue)
		chans[g] = ch
		for range sc.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range ch {
					_ = e.Data.(*Payload)
					on()
				}
			}()
		}
	}
	return memTarget{
		emit: func(p *Payload) error {
			e := &eventstream.Event{Topic: "bench", ID: "bench", Time: time.Now(), Data: p}
			for _, ch := range chans {
				ch <- e
			}
			return nil
		},
		close: func() error {
			for _, ch := range chans {
				close(ch)
			}
			wg.Wait()
			return nil
		},
	}, nil
}

// setupEventBus is asaskevich/EventBus with asynchronous, non-transactional
// handlers (its fastest async mode: one goroutine per event and handler).
func setupEventBus(sc Scenario, on func()) (memTarget, error) {
	if sc.Concurrency != 1 {
		return memTarget{}, na("no worker pool: every async handler call runs on a goroutine of its own")
	}
	b := evbus.New()
	for range sc.Groups {
		if err := b.SubscribeAsync("bench", func(p *Payload) { on() }, false); err != nil {
			return memTarget{}, err
		}
	}
	return memTarget{
		emit:  func(p *Payload) error { b.Publish("bench", p); return nil },
		close: func() error { b.WaitAsync(); return nil },
	}, nil
}

// setupGoChannel is Watermill's GoChannel: one Subscribe per group (every
// subscriber receives every message), read by sc.Concurrency goroutines
// that Ack each message. The payload is the []byte Watermill messages carry.
func setupGoChannel(sc Scenario, on func()) (memTarget, error) {
	gc := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: memQueue}, watermill.NopLogger{})
	var wg sync.WaitGroup
	ctx := context.Background()
	for range sc.Groups {
		ch, err := gc.Subscribe(ctx, "bench")
		if err != nil {
			_ = gc.Close()
			return memTarget{}, err
		}
		for range sc.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range ch {
					_ = m.Payload
					on()
					m.Ack()
				}
			}()
		}
	}
	return memTarget{
		emit: func(p *Payload) error {
			return gc.Publish("bench", message.NewMessage(watermill.NewUUID(), p.Data))
		},
		close: func() error {
			err := gc.Close()
			wg.Wait()
			return err
		},
	}, nil
}
