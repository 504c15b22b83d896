package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/linuxvss/vss/internal/btrfsutil"
)

// createOutput is what `vssadmin --format json create shadow` prints.
type createOutput struct {
	HoldMS  float64 `json:"hold_ms"`
	TotalMS float64 `json:"total_ms"`
	Shadows []struct {
		ID   string `json:"id"`
		Path string `json:"shadow_volume"`
	} `json:"shadows"`
}

func parseCreate(out []byte) (createOutput, error) {
	var c createOutput
	if err := json.Unmarshal(out, &c); err != nil {
		return c, fmt.Errorf("reading vssadmin's output: %w", err)
	}
	if len(c.Shadows) == 0 {
		return c, errors.New("vssadmin reported no shadow")
	}
	return c, nil
}

func fromMS(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// benchCreate times `vssadmin create shadow` end to end on a btrfs volume
// against `btrfs subvolume snapshot -r` and `snapper create` on the same
// volume, interleaved round after round; every round ends by deleting what
// it made, so that the snapshot count stays the same.
func (r *runner) benchCreate(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "create-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	fs, err := fx.NewFS(ctx, "btrfs", "vol", 2<<30)
	if err != nil {
		return nil, err
	}
	n, err := fillTree(ctx, filepath.Join(fs.Dir, "data"), 2000, 20, 1)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(fx.Dir(), "state")
	rawDir := filepath.Join(fs.Dir, "raw")
	if err := os.Mkdir(rawDir, 0o755); err != nil {
		return nil, err
	}
	sn, whyNot := r.setupSnapper(ctx, fx, fs.Dir)

	oursCmd := r.vssadmin(state, "--format", "json", "create", "shadow", "/for="+fs.Dir)
	ours := newOursCreate(oursCmd)
	raw := &Measure{Label: "btrfs subvolume snapshot -r " + fs.Dir + " " + rawDir + "/sN"}
	snap := &Measure{Label: "snapper -c " + snapperConfig + " create --print-number"}
	var snapNumbers []string
	type variant func(round int, record bool) error
	variants := []variant{
		func(round int, record bool) error {
			return ours.run(ctx, record)
		},
		func(round int, record bool) error {
			d, _, err := cmd("btrfs", "subvolume", "snapshot", "-r", fs.Dir, filepath.Join(rawDir, fmt.Sprintf("s%d", round))).run(ctx)
			if err != nil {
				return err
			}
			if record {
				raw.Add(d)
			}
			return nil
		},
	}
	if sn != nil {
		variants = append(variants, func(round int, record bool) error {
			if err := sn.ready(ctx); err != nil {
				return err
			}
			d, out, err := sn.cmd("-c", snapperConfig, "create", "--print-number").run(ctx)
			if err != nil {
				return err
			}
			snapNumbers = append(snapNumbers, strings.TrimSpace(string(out)))
			if record {
				snap.Add(d)
			}
			return nil
		})
	}
	r.log.Info("create: volume ready", "fs", fs.Dir, "data", FormatBytes(n), "rounds", r.p.reps)
	// Round 0 warms the caches up and is not recorded.
	for round := 0; round <= r.p.reps; round++ {
		for _, v := range rotate(len(variants), round) {
			if err := variants[v](round, round > 0); err != nil {
				return nil, err
			}
		}
		if err := r.deleteAll(ctx, state); err != nil {
			return nil, err
		}
		if err := btrfsutil.DeleteSubvolume(filepath.Join(rawDir, fmt.Sprintf("s%d", round))); err != nil {
			return nil, fmt.Errorf("deleting the raw snapshot: %w", err)
		}
		if len(snapNumbers) > 0 {
			if err := sn.ready(ctx); err != nil {
				return nil, err
			}
			if _, _, err := sn.cmd(append([]string{"-c", snapperConfig, "delete"}, snapNumbers...)...).run(ctx); err != nil {
				return nil, err
			}
			snapNumbers = nil
		}
		// Wait for btrfs to clean the deleted snapshots up, so that its
		// background work does not land in the next round.
		if err := settleBtrfs(ctx, fs.Dir); err != nil {
			return nil, err
		}
	}
	note := fmt.Sprintf("%d rounds (+1 warm-up), order rotated; vssadmin's own total %s, hold %s",
		r.p.reps, FormatDuration(Median(ours.totals)), FormatDuration(Median(ours.holds)))
	g := RatioAtMost(1.2)
	rows = append(rows, &Row{Bench: BenchCreate, What: "create shadow, btrfs, process start to exit: vssadmin vs btrfs subvolume snapshot -r",
		Ours: ours.m, Theirs: raw, Goal: &g, Note: note})
	row := &Row{Bench: BenchCreate, What: "create shadow, btrfs, process start to exit: vssadmin vs snapper create"}
	if sn == nil {
		row.NotMeasured = whyNot
	} else {
		f := Faster()
		row.Ours, row.Theirs, row.Goal, row.Note = ours.m, snap, &f, "snapper "+sn.mode
	}
	return append(rows, row), nil
}

// oursCreate times `vssadmin --format json create shadow …` and keeps, with
// each duration, the hold and total the command reports.
type oursCreate struct {
	cmd           command
	m             *Measure
	holds, totals []time.Duration
}

func newOursCreate(c command) *oursCreate {
	return &oursCreate{cmd: c, m: &Measure{Label: c.String()}}
}

// run runs the command once; record keeps its figures (not a warm-up).
func (o *oursCreate) run(ctx context.Context, record bool) error {
	d, out, err := o.cmd.run(ctx)
	if err != nil {
		return err
	}
	c, err := parseCreate(out)
	if err != nil {
		return err
	}
	if record {
		o.m.Add(d)
		o.holds = append(o.holds, fromMS(c.HoldMS))
		o.totals = append(o.totals, fromMS(c.TotalMS))
	}
	return nil
}
