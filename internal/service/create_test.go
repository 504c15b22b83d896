package service_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// TestCreateChoosesProvider checks the automatic provider choice on every
// kind of volume, and that each shadow holds the content of its commit.
func TestCreateChoosesProvider(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	xfs := testutil.NewFS(t, "xfs", 0)
	ext4 := testutil.NewFS(t, "ext4", 0)
	testutil.Subvolume(t, filepath.Join(btrfs.Dir, "sub"))
	for _, d := range []string{filepath.Join(btrfs.Dir, "plain"), filepath.Join(ext4.Dir, "dir")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ts := open(t, nil)
	for _, c := range []struct {
		path, provider string
		attr           vss.Attr
	}{
		{btrfs.Dir, "btrfs", vss.AttrDifferential},
		{filepath.Join(btrfs.Dir, "sub"), "btrfs", vss.AttrDifferential},
		{filepath.Join(btrfs.Dir, "plain"), "reflink", vss.AttrDifferential},
		{xfs.Dir, "reflink", vss.AttrDifferential},
		{ext4.Dir, "copy", vss.AttrPlex},
		{filepath.Join(ext4.Dir, "dir"), "copy", vss.AttrPlex},
	} {
		t.Run(c.provider+":"+filepath.Base(c.path), func(t *testing.T) {
			testutil.WriteFile(t, c.path, "file", []byte("before"))
			res := ts.create(c.path)
			testutil.WriteFile(t, c.path, "file", []byte("after"))
			sh := res.Shadows[0]
			if sh.Provider != c.provider {
				t.Errorf("provider %s, want %s", sh.Provider, c.provider)
			}
			if want := vss.CtxClientAccessible.Attr() | c.attr; sh.Attributes != want {
				t.Errorf("attributes %q, want %q", sh.Attributes, want)
			}
			if sh.Context != vss.CtxClientAccessible || sh.SetCount != 1 || sh.VolumePath != c.path {
				t.Errorf("record %+v", sh)
			}
			b, err := os.ReadFile(filepath.Join(sh.ShadowPath, "file"))
			if err != nil || string(b) != "before" {
				t.Errorf("shadow holds %q, %v; want \"before\"", b, err)
			}
			if res.Timings.Hold <= 0 || res.Timings.Total < res.Timings.Hold {
				t.Errorf("timings %+v", res.Timings)
			}
		})
	}
	ts.requireConsistent(btrfs.Dir, filepath.Join(btrfs.Dir, "sub"), filepath.Join(btrfs.Dir, "plain"), xfs.Dir, ext4.Dir, filepath.Join(ext4.Dir, "dir"))
}

func TestCreateForcedProvider(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	ext4 := testutil.NewFS(t, "ext4", 0)
	ts := open(t, nil)
	ctx := context.Background()
	res, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir}, Provider: "copy", Context: vss.CtxClientAccessible})
	if err != nil {
		t.Fatal(err)
	}
	if res.Shadows[0].Provider != "copy" {
		t.Fatalf("forced copy gave %s", res.Shadows[0].Provider)
	}
	// By GUID, with braces, as vssadmin prints it.
	res, err = ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir}, Provider: "{5c6a0e2b-33a1-4d6e-9c0b-7f1e6a4d2c03}", Context: vss.CtxClientAccessible})
	if err != nil || res.Shadows[0].Provider != "reflink" {
		t.Fatalf("forced reflink by ID: %v", err)
	}
	_, err = ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{ext4.Dir}, Provider: "btrfs", Context: vss.CtxClientAccessible})
	requireCode(t, err, vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER)
	_, err = ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{ext4.Dir}, Provider: "zfs", Context: vss.CtxClientAccessible})
	requireCode(t, err, vsserr.VSS_E_PROVIDER_NOT_REGISTERED)
	if n := len(ts.shadows()); n != 2 {
		t.Fatalf("%d shadows, want 2", n)
	}
	ts.requireConsistent(btrfs.Dir, ext4.Dir)
}

