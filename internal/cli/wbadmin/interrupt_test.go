package wbadmin_test

// Interrupted backups, at the command-line level: the real wbadmin binary
// is killed, interrupted with Ctrl-C, or runs out of space on its target,
// and what it leaves behind (versions, partial versions, shadow copies) is
// checked.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/backupfmt"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/testutil"
)

// The binaries, built once for all the tests of the package.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// goTool returns the go command that runs these tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// builtBinaries builds cmd/wbadmin and cmd/vssadmin (once) and returns their paths.
func builtBinaries(t *testing.T) (wb, vssadmin string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "wbadmin-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command(goTool(), "build", "-o", buildDir+"/",
			"github.com/linuxvss/vss/cmd/wbadmin", "github.com/linuxvss/vss/cmd/vssadmin")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "wbadmin"), filepath.Join(buildDir, "vssadmin")
}

// runBin runs a built binary to its end.
func runBin(t *testing.T, bin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
	default:
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errOut.String()}
}

// bigTree writes n files of size bytes of random data (each block
// different) under dir, fast.
func bigTree(t *testing.T, dir string, n, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	for i := range n {
		var seed [32]byte
		copy(seed[:], fmt.Sprintf("big file %d", i))
		rnd := rand.NewChaCha8(seed)
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%03d", i)))
		if err != nil {
			t.Fatal(err)
		}
		for left := size; left > 0; left -= len(buf) {
			b := buf[:min(left, len(buf))]
			_, _ = rnd.Read(b)
			if _, err := f.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// smallTree writes a few small files and a link under dir.
func smallTree(t *testing.T, dir string) {
	t.Helper()
	testutil.WriteFile(t, dir, "hello.txt", []byte("hello, backup\n"))
	testutil.WriteFile(t, dir, "sub/one.bin", testutil.RandomBytes(1, 300<<10))
	testutil.WriteFile(t, dir, "sub/two.bin", testutil.RandomBytes(2, 70<<10+17))
	if err := os.Symlink("hello.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
}

var versionRE = regexp.MustCompile(`Version identifier: (\S+)`)

// listVersions returns the ids get versions lists, and checks that each can
// be recovered.
func listVersions(t *testing.T, wb, target string) []string {
	t.Helper()
	r := runBin(t, wb, "get", "versions", "-backupTarget:"+target).must(t)
	var ids []string
	for _, m := range versionRE.FindAllStringSubmatch(r.out, -1) {
		ids = append(ids, m[1])
	}
	if n := strings.Count(r.out, "Can recover: File(s)"); n != len(ids) {
		t.Errorf("get versions: %d versions, %d recoverable:\n%s", len(ids), n, r.out)
	}
	return ids
}

// backupOK makes a backup with the binary and returns its version id.
func backupOK(t *testing.T, wb, target, include string, g []string) string {
	t.Helper()
	r := runBin(t, wb, append([]string{"start", "backup", "-backupTarget:" + target, "-include:" + include}, g...)...).must(t)
	m := versionRE.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("backup names no version:\n%s", r.out)
	}
	return m[1]
}

// checkVersion verifies version v and restores the tree at include from it,
// which must equal want.
func checkVersion(t *testing.T, wb, target, v, include string, want fsutil.TreeState) {
	t.Helper()
	r := runBin(t, wb, "verify", "-version:"+v, "-backupTarget:"+target)
	if r.code != 0 || !strings.Contains(r.out, "verified") {
		t.Errorf("verify %s: exit %d\n%s%s", v, r.code, r.out, r.errOut)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	runBin(t, wb, "start", "recovery", "-version:"+v, "-backupTarget:"+target, "-itemType:File",
		"-items:"+include, "-recoveryTarget:"+dst, "-quiet").must(t)
	if d := fsutil.Diff(want, state(t, filepath.Join(dst, include))); len(d) > 0 {
		t.Errorf("version %s restored differs:\n%s", v, strings.Join(d, "\n"))
	}
}

// targetEntries lists the names in the target directory.
func targetEntries(t *testing.T, target string) []string {
	t.Helper()
	ents, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() != backupfmt.LockName { // the target's lock file stays
			names = append(names, e.Name())
		}
	}
	return names
}

// leftShadows describes the shadow copies left on the btrfs volume at dir
// (its subvolumes, and what its storage directory holds) and in the
// catalog of stateDir (read directly, without opening the service, whose
// start would release what a dead run left).
func leftShadows(t *testing.T, dir, stateDir string) []string {
	t.Helper()
	var left []string
	out := testutil.Run(t, "btrfs", "subvolume", "list", dir)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		// The storage directory .vss is a subvolume of its own.
		if l != "" && !strings.HasSuffix(l, " path .vss") {
			left = append(left, "btrfs subvolume: "+l)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dir, ".vss")); err == nil {
		for _, e := range ents {
			left = append(left, "in the storage directory: "+filepath.Join(dir, ".vss", e.Name()))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	db := filepath.Join(stateDir, "catalog.db")
	if _, err := os.Stat(db); err == nil {
		cat, err := catalog.Open(db)
		if err != nil {
			t.Fatal(err)
		}
		defer cat.Close()
		shs, err := cat.Shadows()
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range shs {
			left = append(left, fmt.Sprintf("catalog: shadow %s of %s at %s (context %v, owner %q)", sh.ID, sh.VolumePath, sh.ShadowPath, sh.Context, sh.Owner))
		}
		pend, err := cat.Pending()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pend {
			left = append(left, fmt.Sprintf("catalog: pending set %s", p.SetID))
		}
		del, err := cat.Deleting()
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range del {
			left = append(left, fmt.Sprintf("catalog: shadow %s being deleted", sh.ID))
		}
	}
	return left
}

// requireNoShadowLeft checks, when (a moment of the test) has come, that
// neither the volume at dir, the catalog file of stateDir nor vssadmin
// shows a shadow copy.
func requireNoShadowLeft(t *testing.T, vssadmin, dir, stateDir, when string) {
	t.Helper()
	if left := leftShadows(t, dir, stateDir); len(left) > 0 {
		t.Errorf("%s, shadow copies are left:\n  %s", when, strings.Join(left, "\n  "))
	}
	if shs := vssadminShadows(t, vssadmin, stateDir); len(shs) > 0 {
		t.Errorf("%s, vssadmin list shadows: %v", when, shs)
	}
}

// vssadminShadows lists the shadow copies with vssadmin (which opens the
// service on stateDir).
func vssadminShadows(t *testing.T, vssadmin, stateDir string) []string {
	t.Helper()
	r := runBin(t, vssadmin, "--embedded", "--state-dir", stateDir, "list", "shadows", "--format", "json").must(t)
	var shs []struct {
		ID           string `json:"id"`
		ShadowVolume string `json:"shadow_volume"`
	}
	if err := json.Unmarshal([]byte(r.out), &shs); err != nil {
		t.Fatalf("vssadmin list shadows --format json: %v\n%s", err, r.out)
	}
	var out []string
	for _, s := range shs {
		out = append(out, s.ID+" "+s.ShadowVolume)
	}
	return out
}

type bgEvent struct {
	Event      string `json:"event"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
	Version    string `json:"version"`
}

// bgBackup is a backup running with --format json.
type bgBackup struct {
	cmd    *exec.Cmd
	events chan bgEvent
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startBackup starts a backup; it is killed at the end of the test if it
// is still running then.
func startBackup(t *testing.T, wb string, args ...string) *bgBackup {
	t.Helper()
	b := &bgBackup{events: make(chan bgEvent, 1024), exited: make(chan struct{})}
	b.cmd = exec.Command(wb, append([]string{"start", "backup", "--format", "json"}, args...)...)
	b.cmd.Stderr = &b.stderr
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
			var e bgEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				select {
				case b.events <- e:
				default:
				}
			}
		}
		close(b.events)
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
	})
	return b
}

func (b *bgBackup) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n") + "\n" + b.stderr.String()
}

// waitBytes waits until the backup has reported some bytes copied but not
// all, and fails the test if it ends first.
func (b *bgBackup) waitBytes(t *testing.T) bgEvent {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case e, ok := <-b.events:
			if !ok || e.Event == "done" {
				<-b.exited
				t.Fatalf("the backup ended (%v) before it could be interrupted: make the tree bigger\n%s", b.err, b.output())
			}
			if e.Event == "progress" && e.BytesDone > 0 && e.BytesDone < e.BytesTotal {
				return e
			}
		case <-timeout:
			t.Fatalf("no progress in 60 s\n%s", b.output())
		}
	}
}

// wait waits for the backup to exit, at most d.
func (b *bgBackup) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-b.exited:
	case <-time.After(d):
		t.Fatalf("the backup did not exit within %v after it was interrupted\n%s", d, b.output())
	}
}

// TestBackupKilled: a backup killed (SIGKILL) while it copies leaves no
// version, only a partial directory that is not listed; the previous
// version still verifies and restores; the next backup succeeds, and
// releases the shadow copy the killed run left.
func TestBackupKilled(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "btrfs")
	wb, vssadmin := builtBinaries(t)
	fs := testutil.NewFS(t, "btrfs", 1<<30)
	data := filepath.Join(fs.Dir, "data")
	smallTree(t, data)
	before := state(t, data)
	target := filepath.Join(t.TempDir(), "backups")
	stateDir := t.TempDir()
	g := []string{"--embedded", "--state-dir", stateDir}

	v1 := backupOK(t, wb, target, data, g)
	if vs := listVersions(t, wb, target); !slices.Equal(vs, []string{v1}) {
		t.Fatalf("versions after the first backup: %v, want [%s]", vs, v1)
	}

	bigTree(t, filepath.Join(data, "big"), 24, 16<<20)
	after := state(t, data)
	b := startBackup(t, wb, append([]string{"-backupTarget:" + target, "-include:" + data}, g...)...)
	e := b.waitBytes(t)
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	b.wait(t, 10*time.Second)
	ws, _ := b.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the backup was not killed: %v\n%s", b.cmd.ProcessState, b.output())
	}
	if strings.Contains(b.output(), `"event":"done"`) {
		t.Fatalf("the killed backup reported a version:\n%s", b.output())
	}
	t.Logf("killed after %d of %d bytes", e.BytesDone, e.BytesTotal)

	// What the kill left: the partial version, and its shadow copy.
	var partials []string
	for _, name := range targetEntries(t, target) {
		switch {
		case name == v1:
		case strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".partial"):
			partials = append(partials, name)
			if _, err := os.Stat(filepath.Join(target, name, "manifest.json")); err == nil {
				t.Errorf("the partial version %s has a manifest", name)
			}
		default:
			t.Errorf("the killed backup left %s in the target (entries: %v)", name, targetEntries(t, target))
		}
	}
	if len(partials) != 1 {
		t.Errorf("partial versions after the kill: %v, want one (the kill came while the version was written)", partials)
	}
	left := leftShadows(t, fs.Dir, stateDir)
	t.Logf("the killed run left:\n  %s", strings.Join(left, "\n  "))
	if len(left) == 0 {
		t.Errorf("the killed run left no shadow copy: it was not killed while it held one")
	}

	// The partial version is not a version; the first one is whole.
	if vs := listVersions(t, wb, target); !slices.Equal(vs, []string{v1}) {
		t.Fatalf("versions after the killed backup: %v, want [%s]", vs, v1)
	}
	checkVersion(t, wb, target, v1, data, before)

	// The next backup succeeds, is recoverable, and the shadow copies of
	// both runs are gone when it has ended.
	v3 := backupOK(t, wb, target, data, g)
	if vs := listVersions(t, wb, target); !slices.Equal(vs, []string{v1, v3}) {
		t.Fatalf("versions after the next backup: %v, want [%s %s]", vs, v1, v3)
	}
	if len(partials) == 1 && v3 <= strings.TrimSuffix(partials[0][1:], ".partial") {
		t.Errorf("the next version %s does not sort after the partial %s", v3, partials[0])
	}
	checkVersion(t, wb, target, v3, data, after)
	// ... and removed the partial version of the killed one.
	if names := targetEntries(t, target); !slices.Equal(names, []string{v1, v3}) {
		t.Errorf("target after the next backup: %v, want only [%s %s]", names, v1, v3)
	}
	requireNoShadowLeft(t, vssadmin, fs.Dir, stateDir, "after the next backup")
}

// TestBackupTargetFull: a backup bigger than the free space of its target
// fails with exit 1 and says there is no space; the target keeps its
// first version, whole, and nothing of the failed one; no shadow copy is
// left.
func TestBackupTargetFull(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "btrfs")
	wb, vssadmin := builtBinaries(t)
	fs := testutil.NewFS(t, "btrfs", 640<<20)
	tfs := testutil.NewFS(t, "ext4", 128<<20)
	data := filepath.Join(fs.Dir, "data")
	smallTree(t, data)
	before := state(t, data)
	target := filepath.Join(tfs.Dir, "backups")
	stateDir := t.TempDir()
	g := []string{"--embedded", "--state-dir", stateDir}
	v1 := backupOK(t, wb, target, data, g)

	var st unix.Statfs_t
	if err := unix.Statfs(tfs.Dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bfree) * st.Bsize
	const size = 16 << 20
	n := int(free/size) + 3
	bigTree(t, filepath.Join(data, "big"), n, size)
	if int64(n*size) <= free {
		t.Fatalf("the tree (%d bytes) fits in the %d free bytes of the target", n*size, free)
	}

	r := runBin(t, wb, append([]string{"start", "backup", "-backupTarget:" + target, "-include:" + data}, g...)...)
	t.Logf("%d bytes to back up, %d free on the target: exit %d, %s", n*size, free, r.code, strings.TrimSpace(r.errOut))
	if r.code != 1 || !regexp.MustCompile(`(?i)no space left|ENOSPC`).MatchString(r.errOut) || !strings.Contains(r.errOut, "E_DISK_FULL (0x80070070)") {
		t.Errorf("backup to a full target: exit %d, want 1 and an error saying there is no space\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
	}
	if names := targetEntries(t, target); !slices.Equal(names, []string{v1}) {
		t.Errorf("target after the failed backup: %v, want only [%s]", names, v1)
	}
	if err := unix.Statfs(tfs.Dir, &st); err != nil {
		t.Fatal(err)
	}
	if now := int64(st.Bfree) * st.Bsize; now < free-(1<<20) {
		t.Errorf("the failed backup keeps %d bytes of the target", free-now)
	}
	if vs := listVersions(t, wb, target); !slices.Equal(vs, []string{v1}) {
		t.Errorf("versions after the failed backup: %v, want [%s]", vs, v1)
	}
	checkVersion(t, wb, target, v1, data, before)
	requireNoShadowLeft(t, vssadmin, fs.Dir, stateDir, "after the failed backup")
}

// TestBackupCancelled: Ctrl-C (SIGINT) during a backup makes wbadmin exit
// promptly, non-zero, saying the backup was cancelled; it leaves no
// version, no partial version and no shadow copy, and the previous
// version still verifies.
func TestBackupCancelled(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "btrfs")
	wb, vssadmin := builtBinaries(t)
	fs := testutil.NewFS(t, "btrfs", 1<<30)
	data := filepath.Join(fs.Dir, "data")
	smallTree(t, data)
	before := state(t, data)
	target := filepath.Join(t.TempDir(), "backups")
	stateDir := t.TempDir()
	g := []string{"--embedded", "--state-dir", stateDir}
	v1 := backupOK(t, wb, target, data, g)

	bigTree(t, filepath.Join(data, "big"), 24, 16<<20)
	b := startBackup(t, wb, append([]string{"-backupTarget:" + target, "-include:" + data}, g...)...)
	e := b.waitBytes(t)
	if err := b.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	b.wait(t, 15*time.Second)
	took := time.Since(sent)
	t.Logf("interrupted after %d of %d bytes; exited %v later: %v", e.BytesDone, e.BytesTotal, took.Round(time.Millisecond), b.cmd.ProcessState)
	if took > 3*time.Second {
		t.Errorf("wbadmin took %v to exit after SIGINT", took)
	}
	if code := b.cmd.ProcessState.ExitCode(); code == 0 || code == -1 {
		t.Errorf("exit code after SIGINT: %d (%v), want an exit with a non-zero code\n%s", code, b.cmd.ProcessState, b.output())
	}
	if !strings.Contains(strings.ToLower(b.stderr.String()), "cancel") {
		t.Errorf("stderr does not say the backup was cancelled:\n%s", b.stderr.String())
	}
	if strings.Contains(b.output(), `"event":"done"`) {
		t.Errorf("the cancelled backup reported a version:\n%s", b.output())
	}
	if names := targetEntries(t, target); !slices.Equal(names, []string{v1}) {
		t.Errorf("target after the cancelled backup: %v, want only [%s]", names, v1)
	}
	requireNoShadowLeft(t, vssadmin, fs.Dir, stateDir, "after the cancelled backup")
	if vs := listVersions(t, wb, target); !slices.Equal(vs, []string{v1}) {
		t.Errorf("versions after the cancelled backup: %v, want [%s]", vs, v1)
	}
	checkVersion(t, wb, target, v1, data, before)
}
