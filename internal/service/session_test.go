package service_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
)

// TestEndSessionRacesDelete ends a requester session while another delete
// (an eviction, an administrator's delete) takes one of its auto-release
// shadows: the session's end must still release all the others. (Found
// while writing the load test, internal/reliability/load: the end of a
// session listed its shadows before it took the service's lock, so one
// deleted in between failed the whole release with VSS_E_OBJECT_NOT_FOUND
// and left the others in the catalog, owned by a session that is gone.)
func TestEndSessionRacesDelete(t *testing.T) {
	fs := testutil.NewFS(t, "btrfs", 0)
	var armed atomic.Bool
	entered, block := make(chan struct{}), make(chan struct{})
	ts := open(t, func(o *service.Options) {
		o.Fault = func(ctx context.Context, point string) error {
			if point == service.PointDelete && armed.CompareAndSwap(true, false) {
				close(entered)
				<-block
			}
			return nil
		}
	})
	const session = "requester-a"
	ctxA := service.WithCaller(context.Background(), service.Caller{Session: session})
	ts.BeginSession(session)
	var mine []uuid.UUID
	for range 2 {
		res, err := ts.CreateShadowSet(ctxA, service.CreateRequest{Volumes: []string{fs.Dir}, Context: vss.CtxBackup})
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, res.Shadows[0].ID)
	}
	other := ts.create(fs.Dir).Shadows[0].ID

	// A delete of another shadow holds the service's lock, stopped at its
	// fault point; a delete of one of the session's shadows waits for the
	// lock, then the session ends and waits too.
	armed.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := ts.DeleteShadows(context.Background(), []uuid.UUID{other}); err != nil {
			t.Errorf("delete %s: %v", other, err)
		}
	})
	<-entered
	wg.Go(func() {
		_, _ = ts.DeleteShadows(context.Background(), mine[:1]) // first in line, or too late: either is fine
	})
	time.Sleep(100 * time.Millisecond)
	var endErr error
	wg.Go(func() { endErr = ts.EndSession(ctxA, session) })
	time.Sleep(100 * time.Millisecond)
	close(block)
	wg.Wait()

	if endErr != nil {
		t.Errorf("EndSession: %v", endErr)
	}
	if left := ts.shadows(); len(left) != 0 {
		t.Errorf("%d shadows are left after the session ended, want none: %v", len(left), ids(left))
	}
	ts.requireConsistent(fs.Dir)
}
