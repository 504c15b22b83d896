package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// benchReflink times `vssadmin create shadow /provider=reflink` end to end
// against `cp -a --reflink=always` of the same tree on XFS (reflink=1),
// interleaved; each copy is removed right after it was timed, so that every
// command finds the same volume.
func (r *runner) benchReflink(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "reflink-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	fs, err := fx.NewFS(ctx, "xfs", "xfs", 4<<30)
	if err != nil {
		return nil, err
	}
	tree := filepath.Join(fs.Dir, "tree")
	n, err := fillTree(ctx, tree, r.p.treeFiles, 100, 2)
	if err != nil {
		return nil, err
	}
	r.log.Info("reflink: tree ready", "files", r.p.treeFiles, "data", FormatBytes(n), "rounds", r.p.reps)
	state := filepath.Join(fx.Dir(), "state")
	dst := filepath.Join(fs.Dir, "copy")
	oursCmd := r.vssadmin(state, "--format", "json", "create", "shadow", "/for="+fs.Dir, "/provider=reflink")
	cpCmd := cmd("cp", "-a", "--reflink=always", tree, dst)
	ours := newOursCreate(oursCmd)
	cp := &Measure{Label: cpCmd.String()}
	cpSync := &Measure{Label: cpCmd.String() + " && syncfs"}
	variants := []func(record bool) error{
		func(record bool) error {
			if err := ours.run(ctx, record); err != nil {
				return err
			}
			// Remove it at once: the next command must find the volume as
			// this one did.
			if err := r.deleteAll(ctx, state); err != nil {
				return err
			}
			return syncFS(fs.Dir)
		},
		func(record bool) error {
			d, _, err := cpCmd.run(ctx)
			if err != nil {
				return err
			}
			t := time.Now()
			if err := syncFS(fs.Dir); err != nil {
				return err
			}
			if record {
				cp.Add(d)
				cpSync.Add(d + time.Since(t))
			}
			// Remove it at once, or the next shadow would clone it too.
			if err := os.RemoveAll(dst); err != nil {
				return err
			}
			return syncFS(fs.Dir)
		},
	}
	for round := 0; round <= r.p.reps; round++ {
		for _, v := range rotate(len(variants), round) {
			if err := variants[v](round > 0); err != nil {
				return nil, err
			}
		}
	}
	g := RatioAtMost(1.0)
	what := fmt.Sprintf("create shadow, reflink, XFS, %d files, process start to exit", r.p.treeFiles)
	rows = append(rows, &Row{Bench: BenchReflink, What: what + ": vssadmin vs cp -a --reflink=always",
		Ours: ours.m, Theirs: cp, Goal: &g,
		Note: fmt.Sprintf("%d rounds (+1 warm-up); vssadmin's own total %s, hold %s (every clone is made inside it); ours ends with a syncfs, cp does not",
			r.p.reps, FormatDuration(Median(ours.totals)), FormatDuration(Median(ours.holds)))})
	rows = append(rows, &Row{Bench: BenchReflink, What: what + ": vssadmin vs cp -a --reflink=always + syncfs",
		Ours: ours.m, Theirs: cpSync, Note: "information: cp made as durable as ours"})
	return rows, nil
}
