package main

import (
	"os"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
)

// newRabbitMQAdapter returns the adapter of -adapter rabbitmq: url, else
// $RABBITMQ_URL, else a local broker with the guest account. The example
// subscribes every group (including the dead-letter topic's) before it
// emits, so RabbitMQ has a queue for every message; see the package
// documentation of adapters/rabbitmq.
func newRabbitMQAdapter(url string) (eventstream.MQAdapter, error) {
	if url == "" {
		url = os.Getenv("RABBITMQ_URL")
	}
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	return rabbitmq.NewAdapter(rabbitmq.Config{URL: url})
}
