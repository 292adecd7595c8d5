// Package eventstream is an event bus for Go services: the same On / Off /
// Emit / Close API passes events between goroutines of one process (memory
// mode) or between processes through a message broker (distributed mode, over
// an MQAdapter such as adapters/kafka).
package eventstream
