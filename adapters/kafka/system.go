package kafka

import eventstream "github.com/eventstream-go/eventstream"

var _ eventstream.SystemNamer = (*Adapter)(nil)

// MessagingSystem returns "kafka", the OpenTelemetry messaging.system of
// this adapter; the bus reports it to its Observer (eventstream.SystemNamer).
func (a *Adapter) MessagingSystem() string { return "kafka" }
