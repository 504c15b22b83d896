package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Measure is a series of timings of one command or operation, or a
// series of byte counts (Sizes).
type Measure struct {
	// Label says what was timed (a command line, or an in-process call).
	Label   string
	Samples []time.Duration
	// Bytes, when positive, is the data each timed sample processed: the
	// table then quotes the throughput of the median time, and the ratio
	// of a row whose measures both have Bytes compares throughputs (ours
	// over theirs: above 1, ours is faster).
	Bytes int64
	// Sizes are byte counts (bytes read, bytes stored) instead of
	// timings, for a measure without Samples.
	Sizes []int64
}

// count returns the number of samples or byte counts.
func (m *Measure) count() int {
	if m == nil {
		return 0
	}
	return len(m.Samples) + len(m.Sizes)
}

// Throughput returns the median throughput in bytes per second (0 without
// Bytes or samples).
func (m *Measure) Throughput() float64 {
	if m == nil || m.Bytes <= 0 || m.Median() <= 0 {
		return 0
	}
	return float64(m.Bytes) / m.Median().Seconds()
}

// value returns what a row compares: the median byte count of Sizes, the
// median throughput with Bytes, the median time otherwise.
func (m *Measure) value() float64 {
	switch {
	case m == nil:
		return 0
	case len(m.Sizes) > 0:
		return MedianBytes(m.Sizes)
	case m.Bytes > 0:
		return m.Throughput()
	default:
		return float64(m.Median())
	}
}

// ratioOf says what a row's ratio compares: "speed" (throughputs),
// "bytes" (byte counts) or "" (times).
func ratioOf(ours, theirs *Measure) string {
	switch {
	case ours == nil || theirs == nil:
		return ""
	case len(ours.Sizes) > 0 && len(theirs.Sizes) > 0:
		return "bytes"
	case ours.Bytes > 0 && theirs.Bytes > 0:
		return "speed"
	}
	return ""
}

// Median returns the median of the samples (0 when there are none).
func (m *Measure) Median() time.Duration {
	if m == nil {
		return 0
	}
	return Median(m.Samples)
}

// Add records one sample.
func (m *Measure) Add(d time.Duration) { m.Samples = append(m.Samples, d) }

// MarshalJSON writes the label, the count, the median, the extremes and
// every sample, in milliseconds; with Bytes also the data per sample and
// the median throughput (MB/s, 10^6 bytes); for byte counts their median
// and every count instead.
func (m *Measure) MarshalJSON() ([]byte, error) {
	if len(m.Sizes) > 0 {
		return json.Marshal(struct {
			Label       string  `json:"label"`
			N           int     `json:"n"`
			MedianBytes float64 `json:"median_bytes"`
			Sizes       []int64 `json:"samples_bytes"`
		}{m.Label, len(m.Sizes), MedianBytes(m.Sizes), m.Sizes})
	}
	type out struct {
		Label     string    `json:"label"`
		N         int       `json:"n"`
		MedianMS  float64   `json:"median_ms"`
		MinMS     float64   `json:"min_ms"`
		MaxMS     float64   `json:"max_ms"`
		SamplesMS []float64 `json:"samples_ms"`
		Bytes     int64     `json:"bytes,omitempty"`
		MedianMBs float64   `json:"median_mb_per_s,omitempty"`
	}
	o := out{Label: m.Label, N: len(m.Samples), MedianMS: ms(m.Median()), SamplesMS: []float64{},
		Bytes: m.Bytes, MedianMBs: math.Round(m.Throughput()/1e4) / 100}
	for i, s := range m.Samples {
		if i == 0 || ms(s) < o.MinMS {
			o.MinMS = ms(s)
		}
		if ms(s) > o.MaxMS {
			o.MaxMS = ms(s)
		}
		o.SamplesMS = append(o.SamplesMS, ms(s))
	}
	return json.Marshal(o)
}

// Goal is what a row must reach; check gets the medians of ours and
// theirs, or ratio, when set instead, the row's ratio.
type Goal struct {
	Text  string
	check func(ours, theirs time.Duration) bool
	ratio func(r float64) bool
}

// SpeedAtLeast is met when our throughput is at least min times theirs
// (rows whose measures have Bytes).
func SpeedAtLeast(min float64) Goal {
	return Goal{Text: fmt.Sprintf("speed >= %.2fx", min), ratio: func(r float64) bool {
		return !math.IsNaN(r) && r >= min
	}}
}

// RatioAtMost is met when ours/theirs ≤ max.
func RatioAtMost(max float64) Goal {
	return Goal{Text: fmt.Sprintf("ratio <= %.2f", max), check: func(o, t time.Duration) bool {
		r := Ratio(o, t)
		return !math.IsNaN(r) && r <= max
	}}
}

// Faster is met when ours is faster than theirs (ratio < 1).
func Faster() Goal {
	return Goal{Text: "faster (ratio < 1)", check: func(o, t time.Duration) bool {
		r := Ratio(o, t)
		return !math.IsNaN(r) && r < 1
	}}
}

// AtMost is met when our median is at most max.
func AtMost(max time.Duration) Goal {
	return Goal{Text: "<= " + FormatDuration(max), check: func(o, _ time.Duration) bool { return o > 0 && o <= max }}
}

