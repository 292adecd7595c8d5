package kafka_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
)

// logRecorder is a slog handler keeping every record at Warn and above
// (Info and above with info set).
type logRecorder struct {
	info bool // keep Info records too

	mu   sync.Mutex
	recs []string // level, message and attributes
}

func (l *logRecorder) Enabled(_ context.Context, lv slog.Level) bool {
	return lv >= slog.LevelWarn || l.info && lv >= slog.LevelInfo
}
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{l: l, attrs: as}
}
func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// all returns every recorded record.
func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

// count returns how many recorded records contain substr.
func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

// errors returns the recorded records at Error level.
func (l *logRecorder) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if strings.HasPrefix(r, "ERROR ") {
			out = append(out, r)
		}
	}
	return out
}

// attrHandler is a logRecorder with attributes added by WithAttrs.
type attrHandler struct {
	l     *logRecorder
	attrs []slog.Attr
}

func (h *attrHandler) Enabled(ctx context.Context, lv slog.Level) bool { return h.l.Enabled(ctx, lv) }
func (h *attrHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.attrs...)
	return h.l.Handle(ctx, r)
}
func (h *attrHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{l: h.l, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h *attrHandler) WithGroup(string) slog.Handler { return h }

// checkEndsOnDeletion receives want on ch (acking), lets the acks be
// committed, then has deleteTopic run and checks that the subscription
// ends: its channel is closed, without delivering anything unless the topic
// was recreated (records of the new topic are acked then), and one ERROR
// log names the topic and the group.
func checkEndsOnDeletion(t *testing.T, a *kafka.Adapter, logs *logRecorder, brokers []string,
	topic, group string, ch <-chan eventstream.Message, want []string, recreated bool, deleteTopic func()) {
	t.Helper()
	ctx := ctxT(t, 90*time.Second)
	receiveValues(t, ctx, a, group, ch, want)
	waitFor(t, 30*time.Second, "the acks to be committed", func() bool {
		var sum int64
		for _, off := range committed(t, brokers, group, topic) {
			sum += max(off, 0)
		}
		return sum == int64(len(want))
	})
	deleteTopic()
	begin := time.Now()
	for ended := false; !ended; {
		select {
		case m, ok := <-ch:
			if !ok {
				ended = true
				break
			}
			if !recreated {
				t.Fatalf("delivery after the topic was deleted: %q", m.Value())
			}
			// From the new topic, before the subscription noticed: acked
			// as a handler would, and still never committed.
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("the subscription did not end after its topic was deleted: %v", ctx.Err())
		}
	}
	t.Logf("the subscription ended %v after the deletion", time.Since(begin).Round(time.Millisecond))
	errs := logs.errors()
	if len(errs) != 1 {
		t.Fatalf("%d ERROR logs, want 1: %q", len(errs), errs)
	}
	if !strings.Contains(errs[0], "topic="+topic) || !strings.Contains(errs[0], "group="+group) {
		t.Errorf("the ERROR log does not name the topic and the group: %q", errs[0])
	}
}

// TestTopicDeletedEndsSubscription deletes the topic of a live subscription
// on the embedded broker: the subscription ends with one ERROR log, the
// adapter does not create the topic again (with AutoCreateTopics, whose
// partition watcher used to), and a topic deleted and created again at once
// (a new topic id) ends it as well, without its old offsets being applied
// to the new topic.
func TestTopicDeletedEndsSubscription(t *testing.T) {
	for _, tc := range []struct {
		name       string
		autoCreate bool
		recreate   bool
	}{
		{"NoAutoCreate", false, false},
		{"AutoCreate", true, false},
		{"Recreated", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniqueName("deleted")
			group := "g-" + topic
			c := startCluster(t, 2, topic)
			brokers := c.Addrs()
			logs := &logRecorder{}
			cfg := testConfig(brokers)
			cfg.Logger = slog.New(logs)
			cfg.AutoCreateTopics = tc.autoCreate
			cfg.TopicPartitions = 2
			cfg.PartitionWatchInterval = 100 * time.Millisecond
			a := newAdapter(t, cfg)
			ctx := ctxT(t, 90*time.Second)
			ch, cancel, err := a.Subscribe(ctx, topic, group)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			want := vals("before", 6)
			for _, v := range want {
				if err := a.Publish(ctx, topic, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			newVals := vals("after", 10)
			checkEndsOnDeletion(t, a, logs, brokers, topic, group, ch, want, tc.recreate, func() {
				kadmin.DeleteTopic(t, brokers, topic)
				if !tc.recreate {
					return
				}
				kadmin.CreateTopic(t, brokers, topic, 2)
				p := newAdapter(t, testConfig(brokers))
				for _, v := range newVals {
					if err := p.Publish(ctx, topic, []byte(v)); err != nil {
						t.Fatal(err)
					}
				}
			})
			cancel()
			if !tc.recreate {
				if n := kadmin.Partitions(t, brokers, topic); n != 0 {
					t.Fatalf("the deleted topic exists again with %d partitions: the adapter created it", n)
				}
				return
			}
			// Nothing of the new topic was skipped: a new member of the
			// group gets every record of it.
			for p, off := range committed(t, brokers, group, topic) {
				if off > 0 {
					t.Errorf("partition %d of the new topic has offset %d committed", p, off)
				}
			}
			ch2, cancel2, err := a.Subscribe(ctx, topic, group)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel2()
			receiveValues(t, ctx, a, group, ch2, newVals)
		})
	}
}
