package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example and checks the facts it reports.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`"specversion":"1.0"`,
		`"datacontenttype":"application/json","data":{"id":"o-1","amount":30}}`,
		"ops: orders.billing.dlq received the example.order.created event of order o-3: orders/billing gave up after 1 attempt(s): order o-3: amount -5 is not positive",
		"billing billed 4 orders",
		"audit saw 5",
		`committed offsets on "orders": billing 5, audit 5 (of 5 messages)`,
		"bus stats: emitted 5, delivered 10, failed 1, dead-lettered 1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
