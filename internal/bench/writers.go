package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// benchWriter is an SDK writer whose events do nothing: what is measured is
// the framework (the gRPC round trips, the fan-out, the state keeping).
type benchWriter struct {
	writer.Base
	meta *vssmeta.WriterMetadata
}

func (w *benchWriter) Metadata() *vssmeta.WriterMetadata { return w.meta }

// benchWriters measures the freeze window (first Freeze sent to last Thaw
// answered) and the hold window of btrfs sets whose volume has 0, 1, 4 or
// 16 SDK writers, each a separate gRPC stream to the service's socket, as
// separate processes would have. The volumes are interleaved round after
// round.
func (r *runner) benchWriters(ctx context.Context) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "writers-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	fs, err := fx.NewFS(ctx, "btrfs", "writers", 1<<30)
	if err != nil {
		return nil, err
	}
	counts := []int{0, 1, 4, 16}
	type vol struct {
		n                   int
		path                string
		freeze, hold, total *Measure
	}
	var vols []*vol
	for _, n := range counts {
		p := filepath.Join(fs.Dir, fmt.Sprintf("w%d", n))
		if err := btrfsutil.CreateSubvolume(p); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(p, "data"), make([]byte, 1<<20), 0o644); err != nil {
			return nil, err
		}
		vols = append(vols, &vol{n: n, path: p,
			freeze: &Measure{Label: fmt.Sprintf("freeze window, %d writers", n)},
			hold:   &Measure{Label: fmt.Sprintf("hold window, %d writers", n)}, total: &Measure{}})
	}
	state := filepath.Join(fx.Dir(), "state")
	s, err := r.openService(ctx, state, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	socket := filepath.Join(fx.Dir(), "vssd.sock")
	l, err := apiserver.Listen(socket)
	if err != nil {
		return nil, err
	}
	srv := apiserver.New(s, apiserver.Options{Version: "bench", Socket: socket, Log: r.svcLog})
	go srv.Serve(l)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	registered := 0
	ready := make(chan struct{}, 64)
	for _, v := range vols {
		for i := 0; i < v.n; i++ {
			w := &benchWriter{meta: &vssmeta.WriterMetadata{
				WriterID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("bench-writer")), InstanceID: uuid.New(),
				Name: fmt.Sprintf("Bench Writer %d/%d", v.n, i), Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther,
				Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
				Components: []vssmeta.Component{{Type: vssmeta.ComponentFileGroup, Name: "data", Selectable: true,
					Files: []vssmeta.File{{Path: v.path, Filespec: "*", Recursive: true}}}},
			}}
			go writer.Run(wctx, w, writer.Options{Socket: socket, Log: r.svcLog, Registered: func() { ready <- struct{}{} }})
			registered++
		}
	}
	for i := 0; i < registered; i++ {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("only %d of %d writers registered", i, registered)
		}
	}
	for round := 0; round <= r.p.holdReps; round++ {
		for _, k := range rotate(len(vols), round) {
			v := vols[k]
			res, err := s.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{v.path}, Provider: "btrfs", Context: vss.CtxAppRollback})
			if err != nil {
				return nil, fmt.Errorf("creating a shadow of %s: %w", v.path, err)
			}
			if len(res.Writers) != v.n {
				return nil, fmt.Errorf("%d writers took part in the set of %s, want %d", len(res.Writers), v.path, v.n)
			}
			if round > 0 {
				if v.n > 0 {
					v.freeze.Add(res.Timings.Freeze)
				}
				v.hold.Add(res.Timings.Hold)
				v.total.Add(res.Timings.Total)
			}
			ids := make([]uuid.UUID, len(res.Shadows))
			for i, sh := range res.Shadows {
				ids[i] = sh.ID
			}
			if _, err := s.DeleteShadows(ctx, ids); err != nil {
				return nil, err
			}
		}
	}
	base := vols[0]
	for _, v := range vols[1:] {
		rows = append(rows, &Row{Bench: BenchWriters, What: fmt.Sprintf("freeze window, %d SDK writer(s) over gRPC", v.n),
			Ours: v.freeze, Note: fmt.Sprintf("n=%d; first Freeze sent to last Thaw answered; whole set %s", len(v.freeze.Samples), FormatDuration(v.total.Median()))})
	}
	for _, v := range vols[1:] {
		g := NoGrowth(1.5, 2*time.Millisecond)
		rows = append(rows, &Row{Bench: BenchWriters, What: fmt.Sprintf("hold window, btrfs, %d writer(s) vs none", v.n),
			Ours: v.hold, Theirs: base.hold, Goal: &g, Note: "the writers are frozen around the hold, not inside it"})
	}
	return rows, nil
}
