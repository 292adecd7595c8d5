// Package bench compares eventstream with peer libraries on the same
// machine, in the same run.
//
// In-process peers: the eventstream memory bus, a raw buffered channel (the
// floor), github.com/asaskevich/EventBus in async mode and Watermill's
// GoChannel. Kafka peers, all against one embedded Kafka-protocol broker
// (franz-go's kfake) running in a separate process: the eventstream
// distributed bus over adapters/kafka, raw segmentio/kafka-go, franz-go and
// Watermill-kafka (Sarama).
//
// The module is separate from the library so that the peers never appear in
// the library's go.mod. Run everything and write the report with
//
//	cd bench && go run ./cmd/report -out ../docs/benchmarks.md
//
// (-quick for a short run), or single scenarios with
//
//	cd bench && go test -run '^$' -bench . -benchmem
//
// The package exports the measurement functions used by both: MemoryPeers
// and the Memory* functions for in-process peers, KafkaPeers and the Kafka*
// functions for broker-backed peers, and StartBroker / MaybeRunBroker for the
// broker process.
package bench