// TestMultiVolumeSet makes one set of three volumes on three filesystems
// with three providers, the copy one with its storage on a fourth
// filesystem (so it is frozen for the commit).
func TestMultiVolumeSet(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	xfs := testutil.NewFS(t, "xfs", 0)
	ext4 := testutil.NewFS(t, "ext4", 0)
	other := testutil.NewFS(t, "ext4", 0)
	ts := open(t, nil)
	ctx := context.Background()
	if err := ts.AddShadowStorage(ctx, ext4.Dir, other.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{btrfs.Dir, xfs.Dir, ext4.Dir} {
		testutil.WriteFile(t, d, "data", []byte(d))
	}
	res := ts.create(btrfs.Dir, xfs.Dir, ext4.Dir)
	if len(res.Shadows) != 3 || len(res.Set.Shadows) != 3 {
		t.Fatalf("set %+v", res.Set)
	}
	byVol := map[string]string{}
	for _, s := range res.Shadows {
		if s.SetID != res.Set.ID || s.SetCount != 3 {
			t.Errorf("shadow %s not in the set: %+v", s.ID, s)
		}
		byVol[s.VolumePath] = s.Provider
		if (s.Provider == "reflink") == s.CrashConsistent {
			t.Errorf("%s shadow: crash-consistent=%v", s.Provider, s.CrashConsistent)
		}
	}
	if byVol[btrfs.Dir] != "btrfs" || byVol[xfs.Dir] != "reflink" || byVol[ext4.Dir] != "copy" {
		t.Errorf("providers %v", byVol)
	}
	if len(res.NotFrozen) != 0 {
		t.Errorf("the copy provider's volume was not frozen: %v", res.NotFrozen)
	}
	set, err := ts.ListShadows(ctx, service.Selection{SetID: res.Set.ID})
	if err != nil || len(set) != 3 {
		t.Fatalf("list by set: %d, %v", len(set), err)
	}
	ts.requireConsistent(btrfs.Dir, xfs.Dir, ext4.Dir, other.Dir)
}

func TestCreateBadRequests(t *testing.T) {
	ext4 := testutil.NewFS(t, "ext4", 0)
	ts := open(t, nil)
	ctx := context.Background()
	testutil.WriteFile(t, ext4.Dir, "a/b/file", []byte("x"))
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("/nonexistent/%d", i)
	}
	for _, c := range []struct {
		name string
		req  service.CreateRequest
		code vsserr.Code
	}{
		{"no volume", service.CreateRequest{}, vsserr.E_INVALIDARG},
		{"65 volumes", service.CreateRequest{Volumes: many}, vsserr.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED},
		{"missing", service.CreateRequest{Volumes: []string{"/nonexistent/volume"}}, vsserr.VSS_E_OBJECT_NOT_FOUND},
		{"file", service.CreateRequest{Volumes: []string{filepath.Join(ext4.Dir, "a/b/file")}}, vsserr.VSS_E_VOLUME_NOT_SUPPORTED},
		{"pseudo", service.CreateRequest{Volumes: []string{"/proc"}}, vsserr.VSS_E_VOLUME_NOT_SUPPORTED},
		{"twice", service.CreateRequest{Volumes: []string{ext4.Dir, ext4.Dir + "/"}}, vsserr.VSS_E_OBJECT_ALREADY_EXISTS},
		{"nested", service.CreateRequest{Volumes: []string{ext4.Dir, filepath.Join(ext4.Dir, "a")}}, vsserr.VSS_E_NESTED_VOLUME_LIMIT},
		{"bad context", service.CreateRequest{Volumes: []string{ext4.Dir}, Context: vss.CtxAll}, vsserr.VSS_E_UNSUPPORTED_CONTEXT},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.req.Context == 0 && c.code != vsserr.VSS_E_UNSUPPORTED_CONTEXT {
				c.req.Context = vss.CtxClientAccessible
			}
			_, err := ts.CreateShadowSet(ctx, c.req)
			requireCode(t, err, c.code)
		})
	}
	if n := len(ts.shadows()); n != 0 {
		t.Fatalf("bad requests made %d shadows", n)
	}
	if e := storageEntries(t, ext4.Dir); len(e) != 0 {
		t.Fatalf("bad requests left %v", e)
	}
	ts.requireConsistent(ext4.Dir)
}

