package redis_test

import (
	"io"
	"os"
)

// roleEnv selects what the test binary does when a test of this package
// starts it as a helper process (see crash_test.go).
const roleEnv = "EVENTSTREAM_REDIS_ROLE"

// runRole runs the helper process named role and returns its exit code.
func runRole(role string) int {
	switch role {
	case "crash-consumer":
		return runCrashConsumer()
	default:
		_, _ = io.WriteString(os.Stderr, "redis test: unknown "+roleEnv+" "+role+"\n")
		return 2
	}
}
