package main_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"
)

// buildTagged compiles packages with build tags into a directory every user
// may read and returns the directory.
func buildTagged(t *testing.T, tags string, pkgs ...string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "needs the go command")
	}
	dir := openDir(t)
	args := []string{"build", "-o", dir + "/"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.Command(gobin, append(args, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// appendlog is a running example writer.
type appendlog struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan string
	done  chan struct{}
}

func startAppendlog(t *testing.T, bin, socket, file string, cred *syscall.Credential) *appendlog {
	t.Helper()
	a := &appendlog{seen: make(chan string, 100), done: make(chan struct{})}
	a.cmd = exec.Command(bin, "--socket", socket, "--file", file, "--interval", "5ms")
	a.cmd.Env = cleanEnv()
	a.cmd.Dir = "/"
	if cred != nil {
		a.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	a.cmd.Stderr = &stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			a.mu.Unlock()
			select {
			case a.seen <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			a.cmd.Process.Kill()
			<-a.done
		}
		a.cmd.Wait()
		if t.Failed() {
			t.Logf("appendlog output:\n%s\nstderr:\n%s", strings.Join(a.output(), "\n"), stderr.String())
		}
	})
	return a
}

func (a *appendlog) output() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.lines...)
}

// waitFor waits for an output line starting with prefix.
func (a *appendlog) waitFor(t *testing.T, prefix string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-a.seen:
			if strings.HasPrefix(l, prefix) {
				return l, time.Now()
			}
		case <-deadline:
			t.Fatalf("appendlog did not print %q within %v; it printed %q", prefix, timeout, a.output())
		}
	}
}

// checkLines checks that every line of the log is whole and numbered in
// order, and returns how many there are.
func checkLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s ends with a partial line", path)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		n++
		var k int
		if _, err := fmt.Sscanf(l, "%d ", &k); err != nil || k != n {
			t.Fatalf("%s line %d is %q", path, n, l)
		}
	}
	return n
}

// TestExampleWriter: the SDK's example writer takes part in a shadow copy
// made through vssd (the shadow holds only whole lines), vssadmin lists it
// as Windows does, and it is refused unless the access configuration lets
// its user register writers.
func TestExampleWriter(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	ex := buildTagged(t, "", "github.com/linuxvss/vss/examples/appendlog")
	fs := testutil.NewFS(t, "btrfs", 0)
	appDir := filepath.Join(fs.Dir, "app")
	if err := os.MkdirAll(appDir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(appDir, 0o777)
	dir := openDir(t)
	cfg := filepath.Join(dir, "vssd.toml")
	if err := os.WriteFile(cfg, []byte("[access]\nwriters = [\"65534\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	startDaemon(t, b, socket, state, "--config", cfg)
	via := []string{"--socket", socket, "--state-dir", state}

	a := startAppendlog(t, filepath.Join(ex, "appendlog"), socket, filepath.Join(appDir, "log"), &syscall.Credential{Uid: nobody, Gid: nobody})
	a.waitFor(t, "registered", 10*time.Second)
	r := vssadmin(t, b, nil, append(via, "list", "writers")...).must(t)
	for _, want := range []string{"Writer name: 'AppendLog Writer'", "Writer Id: {7b0c5c2e-64a1-4b7e-9a55-6f3f1d2c0a11}", "State: [1] Stable", "Last error: No error"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list writers lacks %q:\n%s", want, r.stdout)
		}
	}
	for i := 0; i < 3; i++ {
		vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...).must(t)
		a.waitFor(t, "event Freeze", 5*time.Second)
		a.waitFor(t, "event Thaw", 5*time.Second)
	}
	shadows := listJSON(t, b, via...)
	if len(shadows) != 3 {
		t.Fatalf("%d shadows, want 3", len(shadows))
	}
	prev := 0
	for _, sh := range shadows {
		n := checkLines(t, filepath.Join(sh.ShadowPath, "app", "log"))
		if n <= prev {
			t.Errorf("shadow %s has %d lines, the one before %d", sh.ID, n, prev)
		}
		prev = n
	}
	r = vssadmin(t, b, nil, append(via, "list", "writers", "--format", "json")...).must(t)
	if !strings.Contains(r.stdout, `"state": 1`) && !strings.Contains(r.stdout, `"state":1`) {
		t.Errorf("list writers --format json after the backups:\n%s", r.stdout)
	}

	// Another user is refused.
	other := startAppendlog(t, filepath.Join(ex, "appendlog"), socket, filepath.Join(appDir, "log2"), &syscall.Credential{Uid: 1, Gid: 1})
	l, _ := other.waitFor(t, "writer ended", 10*time.Second)
	if !strings.Contains(l, "E_ACCESSDENIED") {
		t.Errorf("a user without the writers right: %q", l)
	}
}

// TestWriterThawsWhenVssdKilled: vssd is killed with SIGKILL while the
// example writer is frozen; the writer thaws by itself at once (its stream
// broke), and the next vssd leaves no shadow behind.
func TestWriterThawsWhenVssdKilled(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	fault := buildTagged(t, "faultinject", "github.com/linuxvss/vss/cmd/vssd")
	ex := buildTagged(t, "", "github.com/linuxvss/vss/examples/appendlog")
	fs := testutil.NewFS(t, "btrfs", 0)
	appDir := filepath.Join(fs.Dir, "app")
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := openDir(t)
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	fb := b
	fb.vssd = filepath.Join(fault, "vssd")
	d := startDaemonEnv(t, fb, socket, state, []string{"VSS_FAULT=freeze=kill"})
	a := startAppendlog(t, filepath.Join(ex, "appendlog"), socket, filepath.Join(appDir, "log"), nil)
	a.waitFor(t, "registered", 10*time.Second)
	via := []string{"--socket", socket, "--state-dir", state}
	r := vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...)
	if r.code == 0 {
		t.Fatal("create shadow succeeded although vssd was killed in the freeze")
	}
	a.waitFor(t, "event Freeze", 5*time.Second)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("vssd was not killed")
	}
	killed := time.Now()
	_, thawed := a.waitFor(t, "thawed by itself", 5*time.Second)
	t.Logf("the writer thawed %v after vssd died (observed)", thawed.Sub(killed))
	if thawed.Sub(killed) > time.Second {
		t.Errorf("the writer thawed %v after vssd died", thawed.Sub(killed))
	}
	// The application writes again.
	n := checkLines(t, filepath.Join(appDir, "log"))
	time.Sleep(100 * time.Millisecond)
	if m := checkLines(t, filepath.Join(appDir, "log")); m <= n {
		t.Errorf("the application did not write after the thaw (%d → %d lines)", n, m)
	}
	// A new vssd rolls the set back: no shadow, nothing frozen.
	startDaemon(t, b, socket, state)
	if sh := listJSON(t, b, via...); len(sh) != 0 {
		t.Errorf("%d shadows after the restart", len(sh))
	}
	if ents, _ := os.ReadDir(filepath.Join(fs.Dir, ".vss")); len(ents) != 0 {
		t.Errorf("the storage holds %d entries after the restart", len(ents))
	}
}
