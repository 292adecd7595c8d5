//go:build !linux

package bench

import "time"

func selfCPU() time.Duration { return 0 }

func procCPU(int) time.Duration { return 0 }
