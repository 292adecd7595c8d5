package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example and checks the trace it prints: one trace with
// the application's span, the send, the failed process attempt with the
// handler's own span, and the dead-letter write linked to the send.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	tree := s[strings.Index(s, "one trace"):]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^trace [0-9a-f]{32}$`),
		regexp.MustCompile(`(?m)^  checkout \[internal\]$`),
		regexp.MustCompile(`(?m)^    send orders \[producer\] messaging.system=kafka$`),
		regexp.MustCompile(`(?m)^      process orders \[consumer\] status=Error messaging.system=kafka error.type=_OTHER link->"send orders"$`),
		regexp.MustCompile(`(?m)^        charge card \[internal\]$`),
		regexp.MustCompile(`(?m)^ +send orders.billing.dlq \[producer\] messaging.system=kafka link->"send orders"$`),
		regexp.MustCompile(`messaging.client.sent.messages \{messaging.destination.name=orders\} = 1`),
		regexp.MustCompile(`messaging.client.consumed.messages \{messaging.consumer.group.name=billing messaging.destination.name=orders\} = 1`),
	} {
		if !want.MatchString(tree) {
			t.Errorf("output lacks %s:\n%s", want, tree)
		}
	}
	if !strings.Contains(s, `"Name": "process orders"`) {
		t.Errorf("the stdout exporter did not print the process span:\n%s", s)
	}
}
