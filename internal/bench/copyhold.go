package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
)

// pendingChange is the change the fault hook makes at the end of the
// pre-copy of the next set.
type pendingChange struct {
	change  change
	dir     string
	nfiles  int
	seed    uint64
	touched int
	err     error
}

// changer is a service fault hook that changes the source after the
// pre-copy ("end-prepare"), just before the writers freeze and the hold.
// It also notes when the set passes each fault point, which splits the hold
// into its steps.
type changer struct {
	mu       sync.Mutex
	fileSize int64
	next     *pendingChange
	marks    map[string]time.Time
}

func (c *changer) arm(p *pendingChange) {
	c.mu.Lock()
	c.next = p
	c.marks = map[string]time.Time{}
	c.mu.Unlock()
}

// between returns the time from fault point a to fault point b of the last
// set (0 when it did not pass both).
func (c *changer) between(a, b string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	ta, oka := c.marks[a]
	tb, okb := c.marks[b]
	if !oka || !okb {
		return 0
	}
	return tb.Sub(ta)
}

func (c *changer) fault(ctx context.Context, point string) error {
	c.mu.Lock()
	if c.marks != nil {
		c.marks[point] = time.Now()
	}
	c.mu.Unlock()
	if point != coordinator.PointEndPrepare {
		return nil
	}
	c.mu.Lock()
	p := c.next
	c.next = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	p.touched, p.err = p.change.apply(ctx, p.dir, p.nfiles, c.fileSize, p.seed)
	return p.err
}

