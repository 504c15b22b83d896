package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
)

// benchHold measures the hold window of the btrfs provider (from the
// freeze of the filesystems to their release, as the coordinator times it)
// through the service in this process, on btrfs volumes holding a small
// and a large amount of really written data, interleaved.
func (r *runner) benchHold(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "hold-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	type vol struct {
		size               int64
		fs                 *FS
		hold, flush, total *Measure
	}
	var vols []*vol
	for i, size := range r.p.holdSizes {
		fs, err := fx.NewFS(ctx, "btrfs", fmt.Sprintf("hold%d", i), size+size/4+(1<<30))
		if err != nil {
			return nil, err
		}
		t := time.Now()
		if _, err := fillData(ctx, filepath.Join(fs.Dir, "data"), size, 64<<20, uint64(100+i)); err != nil {
			return nil, err
		}
		el := time.Since(t)
		r.log.Info("hold: volume filled", "fs", fs.Dir, "data", FormatBytes(size), "took", el.Round(time.Millisecond),
			"MB/s", int(float64(size)/el.Seconds()/1e6))
		vols = append(vols, &vol{size: size, fs: fs, hold: &Measure{Label: "hold, " + FormatBytes(size)},
			flush: &Measure{}, total: &Measure{}})
	}
	state := filepath.Join(fx.Dir(), "state")
	s, err := r.openService(ctx, state, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for round := 0; round <= r.p.holdReps; round++ {
		for _, k := range rotate(len(vols), round) {
			v := vols[k]
			res, err := s.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{v.fs.Dir}, Provider: "btrfs", Context: vss.CtxClientAccessible})
			if err != nil {
				return nil, fmt.Errorf("creating a shadow of %s: %w", v.fs.Dir, err)
			}
			if round > 0 {
				v.hold.Add(res.Timings.Hold)
				v.flush.Add(res.Timings.Flush)
				v.total.Add(res.Timings.Total)
			}
			ids := make([]uuid.UUID, len(res.Shadows))
			for i, sh := range res.Shadows {
				ids[i] = sh.ID
			}
			if _, err := s.DeleteShadows(ctx, ids); err != nil {
				return nil, err
			}
			if err := settleBtrfs(ctx, v.fs.Dir); err != nil {
				return nil, err
			}
		}
	}
	for _, v := range vols {
		g := AtMost(20 * time.Millisecond)
		rows = append(rows, &Row{Bench: BenchHold, What: fmt.Sprintf("hold window, btrfs, %s written (in-process)", FormatBytes(v.size)),
			Ours: v.hold, Goal: &g,
			Note: fmt.Sprintf("n=%d; flush before it %s, whole set %s", len(v.hold.Samples), FormatDuration(v.flush.Median()), FormatDuration(v.total.Median()))})
	}
	small, big := vols[0], vols[len(vols)-1]
	g := NoGrowth(1.5, time.Millisecond)
	rows = append(rows, &Row{Bench: BenchHold, What: fmt.Sprintf("hold window growth: %s vs %s written", FormatBytes(big.size), FormatBytes(small.size)),
		Ours: big.hold, Theirs: small.hold, Goal: &g, Note: "same run, volumes interleaved"})
	return rows, nil
}
