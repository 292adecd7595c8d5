package main

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// machine describes where the run happened.
type machine struct {
	CPU       string
	Cores     int
	MaxProcs  int
	MemGiB    float64
	Kernel    string
	GoVersion string
	Commit    string
	Deps      [][2]string // module, version
}

func describeMachine() machine {
	m := machine{
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		MaxProcs:  runtime.GOMAXPROCS(0),
		GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.MemGiB = memTotalGiB()
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		// Tracked library files changed since the commit (this module and
		// the generated report excluded) make the commit an approximation.
		top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err == nil {
			root := strings.TrimSpace(string(top))
			err := exec.Command("git", "-C", root, "diff", "--quiet", "HEAD", "--", ".",
				":(exclude)bench", ":(exclude)docs/benchmarks.md", ":(exclude)docs/benchmarks").Run()
			if err != nil {
				m.Commit += " plus uncommitted changes"
			}
		}
	}
	want := []string{
		"github.com/eventstream-go/eventstream",
		"github.com/segmentio/kafka-go",
		"github.com/twmb/franz-go",
		"github.com/twmb/franz-go/pkg/kfake",
		"github.com/asaskevich/EventBus",
		"github.com/ThreeDotsLabs/watermill",
		"github.com/ThreeDotsLabs/watermill-kafka/v3",
		"github.com/IBM/sarama",
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, w := range want {
			for _, d := range bi.Deps {
				if d.Path != w {
					continue
				}
				v := d.Version
				if d.Replace != nil {
					v = "this checkout (replace => " + d.Replace.Path + ")"
				}
				m.Deps = append(m.Deps, [2]string{w, v})
			}
		}
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown (" + runtime.GOARCH + ")"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown (" + runtime.GOARCH + ")"
}

func memTotalGiB() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / (1024 * 1024)
		}
	}
	return 0
}