// benchCopy measures the hold window of the copy provider as a function of
// the bytes changed since its pre-copy: ext4 sources, their storage on a
// separate ext4 volume (so the source is frozen during the hold), the same
// changes on a volume about twice as large.
func (r *runner) benchCopy(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "copy-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	largest := slices.Max(r.p.copySizes)
	store, err := fx.NewFS(ctx, "ext4", "store", largest+largest/4+(1<<30))
	if err != nil {
		return nil, err
	}
	type vol struct {
		size   int64
		fs     *FS
		nfiles int
	}
	var vols []*vol
	for i, size := range r.p.copySizes {
		fs, err := fx.NewFS(ctx, "ext4", fmt.Sprintf("src%d", i), size+size/4+(512<<20))
		if err != nil {
			return nil, err
		}
		t := time.Now()
		n, err := fillData(ctx, filepath.Join(fs.Dir, "data"), size, r.p.copyFile, uint64(200+i))
		if err != nil {
			return nil, err
		}
		r.log.Info("copy: source filled", "fs", fs.Dir, "data", FormatBytes(size), "files", n, "took", time.Since(t).Round(time.Millisecond))
		vols = append(vols, &vol{size: size, fs: fs, nfiles: n})
	}
	type kase struct {
		change change
		name   string
	}
	var cases []kase
	for _, n := range r.p.copyChanges {
		cases = append(cases, kase{change{bytes: n}, FormatBytes(n) + " changed"})
	}
	scattered := change{bytes: 1 << 20, piece: 4 << 10}
	cases = append(cases, kase{scattered, "1 MiB changed as 256 x 4 KiB spread over all files"})
	type result struct {
		hold *Measure
		// The steps of the hold, from the fault points: flush → hold is
		// the freeze (journal, guard, FIFREEZE), hold → commit the copy of
		// the changes, commit → release the thaw.
		freeze, commitT, thaw []time.Duration
		commit                []int64
		touched               int
		frozen                map[string]bool // "" = frozen, else why not
	}
	results := make([][]*result, len(cases))
	for i := range cases {
		for range vols {
			results[i] = append(results[i], &result{hold: &Measure{}, frozen: map[string]bool{}})
		}
	}
	ch := &changer{fileSize: r.p.copyFile}
	state := filepath.Join(fx.Dir(), "state")
	s, err := r.openService(ctx, state, ch.fault)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for _, v := range vols {
		if err := s.AddShadowStorage(ctx, v.fs.Dir, store.Dir, config.MaxSize{Unbounded: true}); err != nil {
			return nil, fmt.Errorf("add shadow storage for %s on %s: %w", v.fs.Dir, store.Dir, err)
		}
	}
	var prepare []time.Duration
	create := func(v *vol, c change, seed uint64) (*service.CreateResult, *pendingChange, error) {
		p := &pendingChange{change: c, dir: filepath.Join(v.fs.Dir, "data"), nfiles: v.nfiles, seed: seed}
		ch.arm(p)
		res, err := s.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{v.fs.Dir}, Provider: "copy", Context: vss.CtxClientAccessible})
		if err != nil {
			return nil, nil, fmt.Errorf("creating a copy of %s: %w", v.fs.Dir, err)
		}
		ids := make([]uuid.UUID, len(res.Shadows))
		for i, sh := range res.Shadows {
			ids[i] = sh.ID
		}
		if _, err := s.DeleteShadows(ctx, ids); err != nil {
			return nil, nil, err
		}
		return res, p, syncFS(store.Dir)
	}
	// A warm-up copy of each volume, not recorded.
	for _, v := range vols {
		if _, _, err := create(v, change{}, 1); err != nil {
			return nil, err
		}
	}
	for round := 1; round <= r.p.copyReps; round++ {
		r.log.Info("copy: round", "round", round, "of", r.p.copyReps)
		for _, ci := range rotate(len(cases), round) {
			for vi, v := range vols {
				res, p, err := create(v, cases[ci].change, uint64(round*1000+ci*10+vi))
				if err != nil {
					return nil, err
				}
				out := results[ci][vi]
				out.hold.Add(res.Timings.Hold)
				out.freeze = append(out.freeze, ch.between(coordinator.PointFlush, coordinator.PointHold))
				out.commitT = append(out.commitT, ch.between(coordinator.PointHold, coordinator.PointCommit))
				out.thaw = append(out.thaw, ch.between(coordinator.PointCommit, coordinator.PointRelease))
				if len(res.Stats) > 0 {
					out.commit = append(out.commit, res.Stats[0].CommitBytes)
				}
				out.touched = p.touched
				why, notFrozen := res.NotFrozen[v.fs.Dir]
				if len(res.Stats) > 0 && !res.Stats[0].Frozen && !notFrozen {
					why, notFrozen = "the provider did not report a freeze", true
				}
				out.frozen[why] = !notFrozen
				prepare = append(prepare, res.Timings.Prepare)
			}
		}
	}
	small := vols[0]
	for ci, k := range cases {
		for vi, v := range vols {
			out := results[ci][vi]
			var frozen []string
			for why, ok := range out.frozen {
				if !ok {
					frozen = append(frozen, "NOT FROZEN: "+why)
				}
			}
			if len(frozen) == 0 {
				frozen = []string{"source frozen"}
			}
			slices.Sort(frozen)
			note := fmt.Sprintf("commit wrote %s, %s touched; hold = freeze %s + copy %s + thaw %s; %s",
				FormatBytes(medianInt(out.commit)), plural(out.touched, "file"),
				FormatDuration(Median(out.freeze)), FormatDuration(Median(out.commitT)), FormatDuration(Median(out.thaw)), strings.Join(frozen, ", "))
			row := &Row{Bench: BenchCopy, What: fmt.Sprintf("copy provider hold, ext4 %s (%d files), %s", FormatBytes(v.size), v.nfiles, k.name),
				Ours: out.hold, Note: note}
			row.Ours.Label = row.What
			if vi > 0 {
				row.What += ", vs " + FormatBytes(small.size)
				row.Theirs = results[ci][0].hold
				g := NoGrowth(1.5, 2*time.Millisecond)
				row.Goal = &g
			}
			rows = append(rows, row)
		}
	}
	if len(rows) > 0 {
		rows[0].Note += fmt.Sprintf("; n=%d per row; pre-copy %s (median)", r.p.copyReps, FormatDuration(Median(prepare)))
	}
	return rows, nil
}

// medianInt returns the median of byte counts (the lower middle for an
// even count).
func medianInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
