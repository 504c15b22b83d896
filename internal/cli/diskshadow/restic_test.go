package diskshadow_test

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"
)

// liveWriter writes files into dir until stopped: new files of random
// sizes, one file rewritten in place, the oldest files removed.
type liveWriter struct {
	stop  chan struct{}
	done  sync.WaitGroup
	err   error
	files int
}

func startLiveWriter(t *testing.T, dir string) *liveWriter {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &liveWriter{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		rng := rand.New(rand.NewSource(1))
		buf := make([]byte, 64<<10)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			rng.Read(buf)
			n := rng.Intn(len(buf))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d", i)), buf[:n], 0o644); err != nil {
				w.err = err
				return
			}
			if err := os.WriteFile(filepath.Join(dir, "current"), buf[:rng.Intn(4096)], 0o644); err != nil {
				w.err = err
				return
			}
			if i >= 300 {
				if err := os.Remove(filepath.Join(dir, fmt.Sprintf("f%06d", i-300))); err != nil {
					w.err = err
					return
				}
			}
			w.files++
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *liveWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.done.Wait()
}

// TestExecRestic backs up an exposed shadow copy of a volume that is being
// written to with restic, from a program exec runs (the aliases in its
// environment), restores the backup and compares it with the shadow copy.
func TestExecRestic(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "restic")
	vol := testutil.NewFS(t, "btrfs", 0)
	testutil.Populate(t, filepath.Join(vol.Dir, "tree"), true)
	live := startLiveWriter(t, filepath.Join(vol.Dir, "live"))
	time.Sleep(100 * time.Millisecond) // some files before the shadow copy

	work := t.TempDir()
	repo := filepath.Join(work, "repo")
	target := filepath.Join(work, "restored")
	exposed := filepath.Join(work, "exposed")
	unmountOnCleanup(t, exposed)
	t.Setenv("RESTIC_PASSWORD", "diskshadow-test")
	t.Setenv("RESTIC_CACHE_DIR", filepath.Join(work, "cache"))
	if out, err := exec.Command("restic", "init", "--repo", repo).CombinedOutput(); err != nil {
		t.Fatalf("restic init: %v\n%s", err, out)
	}
	backup := filepath.Join(work, "backup.sh")
	if err := os.WriteFile(backup, []byte(`#!/bin/sh
set -e
echo "backing up shadow copy $1 (set $VSS_SHADOW_SET) exposed at $2 to $RESTIC_REPOSITORY"
test "$1" = "$data"
restic backup --quiet --host diskshadow-test "$2"
restic snapshots --compact
`), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "")
	r := e.script(t, fmt.Sprintf(`set context persistent nowriters
add volume %[1]s alias data
add alias RESTIC_REPOSITORY %[2]s
create
expose %%data%% %[3]s
exec %[4]s %%data%% %[3]s
exec restic restore latest --target %[5]s
exec %[6]s %[7]s %[3]s %[5]s%[3]s
unexpose %[3]s
delete shadows all
exit
`, vol.Dir, repo, exposed, backup, target, testBin(t), resticHelperArg))
	live.halt()
	if live.err != nil {
		t.Errorf("the live writer: %v", live.err)
	}
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	t.Logf("the live writer wrote %d files", live.files)
	mustContain(t, "stdout", r.stdout, "backing up shadow copy {", "compare: "+target+exposed+" is the same as "+exposed)
	entries, err := os.ReadDir(filepath.Join(target+exposed, "live"))
	if err != nil || len(entries) < 2 {
		t.Errorf("restored live files: %d, %v", len(entries), err)
	}
	if strings.Contains(r.stderr, "Error") {
		t.Errorf("errors:\n%s", r.stderr)
	}
	if n := len(e.shadows(t)); n != 0 {
		t.Errorf("%d shadow copies left", n)
	}
}