// NoGrowth is met when ours (the larger case) is at most factor times
// theirs (the smaller case) plus slack: timings of a few milliseconds are
// noisy, so a small absolute difference does not count as growth.
func NoGrowth(factor float64, slack time.Duration) Goal {
	return Goal{Text: fmt.Sprintf("no growth (<= %.1fx + %s)", factor, FormatDuration(slack)), check: func(o, t time.Duration) bool {
		return o > 0 && t > 0 && float64(o) <= factor*float64(t)+float64(slack)
	}}
}

// Row is one line of the result table.
type Row struct {
	Bench  string
	What   string
	Ours   *Measure
	Theirs *Measure
	Goal   *Goal
	Note   string
	// NotMeasured, when set, says why the row has no measurement.
	NotMeasured string
}

// Ratio returns ours/theirs of the medians (NaN without theirs): of the
// times, of the throughputs when both measures have Bytes, of the byte
// counts for measures of Sizes.
func (r *Row) Ratio() float64 {
	if r.Ours == nil || r.Theirs == nil {
		return math.NaN()
	}
	o, t := r.Ours.value(), r.Theirs.value()
	if o <= 0 || t <= 0 {
		return math.NaN()
	}
	return o / t
}

// Met says whether the goal is met; ok is false when the row has no goal or
// no measurement.
func (r *Row) Met() (met, ok bool) {
	if r.Goal == nil || r.NotMeasured != "" || r.Ours.count() == 0 {
		return false, false
	}
	if r.Goal.ratio != nil {
		return r.Goal.ratio(r.Ratio()), true
	}
	return r.Goal.check(r.Ours.Median(), r.Theirs.Median()), true
}

// MarshalJSON writes the row with its medians, ratio and verdict.
func (r *Row) MarshalJSON() ([]byte, error) {
	type out struct {
		Bench       string   `json:"bench"`
		What        string   `json:"what"`
		Ours        *Measure `json:"ours,omitempty"`
		Theirs      *Measure `json:"theirs,omitempty"`
		Ratio       *float64 `json:"ratio,omitempty"`
		RatioOf     string   `json:"ratio_of,omitempty"`
		Goal        string   `json:"goal,omitempty"`
		Met         *bool    `json:"met,omitempty"`
		Note        string   `json:"note,omitempty"`
		NotMeasured string   `json:"not_measured,omitempty"`
	}
	o := out{Bench: r.Bench, What: r.What, Ours: r.Ours, Theirs: r.Theirs, Note: r.Note, NotMeasured: r.NotMeasured}
	if x := r.Ratio(); !math.IsNaN(x) {
		o.Ratio = &x
		o.RatioOf = ratioOf(r.Ours, r.Theirs)
	}
	if r.Goal != nil {
		o.Goal = r.Goal.Text
	}
	if met, ok := r.Met(); ok {
		o.Met = &met
	}
	return json.Marshal(o)
}

// Report is the result of a run.
type Report struct {
	Environment Environment `json:"environment"`
	Mode        string      `json:"mode"`
	Rows        []*Row      `json:"rows"`
	// Errors are the benchmarks that failed (their rows say "not measured").
	Errors []string `json:"errors,omitempty"`
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// cell formats one measure's median for the table: a time, a throughput
// and its time, or a byte count.
func cell(m *Measure) string {
	switch {
	case m.count() == 0:
		return "-"
	case len(m.Sizes) > 0:
		return FormatBytes(int64(MedianBytes(m.Sizes)))
	case m.Bytes > 0:
		return fmt.Sprintf("%.1f MB/s (%s)", m.Throughput()/1e6, FormatDuration(m.Median()))
	}
	return FormatDuration(m.Median())
}

// ratioCell formats a row's ratio, saying when it is of speeds.
func ratioCell(r *Row) string {
	s := FormatRatio(r.Ratio())
	if s != "-" && ratioOf(r.Ours, r.Theirs) == "speed" {
		s += " speed"
	}
	return s
}

// WriteTable prints the rows as a plain-text table.
func WriteTable(w io.Writer, rows []*Row) error {
	header := []string{"bench", "what", "ours (median)", "theirs (median)", "ratio", "goal", "met?", "notes"}
	table := [][]string{header}
	for _, r := range rows {
		met := "-"
		if m, ok := r.Met(); ok {
			met = map[bool]string{true: "yes", false: "NO"}[m]
		}
		goal := "-"
		if r.Goal != nil {
			goal = r.Goal.Text
		}
		ours, theirs, note := cell(r.Ours), cell(r.Theirs), r.Note
		if r.NotMeasured != "" {
			ours, theirs, met = "-", "-", "-"
			note = "not measured: " + r.NotMeasured
		}
		table = append(table, []string{r.Bench, r.What, ours, theirs, ratioCell(r), goal, met, note})
	}
	width := make([]int, len(header))
	for _, line := range table {
		for i, c := range line[:len(line)-1] {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for n, line := range table {
		var l strings.Builder
		for i, c := range line {
			l.WriteString(c)
			if i < len(line)-1 {
				l.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
		if n == 0 {
			total := 0
			for _, w := range width {
				total += w + 2
			}
			b.WriteString(strings.Repeat("-", total+len("notes")) + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
