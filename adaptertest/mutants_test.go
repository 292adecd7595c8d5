package adaptertest_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/adaptertest"
)

// The suite must also fail for broken adapters. Each mutant below wraps the
// memory adapter and breaks one rule; TestSuiteDetectsMutants runs the case
// that should notice in a child process (Run needs a real *testing.T) and
// expects it to fail.

const mutantEnv = "ADAPTERTEST_MUTANT"

var mutants = []struct {
	name, detectedBy string
}{
	{"lossy", "ConcurrentPublishers"},
	{"ackIgnored", "RedeliveryAfterCancel"},
	{"ackTwiceAcksAnother", "AckTwice"},
	{"noGroups", "CompetingConsumers"},
	{"noFanOut", "GroupsFanOut"},
	{"cancelKeepsChannelOpen", "CancelClosesChannel"},
	{"ctxIgnored", "ContextCancelEndsSubscription"},
	{"goroutineLeak", "CancelClosesChannel"},
	{"publishAfterClose", "PublishAfterClose"},
	{"zeroTimestamp", "RoundTrip"},
	{"recordTimeIgnored", "RecordRoundTrip"},
	{"headersDropped", "Headers"},
	{"headerListDiffers", "Headers"},
	{"keyDropped", "RecordRoundTrip"},
	{"truncated", "LargePayload"},
	{"crossTopic", "TopicIsolation"},
	{"reordered", "KeyOrder"},
}

func TestSuiteDetectsMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	if os.Getenv(mutantEnv) != "" {
		t.Skip("in a child process")
	}
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutantChild$/^"+m.detectedBy+"$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("case %s passed against mutant %s:\n%s", m.detectedBy, m.name, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestMutantChild/"+m.detectedBy) {
				t.Fatalf("case %s did not fail against mutant %s:\n%s", m.detectedBy, m.name, out)
			}
		})
	}
}

// TestMutantChild runs the suite against the mutant named by the
// environment; it only runs as a child of TestSuiteDetectsMutants.
func TestMutantChild(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("only runs as a child of TestSuiteDetectsMutants")
	}
	adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		a, err := memory.New(memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return &mutant{Adapter: a, kind: name}
	}, adaptertest.WithTimeout(time.Second))
}

// leaked blocks the goroutines of the goroutineLeak mutant forever.
var leaked = make(chan struct{})

// mutant is a memory adapter with one deliberate bug, selected by kind.
type mutant struct {
	*memory.Adapter
	kind string

	published atomic.Int64
	closed    atomic.Bool

	mu      sync.Mutex
	groups  map[string][]string              // group -> actual groups (noGroups)
	acked   map[*memory.Message]bool         // ackTwiceAcksAnother
	pending map[string][]eventstream.Message // group -> delivered, not acked
	held    map[string]eventstream.Record    // key -> record held back (reordered)
	subs    atomic.Int64
}

func (m *mutant) Publish(ctx context.Context, topic string, msg []byte) error {
	return m.PublishRecord(ctx, topic, eventstream.Record{Value: msg})
}

func (m *mutant) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	n := m.published.Add(1)
	switch m.kind {
	case "lossy":
		if n%97 == 0 {
			return nil
		}
	case "publishAfterClose":
		if m.closed.Load() {
			return nil
		}
	case "recordTimeIgnored":
		r.Time = time.Time{}
	case "headersDropped":
		r.Headers = nil
	case "keyDropped":
		r.Key = nil
	case "truncated":
		if len(r.Value) > 1000 {
			r.Value = r.Value[:len(r.Value)-1]
		}
	case "crossTopic":
		topic = strings.Replace(topic, "topic-b", "topic-a", 1)
	case "reordered":
		// Every tenth keyed record is held back and published after the
		// next record with the same key.
		key := string(r.Key)
		m.mu.Lock()
		held, ok := m.held[key]
		if !ok && r.Key != nil && n%10 == 0 {
			if m.held == nil {
				m.held = map[string]eventstream.Record{}
			}
			m.held[key] = r
			m.mu.Unlock()
			return nil
		}
		delete(m.held, key)
		m.mu.Unlock()
		if err := m.Adapter.PublishRecord(ctx, topic, r); err != nil || !ok {
			return err
		}
		r = held
	}
	return m.Adapter.PublishRecord(ctx, topic, r)
}

