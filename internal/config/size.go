package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/linuxvss/vss/internal/vsserr"
)

// MaxSize is a shadow storage limit as vssadmin takes it: a size, a
// percentage of the storage volume, or unbounded.
type MaxSize struct {
	Unbounded bool
	Percent   float64 // 0 < Percent <= 100 when set
	Bytes     uint64
}

// String renders the limit as vssadmin prints it.
func (m MaxSize) String() string {
	switch {
	case m.Unbounded:
		return "UNBOUNDED"
	case m.Percent > 0:
		return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
	}
	return FormatBytes(m.Bytes)
}

// MinMaxSize is the smallest limit accepted (vssadmin resize: 1 MB).
const MinMaxSize = 1 << 20

var units = []struct {
	suffix string
	mult   float64
}{
	{"EB", 1 << 60}, {"PB", 1 << 50}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
	{"E", 1 << 60}, {"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10},
	{"B", 1},
}

// ParseMaxSize parses "UNBOUNDED", "20%", "300MB", "1.5GB", "1073741824"
// (bytes). Units are binary (1 KB = 1024 bytes), as vssadmin's are, and
// case-insensitive.
func ParseMaxSize(s string) (MaxSize, error) {
	orig := s
	s = strings.ToUpper(strings.TrimSpace(s))
	bad := func(why string) (MaxSize, error) {
		return MaxSize{}, vsserr.New(vsserr.E_INVALIDARG, "invalid maximum size %q: %s (give bytes with an optional KB, MB, GB, TB, PB or EB suffix, a percentage such as 20%%, or UNBOUNDED)", orig, why)
	}
	if s == "" {
		return bad("empty")
	}
	if s == "UNBOUNDED" {
		return MaxSize{Unbounded: true}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return bad("not a number")
		}
		if v <= 0 || v > 100 {
			return bad("a percentage must be above 0 and at most 100")
		}
		return MaxSize{Percent: v}, nil
	}
	mult := 1.0
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || strings.ContainsAny(s, "xXpP_") {
		return bad("not a number")
	}
	if v < 0 {
		return bad("negative")
	}
	b := v * mult
	if b > math.MaxUint64/2 {
		return bad("too large")
	}
	if b < MinMaxSize {
		return bad("the minimum is 1 MB")
	}
	return MaxSize{Bytes: uint64(b)}, nil
}

// FormatBytes renders a size the way vssadmin does ("1.335 GB").
func FormatBytes(n uint64) string {
	switch {
	case n >= 1<<60:
		return fmt.Sprintf("%.3f EB", float64(n)/(1<<60))
	case n >= 1<<50:
		return fmt.Sprintf("%.3f PB", float64(n)/(1<<50))
	case n >= 1<<40:
		return fmt.Sprintf("%.3f TB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.3f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.3f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.3f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
