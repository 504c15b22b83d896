// Package providertest is the conformance suite every provider passes, on
// real filesystems made on loop devices (the containerd snapshotter suite
// pattern): each provider's test calls Run with a factory per kind of
// volume it supports.
package providertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/fsfreeze"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// Env is one volume prepared by a factory.
type Env struct {
	Provider provider.Provider
	// Volume is the path of an empty volume the provider supports.
	Volume string
	// StorageOn is the volume that holds the storage; "" means Volume.
	StorageOn string
	// Xattrs says the volume's filesystem keeps user and trusted xattrs.
	Xattrs bool
	// Unsupported, when set, is a volume the provider must refuse.
	Unsupported string
}

// Factory makes a fresh Env for one test; it registers its cleanup on t.
type Factory func(t *testing.T) Env

// Run runs the conformance suite.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"ShadowKeepsCommitPoint", testShadowKeepsCommitPoint},
		{"ShadowUnderLiveWrites", testShadowUnderLiveWrites},
		{"ManyShadowsCoexist", testManyShadows},
		{"DeleteFreesSpace", testDeleteFreesSpace},
		{"Revert", testRevert},
		{"AbortAtEachStep", testAbortAtEachStep},
		{"Usage", testUsage},
		{"Supports", testSupports},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newFixture(t, f))
		})
	}
}

type fixture struct {
	Env
	vol, sv *volume.Volume
	storage string
}

func newFixture(t *testing.T, f Factory) *fixture {
	env := f(t)
	if env.StorageOn == "" {
		env.StorageOn = env.Volume
	}
	vol, err := volume.Resolve(env.Volume)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := volume.Resolve(env.StorageOn)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{Env: env, vol: vol, sv: sv, storage: filepath.Join(sv.Path, provider.StorageDirName)}
	if err := env.Provider.Supports(context.Background(), vol, sv); err != nil {
		t.Fatalf("provider refuses its own test volume: %v", err)
	}
	if err := env.Provider.InitStorage(context.Background(), fx.storage); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) request() provider.Request {
	return provider.Request{
		Volume: fx.vol, ShadowID: uuid.New(), Storage: fx.storage, StorageVolume: fx.sv,
		Exclude: []string{fx.storage},
	}
}

func (fx *fixture) walk(t *testing.T) fsutil.WalkOptions {
	wo, err := provider.WalkOptions(fx.vol.Path, []string{fx.storage})
	if err != nil {
		t.Fatal(err)
	}
	return wo
}

func (fx *fixture) state(t *testing.T, root string) fsutil.TreeState {
	t.Helper()
	wo := fsutil.WalkOptions{}
	if root == fx.vol.Path {
		wo = fx.walk(t)
	}
	s, err := fsutil.StateOf(context.Background(), root, wo)
	if err != nil {
		t.Fatal(err)
	}
	// A btrfs snapshot shows nested subvolumes (the storage) as empty
	// directories; they are not part of the volume.
	rel, err := filepath.Rel(root, filepath.Join(root, provider.StorageDirName))
	if err == nil {
		delete(s, rel)
	}
	if root != fx.vol.Path {
		delete(s, ".")
	} else {
		delete(s, ".")
	}
	return s
}

func requireSame(t *testing.T, what string, want, got fsutil.TreeState) {
	t.Helper()
	if d := fsutil.Diff(want, got); d != nil {
		if len(d) > 20 {
			d = append(d[:20], fmt.Sprintf("… and %d more", len(d)-20))
		}
		t.Fatalf("%s:\n%s", what, strings.Join(d, "\n"))
	}
}