// TestSetInProgress: while one set is being made, a second request fails
// at once with VSS_E_SNAPSHOT_SET_IN_PROGRESS, and a third that asked to
// retry waits and then succeeds.
func TestSetInProgress(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	reached := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	ts := open(t, func(o *service.Options) {
		o.Fault = func(ctx context.Context, point string) error {
			if point == coordinator.PointHold {
				once.Do(func() {
					close(reached)
					<-release
				})
			}
			return nil
		}
	})
	ctx := context.Background()
	errA := make(chan error, 1)
	go func() {
		_, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir}, Context: vss.CtxClientAccessible})
		errA <- err
	}()
	<-reached
	_, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir}, Context: vss.CtxClientAccessible})
	requireCode(t, err, vsserr.VSS_E_SNAPSHOT_SET_IN_PROGRESS)
	errC := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir}, Context: vss.CtxClientAccessible, AutoRetry: time.Minute})
		errC <- err
	}()
	select {
	case err := <-errC:
		t.Fatalf("the retrying request did not wait: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	if err := <-errC; err != nil {
		t.Fatalf("retrying request: %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("retried request returned after %v", el)
	}
	if n := len(ts.shadows()); n != 2 {
		t.Fatalf("%d shadows, want 2", n)
	}
	ts.requireConsistent(btrfs.Dir)
}

// TestAbortAtEveryPoint fails a set at every phase and checks that nothing
// is left: no shadow, no journal entry, no storage entry, nothing frozen.
// The set mixes btrfs, reflink and a copy under a freeze.
func TestAbortAtEveryPoint(t *testing.T) {
	btrfs := testutil.NewFS(t, "btrfs", 0)
	xfs := testutil.NewFS(t, "xfs", 0)
	ext4 := testutil.NewFS(t, "ext4", 0)
	other := testutil.NewFS(t, "ext4", 0)
	var failAt string
	ts := open(t, func(o *service.Options) {
		o.Fault = func(ctx context.Context, point string) error {
			if point == failAt {
				return vsserr.New(vsserr.VSS_E_PROVIDER_VETO, "injected at %s", point)
			}
			return nil
		}
	})
	ctx := context.Background()
	if err := ts.AddShadowStorage(ctx, ext4.Dir, other.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{btrfs.Dir, xfs.Dir, ext4.Dir} {
		testutil.Populate(t, d, false)
	}
	for _, p := range coordinator.Points {
		if p == coordinator.PointCommitted {
			continue
		}
		t.Run(p, func(t *testing.T) {
			failAt = p
			_, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir, xfs.Dir, ext4.Dir}, Context: vss.CtxClientAccessible})
			requireCode(t, err, vsserr.VSS_E_PROVIDER_VETO)
			for _, d := range []string{btrfs.Dir, xfs.Dir, ext4.Dir} {
				if !writable(d, 5*time.Second) {
					t.Fatalf("%s is frozen after an abort at %s", d, p)
				}
			}
			if n := len(ts.shadows()); n != 0 {
				t.Fatalf("an abort at %s left %d shadows", p, n)
			}
			for _, d := range []string{btrfs.Dir, xfs.Dir, other.Dir} {
				if e := storageEntries(t, d); len(e) != 0 {
					t.Fatalf("an abort at %s left %v in %s", p, e, d)
				}
			}
			ts.requireConsistent(btrfs.Dir, xfs.Dir, ext4.Dir, other.Dir)
		})
	}
	// A fault after the catalog commit does not undo the set.
	failAt = coordinator.PointCommitted
	if _, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{btrfs.Dir, xfs.Dir, ext4.Dir}, Context: vss.CtxClientAccessible}); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.shadows()); n != 3 {
		t.Fatalf("%d shadows after the committed set", n)
	}
	ts.requireConsistent(btrfs.Dir, xfs.Dir, ext4.Dir, other.Dir)
}

// TestCommitLimit: a commit that outlasts the commit limit fails the set
// with VSS_E_HOLD_WRITES_TIMEOUT, the frozen filesystem is released at the
// limit (not when the slow commit ends), and nothing is left.
func TestCommitLimit(t *testing.T) {
	ext4 := testutil.NewFS(t, "ext4", 0)
	other := testutil.NewFS(t, "ext4", 0)
	held := make(chan time.Time, 1)
	ts := open(t, func(o *service.Options) {
		o.Config.CommitTimeout.Duration = 500 * time.Millisecond
		o.Fault = func(ctx context.Context, point string) error {
			if point == coordinator.PointHold {
				held <- time.Now()
				time.Sleep(3 * time.Second) // ignores ctx, like a stuck provider
			}
			return nil
		}
	})
	ctx := context.Background()
	if err := ts.AddShadowStorage(ctx, ext4.Dir, other.Dir, mustMax(t, "UNBOUNDED")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, ext4.Dir, "f", []byte("x"))
	errc := make(chan error, 1)
	go func() {
		_, err := ts.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{ext4.Dir}, Context: vss.CtxClientAccessible})
		errc <- err
	}()
	// The volume is frozen when the hold begins, and must be thawed at the
	// limit, well before the 3 s commit ends.
	start := <-held
	if writable(ext4.Dir, 100*time.Millisecond) {
		t.Fatal("the volume is not frozen during the hold")
	}
	if !writable(ext4.Dir, 2*time.Second) {
		t.Fatal("the volume stayed frozen past the commit limit")
	}
	if w := time.Since(start); w > 1500*time.Millisecond {
		t.Errorf("thawed %v after the hold began; the limit is 500 ms", w)
	}
	requireCode(t, <-errc, vsserr.VSS_E_HOLD_WRITES_TIMEOUT)
	if n := len(ts.shadows()); n != 0 {
		t.Fatalf("%d shadows", n)
	}
	if e := storageEntries(t, other.Dir); len(e) != 0 {
		t.Fatalf("left %v", e)
	}
	ts.requireConsistent(ext4.Dir, other.Dir)
}

func mustMax(t *testing.T, s string) config.MaxSize {
	t.Helper()
	m, err := config.ParseMaxSize(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
