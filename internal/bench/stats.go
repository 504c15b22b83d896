package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Median returns the median of ds: the middle value, or the mean of the two
// middle values for an even count. It returns 0 for no values and does not
// reorder ds.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return s[m-1] + (s[m]-s[m-1])/2
}

// MedianBytes returns the median of byte counts (the mean of the two middle
// values for an even count; 0 for none), without reordering v.
func MedianBytes(v []int64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return float64(s[m])
	}
	return (float64(s[m-1]) + float64(s[m])) / 2
}

// Ratio returns a/b, or NaN when either is missing (not positive).
func Ratio(a, b time.Duration) float64 {
	if a <= 0 || b <= 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// FormatRatio formats a ratio with two decimals ("1.23x"), or "-" when it
// is not a number.
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}

// FormatDuration formats a duration for the table: milliseconds with two
// decimals below a second ("3.21 ms"), seconds with two decimals below 100
// seconds ("12.34 s"), whole seconds above, and "-" for a missing value.
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
}

// FormatBytes formats a byte count with binary units ("1.5 GiB", "64 MiB",
// "512 B").
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	i := -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	if v == math.Trunc(v) {
		s = fmt.Sprintf("%.0f", v)
	}
	return s + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
}

// ms converts a duration to float milliseconds (for JSON).
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