func (m *mutant) Close() error {
	m.closed.Store(true)
	return m.Adapter.Close()
}

func (m *mutant) Subscribe(ctx context.Context, topic, group string) (<-chan eventstream.Message, func(), error) {
	actual := group
	switch m.kind {
	case "noGroups":
		actual = group + "-" + string(rune('a'+m.subs.Add(1)))
		m.mu.Lock()
		if m.groups == nil {
			m.groups = map[string][]string{}
		}
		m.groups[group] = append(m.groups[group], actual)
		m.mu.Unlock()
	case "noFanOut":
		actual = "shared"
	case "ctxIgnored":
		ctx = context.Background()
	case "goroutineLeak":
		go func() { <-leaked }()
	}
	in, cancel, err := m.Adapter.Subscribe(ctx, topic, actual)
	if err != nil {
		return nil, nil, err
	}
	switch m.kind {
	case "cancelKeepsChannelOpen":
		out := make(chan eventstream.Message)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for msg := range in {
				select {
				case out <- msg:
				case <-stop:
				}
			}
			// Bug: out is never closed.
		}()
		var once sync.Once
		return out, func() {
			once.Do(func() { close(stop) })
			cancel()
			<-done
		}, nil
	case "zeroTimestamp", "ackTwiceAcksAnother", "headerListDiffers":
		out := make(chan eventstream.Message)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer close(out)
			for msg := range in {
				var w eventstream.Message = msg
				switch m.kind {
				case "zeroTimestamp":
					w = zeroTime{msg.(*memory.Message)}
				case "headerListDiffers":
					w = listLies{msg.(*memory.Message)}
				default:
					m.mu.Lock()
					if m.pending == nil {
						m.pending = map[string][]eventstream.Message{}
					}
					m.pending[group] = append(m.pending[group], msg)
					m.mu.Unlock()
				}
				select {
				case out <- w:
				case <-stop:
				}
			}
		}()
		var once sync.Once
		return out, func() {
			once.Do(func() { close(stop) })
			cancel()
			<-done
		}, nil
	}
	return in, cancel, nil
}

type zeroTime struct{ *memory.Message }

// listLies lists a message's headers, as eventstream.HeaderLister, less one
// entry of those Headers returns.
type listLies struct{ *memory.Message }

func (l listLies) NumHeaders() int { return max(len(l.Headers())-1, 0) }

func (l listLies) HeaderAt(i int) (name, value string) {
	names := slices.Sorted(maps.Keys(l.Headers()))
	return names[i], l.Headers()[names[i]]
}

func (zeroTime) Timestamp() time.Time { return time.Time{} }

func (m *mutant) Ack(ctx context.Context, group string, msg eventstream.Message) error {
	switch w := msg.(type) {
	case zeroTime:
		msg = w.Message
	case listLies:
		msg = w.Message
	}
	switch m.kind {
	case "ackIgnored":
		return nil
	case "noFanOut":
		group = "shared"
	case "noGroups":
		m.mu.Lock()
		actuals := m.groups[group]
		m.mu.Unlock()
		var errs []error
		for _, actual := range actuals {
			err := m.Adapter.Ack(ctx, actual, msg)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	case "ackTwiceAcksAnother":
		mm := msg.(*memory.Message)
		m.mu.Lock()
		if m.acked == nil {
			m.acked = map[*memory.Message]bool{}
		}
		again := m.acked[mm]
		m.acked[mm] = true
		var other eventstream.Message
		if again {
			for _, p := range m.pending[group] {
				if p.(*memory.Message) != mm {
					other = p
				}
			}
		}
		m.mu.Unlock()
		if other != nil {
			return m.Adapter.Ack(ctx, group, other)
		}
	}
	return m.Adapter.Ack(ctx, group, msg)
}
