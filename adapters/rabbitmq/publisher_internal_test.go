package rabbitmq

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestMatchReturn: a basic.return is charged to the oldest pending publish
// that matches it exactly; when none does (the broker changed the message),
// to every pending publish of the same exchange and routing key, so that the
// one it belongs to never reports success (a duplicate, never a loss).
func TestMatchReturn(t *testing.T) {
	pub := func(key, body string, headers amqp.Table) *pendingPub {
		return &pendingPub{exchange: "x", key: key, msg: amqp.Publishing{Body: []byte(body), Headers: headers}}
	}
	a, b, c, other := pub("k", "a", nil), pub("k", "b", nil), pub("k", "b", nil), pub("other", "b", nil)
	pc := &pubChannel{pending: map[uint64]*pendingPub{1: a, 2: b, 3: c, 4: other}}

	got := pc.matchReturn(&amqp.Return{Exchange: "x", RoutingKey: "k", Body: []byte("b")})
	if len(got) != 1 || got[0] != b {
		t.Fatalf("exact match: got %v, want only the oldest matching publish (tag 2)", got)
	}

	got = pc.matchReturn(&amqp.Return{Exchange: "x", RoutingKey: "k", Body: []byte("b"),
		Headers: amqp.Table{"changed": int32(1)}})
	if len(got) != 3 {
		t.Fatalf("no exact match: got %d publishes, want all 3 of exchange x and key k", len(got))
	}
	for _, p := range got {
		if p == other {
			t.Fatal("a publish with another routing key was charged")
		}
	}
}
