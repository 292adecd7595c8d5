package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// series is one peer's bars across the categories of a chart; NaN means
// missing (n/a or error).
type series struct {
	name   string
	values []float64
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // eventstream: blue
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// groupedBars draws one group of bars per category, one bar per series, on
// a logarithmic value axis, and saves it as a PNG.
func groupedBars(file, title, ylabel string, categories []string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = siLogTicks{}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, v := range s.values {
			if v > 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		return fmt.Errorf("%s: no data", file)
	}
	// Axis from a power of ten below the smallest bar; room above for the
	// legend.
	base := math.Pow(10, math.Floor(math.Log10(lo)))
	top := hi * math.Pow(hi/base, 0.08*float64(len(ss)+1))
	p.Y.Min, p.Y.Max = base, top

	grid := plotter.NewGrid()
	grid.Vertical.Width = 0
	p.Add(grid)

	width := vg.Points(math.Min(14, 330/float64(len(categories)*len(ss))))
	for i, s := range ss {
		floor := make(plotter.Values, len(categories))
		vals := make(plotter.Values, len(categories))
		for j, v := range s.values {
			floor[j] = base
			if v > base && !math.IsNaN(v) {
				vals[j] = v - base
			}
		}
		under, err := plotter.NewBarChart(floor, width)
		if err != nil {
			return err
		}
		under.Offset = vg.Length(float64(i)-float64(len(ss)-1)/2) * width
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.StackOn(under) // bars start at the axis minimum, not at 0
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0 // missing bars (height 0) stay invisible
		p.Add(bars)
		p.Legend.Add(s.name, bars)
	}
	p.NominalX(categories...)
	p.X.Min, p.X.Max = -0.6, float64(len(categories))-0.4
	return p.Save(vg.Length(max(8, 1.4*float64(len(categories))))*vg.Inch, 5*vg.Inch, file)
}

// writeCharts draws the report's charts into dir and returns the file
// names by chart key.
func (r *runner) writeCharts(dir string) (map[string]string, error) {
	out := map[string]string{}
	throughput := func(keyName, file, title, ylabel, section string, peers []string, filter func(tc testCase) bool, label func(tc testCase) string) error {
		var cats []string
		var cases []testCase
		for _, tc := range r.cases {
			if tc.Section == section && filter(tc) {
				cases = append(cases, tc)
				cats = append(cats, label(tc))
			}
		}
		var ss []series
		for _, p := range peers {
			s := series{name: p}
			have := false
			for _, tc := range cases {
				v := math.NaN()
				if m, ok := r.get(section, tc.ID, p); ok {
					v, have = m.PerSec(), true
				}
				s.values = append(s.values, v)
			}
			if have {
				ss = append(ss, s)
			}
		}
		if len(ss) == 0 {
			return nil
		}
		file = r.chartPrefix + file
		if err := groupedBars(filepath.Join(dir, file), title, ylabel, cats, ss); err != nil {
			return err
		}
		out[keyName] = file
		return nil
	}
	memLabel := func(tc testCase) string {
		l := strings.TrimSuffix(tc.Title, ", 100 B")
		l = strings.ReplaceAll(l, " Emit", "")
		l = strings.ReplaceAll(l, "handler ", "")
		l = strings.ReplaceAll(l, "fan-out to ", "fan-out ")
		l = strings.ReplaceAll(l, "1 subscriber", "1 sub")
		return strings.ReplaceAll(l, ", ", "\n")
	}
	if err := throughput("memory", "memory-throughput.png", "In-process throughput (100 B pointer payload, higher is better)",
		"events emitted per second", "memory", memoryPeerNames(),
		func(tc testCase) bool { return strings.HasSuffix(tc.ID, "-100B") }, memLabel); err != nil {
		return nil, err
	}
	kLabel := func(tc testCase) string {
		l := tc.Title
		l = strings.ReplaceAll(l, " Emit/publish", "")
		l = strings.ReplaceAll(l, "group consumption, ", "")
		l = strings.ReplaceAll(l, "fan-out to ", "fan-out ")
		l = strings.ReplaceAll(l, "handler concurrency", "conc.")
		return strings.ReplaceAll(l, ", ", "\n")
	}
	if err := throughput("kafka-produce", "kafka-produce.png", "Kafka produce, acks=all (higher is better)",
		"messages acknowledged per second", "kafka-produce", kafkaProducerNames(),
		func(testCase) bool { return true }, kLabel); err != nil {
		return nil, err
	}
	if err := throughput("kafka-consume", "kafka-consume.png", "Kafka group consumption, backlog drain (higher is better)",
		"messages handled per second per group", "kafka-consume", kafkaPeerNames(),
		func(testCase) bool { return true }, kLabel); err != nil {
		return nil, err
	}
	for _, sec := range []struct {
		key, section, file, title, unit string
		div                             float64
	}{
		{"latency-memory", "memory", "latency-memory.png", "In-process Emit→handler latency, unloaded (lower is better)", "nanoseconds", 1},
		{"latency-kafka", "kafka", "latency-kafka.png", "Kafka Emit→handler latency, unloaded (lower is better)", "microseconds", 1e3},
	} {
		var cats []string
		p50 := series{name: "p50"}
		p99 := series{name: "p99"}
		for _, l := range r.lat {
			if l.Section != sec.section || l.Err != "" || l.Median.Samples == 0 {
				continue
			}
			cats = append(cats, wrapName(l.Peer))
			p50.values = append(p50.values, float64(l.Median.P50.Nanoseconds())/sec.div)
			p99.values = append(p99.values, float64(l.Median.P99.Nanoseconds())/sec.div)
		}
		if len(cats) == 0 {
			continue
		}
		file := r.chartPrefix + sec.file
		if err := groupedBars(filepath.Join(dir, file), sec.title, sec.unit, cats, []series{p50, p99}); err != nil {
			return nil, err
		}
		out[sec.key] = file
	}
	return out, nil
}

// wrapName breaks a long peer name into lines for an axis label.
func wrapName(s string) string {
	s = strings.Replace(s, " (", "\n(", 1)
	return s
}

// siLogTicks are log ticks labelled 1, 10, 100, 1k, 10k, ... instead of
// 1e+03.
type siLogTicks struct{}

func (siLogTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.LogTicks{Prec: -1}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = siLabel(ts[i].Value)
		}
	}
	return ts
}

func siLabel(v float64) string {
	switch {
	case v >= 1e9:
		return trimFloat(v/1e9) + "G"
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e3:
		return trimFloat(v/1e3) + "k"
	}
	return trimFloat(v)
}