// take makes a shadow the way the coordinator does, with the hold. before,
// when set, runs just before the hold (writers are frozen then).
func (fx *fixture) take(t *testing.T, before func()) (string, provider.Snapshot) {
	t.Helper()
	ctx := context.Background()
	req := fx.request()
	snap, err := fx.Provider.Prepare(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.EndPrepare(ctx); err != nil {
		snap.Abort(ctx)
		t.Fatal(err)
	}
	if before != nil {
		before()
	}
	if err := snap.PreCommit(ctx); err != nil {
		snap.Abort(ctx)
		t.Fatal(err)
	}
	frozen := false
	var g *fsfreeze.Guard
	if ft := snap.FreezeTarget(); ft != "" && freezable(t, ft, snap.Writes()) {
		g, err = fsfreeze.StartGuard(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if err := g.Freeze(ctx, time.Now().Add(10*time.Second), ft); err != nil {
			t.Fatal(err)
		}
		frozen = true
	}
	if hs, ok := snap.(provider.HeldSetter); ok {
		hs.SetHeld(frozen)
	}
	cerr := snap.Commit(ctx)
	if g != nil {
		if err := g.Thaw(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if cerr != nil {
		snap.Abort(ctx)
		t.Fatal(cerr)
	}
	if err := snap.PostCommit(ctx); err != nil {
		snap.Abort(ctx)
		t.Fatal(err)
	}
	return req.Path(), snap
}

// freezable applies the coordinator's safety rules: never the root
// filesystem, never a filesystem the commit writes to.
func freezable(t *testing.T, target string, writes []string) bool {
	mounts, err := volume.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := volume.FilesystemOf(mounts, target)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := volume.FilesystemOf(mounts, "/")
	if fs == root {
		return false
	}
	for _, w := range writes {
		if wfs, err := volume.FilesystemOf(mounts, w); err == nil && wfs == fs {
			return false // the commit writes there: a freeze would deadlock
		}
	}
	return true
}

func testShadowKeepsCommitPoint(t *testing.T, fx *fixture) {
	testutil.Populate(t, fx.vol.Path, fx.Xattrs)
	var atCommit fsutil.TreeState
	path, _ := fx.take(t, func() { atCommit = fx.state(t, fx.vol.Path) })
	requireSame(t, "shadow differs from the volume at the commit point", atCommit, fx.state(t, path))
	testutil.Mutate(t, fx.vol.Path, fx.Xattrs)
	if fsutil.Diff(atCommit, fx.state(t, fx.vol.Path)) == nil {
		t.Fatal("Mutate changed nothing")
	}
	requireSame(t, "shadow changed when the volume did", atCommit, fx.state(t, path))
	// The shadow is not writable through its path for ordinary users of
	// the storage: it lives in a directory only root can enter.
	st, err := os.Stat(fx.storage)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("storage %s has mode %v: others can reach the shadows", fx.storage, st.Mode().Perm())
	}
}

// testShadowUnderLiveWrites takes a shadow while a writer keeps appending
// fixed-size numbered records and rewriting a file; the shadow must hold a
// gap-free prefix of the records, and stay unchanged afterwards.
func testShadowUnderLiveWrites(t *testing.T, fx *fixture) {
	testutil.Populate(t, fx.vol.Path, false)
	logPath := filepath.Join(fx.vol.Path, "live.log")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	wg.Add(1)
	var written int
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rec := fmt.Sprintf("%063d\n", i)
			if _, err := f.WriteString(rec); err != nil {
				t.Error(err)
				return
			}
			written = i + 1
			if i%50 == 0 {
				_ = os.WriteFile(filepath.Join(fx.vol.Path, "rewritten"), []byte(rec), 0o644)
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	path, snap := fx.take(t, nil)
	time.Sleep(50 * time.Millisecond)
	halt()
	check := func() int {
		b, err := os.ReadFile(filepath.Join(path, "live.log"))
		if err != nil {
			t.Fatal(err)
		}
		// A gap-free prefix of whole records. A commit under a freeze is
		// exact. Without one, a filesystem may show, as it could after a
		// power failure, zeros at the end of a file where an append was
		// under way (btrfs: the snapshot's file size runs ahead of the data
		// written back); a copy without a freeze may catch a record
		// half-written. Anything else is an error.
		n := 0
		for ; (n+1)*64 <= len(b); n++ {
			if string(b[n*64:(n+1)*64]) != fmt.Sprintf("%063d\n", n) {
				break
			}
		}
		tail := b[n*64:]
		zeros := len(bytes.Trim(tail, "\x00")) == 0
		switch {
		case len(tail) == 0:
		case snap.Stats().Frozen:
			t.Fatalf("a commit under a freeze is not exact: %d good records, then %d bytes %q", n, len(tail), tail[:min(len(tail), 80)])
		case zeros && len(tail) <= 1<<20:
			t.Logf("the shadow's log ends in %d zero bytes after %d records (an append in flight, as after a crash)", len(tail), n)
		case !zeros && len(tail) < 64 && !fx.Provider.Info().CrashConsistent:
			t.Logf("the shadow's log ends in a half-written record (a copy without a freeze)")
		default:
			t.Fatalf("the shadow's log is not a prefix of the records: %d good records, then %d bytes: %q", n, len(tail), tail[:min(len(tail), 80)])
		}
		return n
	}
	n := check()
	if n == 0 || n >= written {
		t.Fatalf("shadow holds %d records of %d written: not a point in between", n, written)
	}
	// The writer went on; the shadow did not.
	if m := check(); m != n {
		t.Fatalf("shadow grew from %d to %d records", n, m)
	}
	t.Logf("shadow holds %d of %d records; frozen=%v", n, written, snap.Stats().Frozen)
}

func testManyShadows(t *testing.T, fx *fixture) {
	ctx := context.Background()
	var paths []string
	var states []fsutil.TreeState
	for i := 0; i < 4; i++ {
		testutil.WriteFile(t, fx.vol.Path, fmt.Sprintf("gen/%d", i), testutil.RandomBytes(int64(i), 10000+i))
		testutil.WriteFile(t, fx.vol.Path, "gen/current", []byte(fmt.Sprint(i)))
		p, _ := fx.take(t, nil)
		paths = append(paths, p)
		states = append(states, fx.state(t, fx.vol.Path))
	}
	for i, p := range paths {
		requireSame(t, fmt.Sprintf("shadow %d", i), states[i], fx.state(t, p))
	}
	if err := fx.Provider.Delete(ctx, paths[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(paths[1]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted shadow still there: %v", err)
	}
	for _, i := range []int{0, 2, 3} {
		requireSame(t, fmt.Sprintf("shadow %d after deleting shadow 1", i), states[i], fx.state(t, paths[i]))
	}
	// Deleting again is not an error (an interrupted delete can be finished).
	if err := fx.Provider.Delete(ctx, paths[1]); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func freeBytes(t *testing.T, path string) uint64 {
	_, free, err := volume.Space(path)
	if err != nil {
		t.Fatal(err)
	}
	return free
}

func settle(path string) {
	if ok, _ := btrfsutil.IsBtrfs(path); ok {
		_ = btrfsutil.Sync(path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err == nil {
		unix.Syncfs(fd)
		unix.Close(fd)
	}
}

func testDeleteFreesSpace(t *testing.T, fx *fixture) {
	ctx := context.Background()
	const size = 48 << 20
	testutil.WriteFile(t, fx.vol.Path, "big", testutil.RandomBytes(42, size))
	settle(fx.vol.Path)
	path, _ := fx.take(t, nil)
	// Only the shadow holds the data now.
	if err := os.Remove(filepath.Join(fx.vol.Path, "big")); err != nil {
		t.Fatal(err)
	}
	settle(fx.vol.Path)
	settle(fx.sv.Path)
	before := freeBytes(t, fx.sv.Path)
	if err := fx.Provider.Delete(ctx, path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		settle(fx.sv.Path)
		after := freeBytes(t, fx.sv.Path)
		if after >= before+size*9/10 {
			t.Logf("delete gave back %d MiB", (after-before)>>20)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete gave back %d bytes, want about %d", int64(after)-int64(before), size)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func testRevert(t *testing.T, fx *fixture) {
	ctx := context.Background()
	testutil.Populate(t, fx.vol.Path, fx.Xattrs)
	want := fx.state(t, fx.vol.Path)
	path, _ := fx.take(t, nil)
	other, _ := fx.take(t, nil)
	testutil.Mutate(t, fx.vol.Path, fx.Xattrs)
	var calls int
	err := fx.Provider.Revert(ctx, path, fx.vol, provider.RevertOptions{
		Exclude:  []string{fx.storage},
		Progress: func(done, total int64) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	requireSame(t, "volume after revert", want, fx.state(t, fx.vol.Path))
	if calls == 0 {
		t.Error("revert reported no progress")
	}
	// The shadows are still there and intact.
	requireSame(t, "reverted-to shadow", want, fx.state(t, path))
	requireSame(t, "other shadow", want, fx.state(t, other))
	// Revert is idempotent: again, with nothing to do.
	if err := fx.Provider.Revert(ctx, path, fx.vol, provider.RevertOptions{Exclude: []string{fx.storage}}); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "volume after a second revert", want, fx.state(t, fx.vol.Path))
}

func storageEntries(t *testing.T, storage string) []string {
	ents, err := os.ReadDir(storage)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func testAbortAtEachStep(t *testing.T, fx *fixture) {
	ctx := context.Background()
	testutil.Populate(t, fx.vol.Path, false)
	before := fx.state(t, fx.vol.Path)
	steps := []string{"Prepare", "EndPrepare", "PreCommit", "Commit", "PostCommit"}
	for last := range steps {
		t.Run("after"+steps[last], func(t *testing.T) {
			req := fx.request()
			snap, err := fx.Provider.Prepare(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			run := []func(context.Context) error{nil, snap.EndPrepare, snap.PreCommit, snap.Commit, snap.PostCommit}
			for i := 1; i <= last; i++ {
				if err := run[i](ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := snap.Abort(ctx); err != nil {
				t.Fatalf("abort: %v", err)
			}
			if err := snap.Abort(ctx); err != nil {
				t.Fatalf("second abort: %v", err)
			}
			if names := storageEntries(t, fx.storage); len(names) != 0 {
				t.Fatalf("abort after %s left %v in the storage", steps[last], names)
			}
			requireSame(t, "volume after abort", before, fx.state(t, fx.vol.Path))
		})
	}
}

func testUsage(t *testing.T, fx *fixture) {
	ctx := context.Background()
	testutil.WriteFile(t, fx.vol.Path, "data", testutil.RandomBytes(1, 16<<20))
	settle(fx.vol.Path)
	p1, _ := fx.take(t, nil)
	settle(fx.sv.Path)
	u1, err := fx.Provider.Usage(ctx, fx.vol, []string{p1})
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the data: the shadow now holds the old 16 MiB alone.
	testutil.WriteFile(t, fx.vol.Path, "data", testutil.RandomBytes(2, 16<<20))
	settle(fx.vol.Path)
	u2, err := fx.Provider.Usage(ctx, fx.vol, []string{p1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usage: %d KiB after the shadow, %d KiB after overwriting 16 MiB (%s)", u1>>10, u2>>10, fx.Provider.Info().Method)
	switch fx.Provider.Info().Method {
	case provider.CompleteCopy:
		if u1 < 16<<20 || u2 != u1 {
			t.Fatalf("a complete copy of 16 MiB uses %d then %d bytes", u1, u2)
		}
	default:
		if u1 > 4<<20 {
			t.Fatalf("a fresh differential shadow already uses %d bytes", u1)
		}
		if u2 < 15<<20 || u2 > 20<<20 {
			t.Fatalf("after overwriting 16 MiB the shadow uses %d bytes", u2)
		}
	}
	// Two shadows of the same data count it once.
	p2, _ := fx.take(t, nil)
	testutil.WriteFile(t, fx.vol.Path, "data", testutil.RandomBytes(3, 16<<20))
	settle(fx.vol.Path)
	u3, err := fx.Provider.Usage(ctx, fx.vol, []string{p1, p2})
	if err != nil {
		t.Fatal(err)
	}
	if fx.Provider.Info().Method != provider.CompleteCopy && (u3 < 31<<20 || u3 > 40<<20) {
		t.Fatalf("two shadows holding 16 MiB each use %d bytes", u3)
	}
	if u0, err := fx.Provider.Usage(ctx, fx.vol, nil); err != nil || u0 != 0 {
		t.Fatalf("usage of no shadows: %d, %v", u0, err)
	}
}

func testSupports(t *testing.T, fx *fixture) {
	if fx.Unsupported == "" {
		t.Skip("every volume is supported by this provider")
	}
	v, err := volume.Resolve(fx.Unsupported)
	if err != nil {
		t.Fatal(err)
	}
	err = fx.Provider.Supports(context.Background(), v, v)
	if vsserr.CodeOf(err) != vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER {
		t.Fatalf("Supports(%s) = %v, want VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER", fx.Unsupported, err)
	}
}
