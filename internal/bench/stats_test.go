package bench

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5 * ms}, 5 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{[]time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms}, 2500 * time.Microsecond},
		{[]time.Duration{1 * ms, 100 * ms, 2 * ms, 3 * ms, 1000 * ms}, 3 * ms},
	} {
		in := append([]time.Duration(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("Median reordered its argument: %v", tc.in)
			}
		}
	}
}

func TestRatioFormatting(t *testing.T) {
	for _, tc := range []struct {
		a, b time.Duration
		want string
	}{
		{3 * time.Millisecond, 2 * time.Millisecond, "1.50x"},
		{time.Millisecond, 3 * time.Millisecond, "0.33x"},
		{time.Millisecond, 0, "-"},
		{0, time.Millisecond, "-"},
	} {
		if got := FormatRatio(Ratio(tc.a, tc.b)); got != tc.want {
			t.Errorf("FormatRatio(Ratio(%v, %v)) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
	if got := FormatRatio(math.Inf(1)); got != "-" {
		t.Errorf("FormatRatio(+Inf) = %q", got)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                         "-",
		-time.Millisecond:         "-",
		250 * time.Microsecond:    "0.25 ms",
		1234 * time.Microsecond:   "1.23 ms",
		999 * time.Millisecond:    "999.00 ms",
		2500 * time.Millisecond:   "2.50 s",
		12345 * time.Millisecond:  "12.35 s",
		100500 * time.Millisecond: "100 s",
		250 * time.Second:         "250 s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 512: "512 B", 1 << 10: "1 KiB", 1536: "1.5 KiB", 64 << 20: "64 MiB", 10 << 30: "10 GiB",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestGoalsAndTable(t *testing.T) {
	ms := time.Millisecond
	ours := &Measure{Label: "ours", Samples: []time.Duration{3 * ms, 4 * ms, 5 * ms}}
	theirs := &Measure{Label: "theirs", Samples: []time.Duration{4 * ms, 4 * ms, 4 * ms}}
	g12, gf, g20 := RatioAtMost(1.2), Faster(), AtMost(20*ms)
	rows := []*Row{
		{Bench: "create", What: "a", Ours: ours, Theirs: theirs, Goal: &g12},
		{Bench: "create", What: "b", Ours: ours, Theirs: theirs, Goal: &gf},
		{Bench: "hold", What: "c", Ours: ours, Goal: &g20},
		{Bench: "create", What: "d", NotMeasured: "snapper is not installed"},
	}
	for i, want := range []struct{ met, ok bool }{{true, true}, {false, true}, {true, true}, {false, false}} {
		met, ok := rows[i].Met()
		if met != want.met || ok != want.ok {
			t.Errorf("row %s: Met() = %v, %v; want %v, %v", rows[i].What, met, ok, want.met, want.ok)
		}
	}
	var b strings.Builder
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"4.00 ms", "1.00x", "yes", "NO", "not measured: snapper is not installed"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if g := NoGrowth(1.5, ms); !g.check(5*ms, 4*ms) || g.check(20*ms, 4*ms) {
		t.Error("NoGrowth misjudges")
	}
}

func TestThroughputAndByteRows(t *testing.T) {
	s := time.Second
	fast := &Measure{Label: "ours", Samples: []time.Duration{s, 3 * s, s}, Bytes: 100e6}
	slow := &Measure{Label: "theirs", Samples: []time.Duration{2 * s}, Bytes: 100e6}
	g9, g3 := SpeedAtLeast(0.9), SpeedAtLeast(3)
	read := &Measure{Label: "read", Sizes: []int64{30, 10, 20}}
	readTheirs := &Measure{Label: "read theirs", Sizes: []int64{100, 100}}
	rows := []*Row{
		{Bench: "wbadmin", What: "speed", Ours: fast, Theirs: slow, Goal: &g9},
		{Bench: "wbadmin", What: "speed3", Ours: fast, Theirs: slow, Goal: &g3},
		{Bench: "wbadmin", What: "bytes", Ours: read, Theirs: readTheirs},
	}
	if r := rows[0].Ratio(); r != 2 {
		t.Errorf("speed ratio = %v, want 2 (ours twice as fast)", r)
	}
	if met, ok := rows[0].Met(); !met || !ok {
		t.Errorf("speed >= 0.9: Met() = %v, %v", met, ok)
	}
	if met, ok := rows[1].Met(); met || !ok {
		t.Errorf("speed >= 3: Met() = %v, %v", met, ok)
	}
	if r := rows[2].Ratio(); r != 0.2 {
		t.Errorf("bytes ratio = %v, want 0.2", r)
	}
	var b strings.Builder
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"100.0 MB/s (1.00 s)", "50.0 MB/s (2.00 s)", "2.00x speed", "speed >= 0.90x", "20 B", "100 B", "0.20x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	j, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ratio_of":"speed"`, `"median_mb_per_s":100`, `"ratio_of":"bytes"`, `"median_bytes":20`, `"samples_bytes":[30,10,20]`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("JSON lacks %s:\n%s", want, j)
		}
	}
}
