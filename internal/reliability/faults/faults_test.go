package faults

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/catalog"
)

type catalogShadow = catalog.Shadow

// cell is one square of the table.
type cell struct {
	runs, violations int
	na               string
	providers        map[string]int
}

// table is phase × fault → runs and violations.
type table struct {
	rows  []phase
	cells map[string]map[string]*cell
}

func newTable(rows []phase) *table {
	t := &table{rows: rows, cells: map[string]map[string]*cell{}}
	for _, r := range rows {
		t.cells[r.name] = map[string]*cell{}
		for _, f := range faultNames {
			t.cells[r.name][f] = &cell{providers: map[string]int{}}
		}
	}
	return t
}

func (t *table) add(r *run) {
	c := t.cells[r.ph.name][r.fault]
	c.runs++
	c.providers[r.prov]++
	if len(r.viol) > 0 {
		c.violations++
	}
}

// String renders the table: "runs/violations" per cell, "n/a" where the
// fault makes no sense, then the reasons.
func (t *table) String() string {
	var b strings.Builder
	w := 24
	fmt.Fprintf(&b, "%-*s", w, "phase \\ fault")
	for _, f := range faultNames {
		fmt.Fprintf(&b, " | %-14s", f)
	}
	b.WriteString("\n" + strings.Repeat("-", w))
	for range faultNames {
		b.WriteString("-+-" + strings.Repeat("-", 14))
	}
	b.WriteString("\n")
	reasons := map[string][]string{}
	var order []string
	for _, r := range t.rows {
		fmt.Fprintf(&b, "%-*s", w, r.name)
		for _, f := range faultNames {
			c := t.cells[r.name][f]
			s := ""
			switch {
			case c.na != "":
				s = "n/a"
				if _, ok := reasons[c.na]; !ok {
					order = append(order, c.na)
				}
				reasons[c.na] = append(reasons[c.na], r.name+" × "+f)
			default:
				s = fmt.Sprintf("%d runs, %d ✗", c.runs, c.violations)
				if c.violations == 0 {
					s = fmt.Sprintf("%d runs, 0", c.runs)
				}
			}
			fmt.Fprintf(&b, " | %-14s", s)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n\"N runs, V\": runs of the cell and runs with at least one invariant violation (goal: 0).\n")
	for _, why := range order {
		fmt.Fprintf(&b, "n/a: %s (%d cells)\n", why, len(reasons[why]))
	}
	return b.String()
}

func (t *table) totals() (runs, violations int) {
	for _, row := range t.cells {
		for _, c := range row {
			runs += c.runs
			violations += c.violations
		}
	}
	return
}

// TestFaultMatrix runs every phase × fault cell through a real vssd and
// checks the invariants after each run (see the package comment). The
// short mode runs each cell once on one provider; VSS_TEST_MODE=long runs
// each cell three times on every provider.
func TestFaultMatrix(t *testing.T) {
	long := os.Getenv("VSS_TEST_MODE") == "long"
	reps := 1
	if long {
		reps = 3
	}
	start := time.Now()
	h := newHarness(t)
	t.Logf("environment ready in %v", time.Since(start).Round(time.Millisecond))
	rows := phases()
	tab := newTable(rows)
	// VSS_FAULT_ONLY=REGEXP runs only the cells "phase/fault" it matches
	// (to look at one cell).
	only := regexp.MustCompile(os.Getenv("VSS_FAULT_ONLY"))
	var longestFrozen, longestStall, longestOther time.Duration
	var frozenAt, stallAt, otherAt string
	var failed []string
	for ri, ph := range rows {
		for fi, f := range faultNames {
			if e := expect(ph, f, ""); e.na != "" {
				tab.cells[ph.name][f].na = e.na
				continue
			}
			if !only.MatchString(ph.name + "/" + f) {
				continue
			}
			provs := eligible(ph, f, long)
			if !long {
				provs = []string{provs[(ri+fi)%len(provs)]}
			}
			for _, p := range provs {
				for k := 0; k < reps; k++ {
					r := h.runCell(ph, f, p)
					tab.add(r)
					name := fmt.Sprintf("%s × %s on %s", ph.name, f, p)
					if r.frozen > longestFrozen {
						longestFrozen, frozenAt = r.frozen, name
					}
					if f != fWriterHang && r.frozen > longestOther {
						longestOther, otherAt = r.frozen, name
					}
					if r.stall > longestStall {
						longestStall, stallAt = r.stall, name
					}
					status := "ok"
					if len(r.viol) > 0 {
						status = fmt.Sprintf("%d VIOLATIONS", len(r.viol))
					}
					t.Logf("%-46s %-62s %6v  frozen %-6v stall %-6v %s  [%s]", name, r.res.String(), r.took.Round(time.Millisecond),
						r.frozen.Round(time.Millisecond), r.stall.Round(time.Millisecond), status, strings.Join(r.notes, "; "))
					if len(r.viol) > 0 {
						failed = append(failed, name)
						t.Logf("  violations:\n    - %s\n  vssd log (last lines):\n%s", strings.Join(r.viol, "\n    - "), indent(tail(h.d.log, 15)))
					}
				}
			}
		}
	}
	if only.String() == "" {
		if v := h.finalCheck(); len(v) > 0 {
			t.Errorf("after a last restart:\n%s", strings.Join(v, "\n"))
		}
	}
	runs, viol := tab.totals()
	report := fmt.Sprintf("Fault injection (%s mode): %d runs, %d with violations, in %v.\n\n%s\n"+
		"Longest time an application stayed frozen: %v (%s; a writer that hangs is thawed at its freeze deadline).\n"+
		"Longest time an application stayed frozen, hung writers aside: %v (%s).\n"+
		"Longest stall of the application's log: %v (%s).\n"+
		"Freeze limit: %v; an application may be thawed up to %v after its deadline.\n",
		map[bool]string{true: "long", false: "short"}[long], runs, viol, time.Since(start).Round(time.Second), tab,
		longestFrozen.Round(time.Millisecond), frozenAt, longestOther.Round(time.Millisecond), otherAt,
		longestStall.Round(time.Millisecond), stallAt, freezeTimeout, lateSlack)
	t.Log("\n" + report)
	if p := os.Getenv("VSS_FAULT_TABLE"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
	if viol > 0 {
		sort.Strings(failed)
		t.Errorf("%d runs broke an invariant:\n%s", viol, strings.Join(failed, "\n"))
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
