package bench

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill the broker process if this
// process dies without closing it.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
