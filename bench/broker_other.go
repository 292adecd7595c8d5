//go:build !linux

package bench

import "os/exec"

// setParentDeathSignal is a no-op outside Linux: the broker process still
// exits when its standard input closes with this process.
func setParentDeathSignal(*exec.Cmd) {}
