// Package e2e holds end-to-end tests of the distributed bus over the Kafka
// adapter: a consumer process killed with SIGKILL mid-stream, interoperation
// with kcat (librdkafka), and benchmarks against raw kafka-go with the broker
// in a separate process. It has no non-test code.
package e2e
