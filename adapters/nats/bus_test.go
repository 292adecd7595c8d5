package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/nats-io/nats.go/jetstream"
)

// newBus returns a distributed bus over a (CloudEvents binary mode when
// binary is set), closed at the end of the test.
func newBus(t *testing.T, a eventstream.MQAdapter, binary bool) eventstream.Bus {
	t.Helper()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.Distributed.BinaryMode = binary
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

// TestDistributedBus runs the distributed bus over the adapter, in JSON and
// binary mode: keyed events reach a consumer group with their key, in order
// per key at concurrency 8.
func TestDistributedBus(t *testing.T) {
	for _, binary := range []bool{false, true} {
		t.Run(fmt.Sprintf("binary=%v", binary), func(t *testing.T) {
			bus := newBus(t, newAdapter(t, testConfig(sharedURL(t))), binary)
			topic := uniq(t, "orders")
			type Order struct{ Customer, Seq int }
			const customers, perCustomer = 8, 50
			var mu sync.Mutex
			last := map[int]int{}
			got := 0
			done := make(chan struct{})
			sub, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
				var o Order
				if err := e.Unmarshal(&o); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if e.Key != fmt.Sprintf("c%d", o.Customer) {
					t.Errorf("event key %q for customer %d", e.Key, o.Customer)
				}
				if prev, ok := last[o.Customer]; ok && o.Seq != prev+1 {
					t.Errorf("customer %d: seq %d after %d", o.Customer, o.Seq, prev)
				}
				last[o.Customer] = o.Seq
				if got++; got == customers*perCustomer {
					close(done)
				}
				return nil
			}, eventstream.WithConsumerGroup("billing"), eventstream.WithConcurrency(8))
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 30*time.Second)
			for s := range perCustomer {
				for c := range customers {
					if err := bus.Emit(ctx, topic, Order{c, s}, eventstream.WithKey(fmt.Sprintf("c%d", c))); err != nil {
						t.Fatal(err)
					}
				}
			}
			select {
			case <-done:
			case <-ctx.Done():
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("received %d events", got)
			}
			if err := bus.Off(sub); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestBusWritesBareEnvelopes: the bus's structured events reach a plain
// nats.go client as the CloudEvents NATS binding maps them, the envelope as
// the payload and no headers; a keyed event with a header carries only
// those two (no content-type, no es-time). With Config.EnvelopeHeaders both
// carry content-type and es-time as well. Either way the bus reads its
// events back (it recognises the envelope by its payload).
func TestBusWritesBareEnvelopes(t *testing.T) {
	for _, withHeaders := range []bool{false, true} {
		t.Run(fmt.Sprintf("EnvelopeHeaders=%v", withHeaders), func(t *testing.T) {
			url := sharedURL(t)
			cfg := testConfig(url)
			cfg.EnvelopeHeaders = withHeaders
			a := newAdapter(t, cfg)
			bus := newBus(t, a, false)
			topic := uniq(t, "bare")
			ctx := ctxT(t, 20*time.Second)
			if err := bus.Emit(ctx, topic, map[string]int{"n": 1}); err != nil {
				t.Fatal(err)
			}
			if err := bus.Emit(ctx, topic, map[string]int{"n": 2}, eventstream.WithKey("k"), eventstream.WithHeader("tenant", "x")); err != nil {
				t.Fatal(err)
			}

			_, js := plainJS(t, url)
			oc, err := js.OrderedConsumer(ctx, a.StreamName(topic), jetstream.OrderedConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			wants := []map[string]string{{}, {nats.HeaderKey: "k", "tenant": "x"}}
			ids := map[string]bool{}
			for i, want := range wants {
				pm, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]string{}
				for k := range pm.Headers() {
					got[k] = pm.Headers().Get(k)
				}
				if withHeaders {
					if got["content-type"] != eventstream.CloudEventsContentType || got[nats.HeaderTime] == "" {
						t.Errorf("message %d: headers %v lack content-type or es-time", i, got)
					}
					delete(got, "content-type")
					delete(got, nats.HeaderTime)
				}
				if !maps.Equal(got, want) {
					t.Errorf("message %d: headers %v, want %v", i, got, want)
				}
				var env struct {
					SpecVersion string         `json:"specversion"`
					ID          string         `json:"id"`
					Data        map[string]int `json:"data"`
				}
				if err := json.Unmarshal(pm.Data(), &env); err != nil || env.SpecVersion != "1.0" || env.Data["n"] != i+1 {
					t.Fatalf("message %d: payload %s is not the event's envelope (%v)", i, pm.Data(), err)
				}
				ids[env.ID] = true
			}

			done := make(chan struct{})
			var mu sync.Mutex
			sub, err := bus.On(topic, func(_ context.Context, e *eventstream.Event) error {
				mu.Lock()
				defer mu.Unlock()
				if !ids[e.ID] {
					t.Errorf("unexpected event %s", e.ID)
				}
				if delete(ids, e.ID); len(ids) == 0 {
					close(done)
				}
				return nil
			}, eventstream.WithConsumerGroup("g"))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = bus.Off(sub) }()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("the bus did not read its events back")
			}
		})
	}
}

// TestNoServerDependency: importing the adapter does not link the NATS
// server; only natstest does.
func TestNoServerDependency(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/eventstream-go/eventstream/adapters/nats").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "nats-server") {
		t.Errorf("adapters/nats depends on the NATS server:\n%s", out)
	}
	if !strings.Contains(string(out), "github.com/nats-io/nats.go/jetstream") {
		t.Errorf("go list output lacks nats.go/jetstream; is the check looking at the right package?\n%s", out)
	}
}
