package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	"github.com/eventstream-go/eventstream/adaptertest"
)

// TestConformance runs the adapter contract suite on a real RabbitMQ.
// RabbitMQ only keeps messages for queues that exist when they are
// published, so the suite declares each case's groups before the case
// publishes (adaptertest.WithGroupDeclarer).
func TestConformance(t *testing.T) {
	url := brokerURL(t)
	adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		return newAdapter(t, testConfig(url))
	}, adaptertest.WithTimeout(15*time.Second), adaptertest.WithGroupDeclarer(declarer))
}

func declarer(ctx context.Context, a eventstream.MQAdapter, topic, group string) error {
	return a.(*rabbitmq.Adapter).DeclareGroup(ctx, topic, group)
}
