package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
)

// benchList fills a catalog with real shadows (btrfs snapshots of many
// subvolumes, made through the service in this process), then times
// `vssadmin list shadows --format json` end to end, and a create with that
// catalog, each interleaved with the btrfs command that does the nearest
// thing.
func (r *runner) benchList(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "list-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	fs, err := fx.NewFS(ctx, "btrfs", "vols", 8<<30)
	if err != nil {
		return nil, err
	}
	var vols []string
	for i := 0; i < r.p.listVolumes; i++ {
		v := filepath.Join(fs.Dir, fmt.Sprintf("vol%02d", i))
		if err := btrfsutil.CreateSubvolume(v); err != nil {
			return nil, fmt.Errorf("creating subvolume %s: %w", v, err)
		}
		if _, err := fillTree(ctx, v, 20, 2, uint64(300+i)); err != nil {
			return nil, err
		}
		vols = append(vols, v)
	}
	want := r.p.listVolumes * r.p.listPerVol
	state := filepath.Join(fx.Dir(), "state")

	// Populate: sets of all the volumes (up to 64 per set), so that each
	// catalog commit records one shadow per volume.
	s, err := r.openService(ctx, state, nil)
	if err != nil {
		return nil, err
	}
	populate := &Measure{Label: fmt.Sprintf("service.CreateShadowSet x %d (sets of %d btrfs subvolumes)", r.p.listPerVol, len(vols))}
	var perSet []time.Duration
	t0 := time.Now()
	for k := 0; k < r.p.listPerVol; k++ {
		t := time.Now()
		if _, err := s.CreateShadowSet(ctx, service.CreateRequest{Volumes: vols, Provider: "btrfs", Context: vss.CtxClientAccessible}); err != nil {
			s.Close()
			return nil, fmt.Errorf("populating (set %d): %w", k+1, err)
		}
		perSet = append(perSet, time.Since(t))
		if (k+1)%max(1, r.p.listPerVol/10) == 0 {
			r.log.Info("list: populating", "shadows", (k+1)*len(vols), "of", want, "last set", perSet[k].Round(time.Millisecond))
		}
	}
	populate.Add(time.Since(t0))
	if err := s.Close(); err != nil {
		return nil, err
	}
	edge := min(10, len(perSet))
	rows = append(rows, &Row{Bench: BenchList, What: fmt.Sprintf("populate: %d shadows (%d sets x %d btrfs subvolumes, in-process)", want, r.p.listPerVol, len(vols)),
		Ours: populate,
		Note: fmt.Sprintf("per set of %d: first %d %s, last %d %s (median)", len(vols), edge, FormatDuration(Median(perSet[:edge])), edge, FormatDuration(Median(perSet[len(perSet)-edge:])))})

	// Where the time of a listing goes, in this process.
	var opens, lists, encodes []time.Duration
	var size int
	for i := 0; i < 3; i++ {
		t := time.Now()
		s, err := r.openService(ctx, state, nil)
		if err != nil {
			return rows, err
		}
		opens = append(opens, time.Since(t))
		t = time.Now()
		shadows, err := s.ListShadows(ctx, service.Selection{})
		lists = append(lists, time.Since(t))
		s.Close()
		if err != nil {
			return rows, err
		}
		if len(shadows) != want {
			return rows, fmt.Errorf("the catalog holds %d shadows, not %d", len(shadows), want)
		}
		t = time.Now()
		b, err := json.MarshalIndent(shadows, "", "  ")
		if err != nil {
			return rows, err
		}
		encodes = append(encodes, time.Since(t))
		size = len(b)
	}

	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return rows, err
	}
	defer devnull.Close()
	listCmd := r.vssadmin(state, "--format", "json", "list", "shadows")
	listCmd.stdout = devnull
	btrfsList := cmd("btrfs", "subvolume", "list", "-s", fs.Dir)
	btrfsList.stdout = devnull
	list := &Measure{Label: listCmd.String() + " >/dev/null"}
	blist := &Measure{Label: btrfsList.String() + " >/dev/null"}
	rawDir := filepath.Join(fs.Dir, "raw")
	if err := os.Mkdir(rawDir, 0o755); err != nil {
		return rows, err
	}
	create := &Measure{Label: "vssadmin create shadow /for=VOL (VOL rotates over the subvolumes)"}
	raw := &Measure{Label: "btrfs subvolume snapshot -r VOL " + rawDir + "/sN"}
	var totals []time.Duration
	variants := []func(round int, record bool) error{
		func(round int, record bool) error {
			d, _, err := listCmd.run(ctx)
			if err == nil && record {
				list.Add(d)
			}
			return err
		},
		func(round int, record bool) error {
			d, _, err := btrfsList.run(ctx)
			if err == nil && record {
				blist.Add(d)
			}
			return err
		},
		func(round int, record bool) error {
			d, out, err := r.vssadmin(state, "--format", "json", "create", "shadow", "/for="+vols[round%len(vols)]).run(ctx)
			if err != nil {
				return err
			}
			c, err := parseCreate(out)
			if err != nil {
				return err
			}
			if record {
				create.Add(d)
				totals = append(totals, fromMS(c.TotalMS))
			}
			return nil
		},
		func(round int, record bool) error {
			d, _, err := cmd("btrfs", "subvolume", "snapshot", "-r", vols[round%len(vols)], filepath.Join(rawDir, fmt.Sprintf("s%d", round))).run(ctx)
			if err == nil && record {
				raw.Add(d)
			}
			return err
		},
	}
	for round := 0; round <= r.p.reps; round++ {
		for _, v := range rotate(len(variants), round) {
			if err := variants[v](round, round > 0); err != nil {
				return rows, err
			}
		}
	}
	// The listing really holds every shadow (a start drops shadows whose
	// data is missing).
	_, out, err := r.vssadmin(state, "--format", "json", "list", "shadows").run(ctx)
	if err != nil {
		return rows, err
	}
	var listed []json.RawMessage
	if err := json.Unmarshal(out, &listed); err != nil {
		return rows, fmt.Errorf("reading vssadmin's list: %w", err)
	}
	if len(listed) < want {
		return rows, fmt.Errorf("vssadmin listed %d shadows, not %d", len(listed), want)
	}
	g := AtMost(100 * time.Millisecond)
	rows = append(rows, &Row{Bench: BenchList, What: fmt.Sprintf("list shadows --format json, %d shadows, process start to exit (theirs: btrfs subvolume list -s)", want),
		Ours: list, Theirs: blist, Goal: &g,
		Note: fmt.Sprintf("%d rounds (+1 warm-up); in-process: service.Open %s, ListShadows %s, JSON encoding %s (%s)",
			r.p.reps, FormatDuration(Median(opens)), FormatDuration(Median(lists)), FormatDuration(Median(encodes)), FormatBytes(int64(size)))})
	g2 := RatioAtMost(1.2)
	rows = append(rows, &Row{Bench: BenchList, What: fmt.Sprintf("create shadow, btrfs, with %d shadows in the catalog: vssadmin vs btrfs subvolume snapshot -r", want),
		Ours: create, Theirs: raw, Goal: &g2,
		Note: fmt.Sprintf("vssadmin's own total %s (compare the create row with an empty catalog)", FormatDuration(Median(totals)))})
	return rows, nil
}
