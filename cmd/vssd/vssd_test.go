package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/testutil"
)

// nobody is the unprivileged user the access tests run vssadmin as.
const nobody = 65534

type binaries struct{ dir, vssd, vssadmin string }

// build compiles vssd and vssadmin into a directory every user may read.
func build(t *testing.T) binaries {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			testutil.SkipOrFail(t, "needs the go command to build vssd and vssadmin")
		}
	}
	dir := openDir(t)
	out, err := exec.Command(gobin, "build", "-o", dir+"/",
		"github.com/linuxvss/vss/cmd/vssd", "github.com/linuxvss/vss/cmd/vssadmin").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return binaries{dir: dir, vssd: filepath.Join(dir, "vssd"), vssadmin: filepath.Join(dir, "vssadmin")}
}

// openDir returns a new temporary directory that other users can enter (a
// non-root vssadmin must run from it and reach the socket in it).
func openDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// daemon is a running vssd.
type daemon struct {
	cmd    *exec.Cmd
	log    string // its stderr
	socket string
	state  string
	done   chan struct{}
	err    error // of Wait, once done is closed
}

// startDaemon starts vssd on socket and state and waits until it answers;
// it is killed at the end of the test, whatever happens.
func startDaemon(t *testing.T, b binaries, socket, state string, extra ...string) *daemon {
	t.Helper()
	return startDaemonEnv(t, b, socket, state, nil, extra...)
}

// startDaemonEnv is startDaemon with extra environment variables.
func startDaemonEnv(t *testing.T, b binaries, socket, state string, env []string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{socket: socket, state: state, log: filepath.Join(t.TempDir(), "vssd.log"), done: make(chan struct{})}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"--socket", socket, "--state-dir", state, "--log-level", "debug"}, extra...)
	d.cmd = exec.Command(b.vssd, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Dir = "/"
	d.cmd.Env = append(cleanEnv(), env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("vssd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return d
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("vssd exited at start: %v\n%s", d.err, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("vssd does not answer on its socket")
		}
	}
}

// wait waits for the daemon to exit and returns its exit status.
func (d *daemon) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("vssd did not exit within %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		t.Fatalf("vssd: %v", d.err)
	}
	return 0
}

func (d *daemon) logText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cleanEnv is the environment without the variables that would point the
// programs elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "VSS_SOCKET" || k == "VSS_STATE_DIR" || k == "VSS_CONFIG" || k == "NOTIFY_SOCKET" || strings.HasPrefix(k, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

type run struct {
	stdout, stderr string
	code           int
	pid            int
}

// vssadmin runs vssadmin with args, as root or as cred.
func vssadmin(t *testing.T, b binaries, cred *syscall.Credential, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.vssadmin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = "/"
	cmd.Env = cleanEnv()
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	r := run{stdout: stdout.String(), stderr: stderr.String()}
	if cmd.Process != nil {
		r.pid = cmd.Process.Pid
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("vssadmin %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (r run) must(t *testing.T) run {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("vssadmin exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

var shadowIDLine = regexp.MustCompile(`Shadow Copy ID: \{([0-9a-f-]{36})\}`)

// auditRecord is a line of the audit log.
type auditRecord struct {
	Pid    int    `json:"pid"`
	Uid    uint32 `json:"uid"`
	Op     string `json:"op"`
	Result string `json:"result"`
	Code   string `json:"code"`
}

func audit(t *testing.T, state string) []auditRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []auditRecord
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func listJSON(t *testing.T, b binaries, args ...string) []catalog.Shadow {
	t.Helper()
	r := vssadmin(t, b, nil, append(args, "list", "shadows", "--format", "json")...).must(t)
	var out []catalog.Shadow
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("list shadows --format json: %v\n%s", err, r.stdout)
	}
	return out
}

// TestVssadminThroughVssd runs vssadmin against a vssd on a real btrfs
// filesystem: through the daemon, with the same results and errors as in
// embedded mode, refused to a non-root user, and in embedded mode on the
// same state once the daemon is killed.
func TestVssadminThroughVssd(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "losetup")
	b := build(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	dir := openDir(t)
	socket := filepath.Join(dir, "run", "vssd.sock")
	state := filepath.Join(dir, "state")
	d := startDaemon(t, b, socket, state)
	via := []string{"--socket", socket}

	// Through the daemon: vssadmin says so, and the daemon saw its pid.
	r := vssadmin(t, b, nil, append(via, "--verbose", "list", "providers")...).must(t)
	if want := fmt.Sprintf(`msg="using vssd" socket=%s pid=%d`, socket, d.cmd.Process.Pid); !strings.Contains(r.stderr, want) {
		t.Errorf("vssadmin --verbose does not say it uses vssd (%s):\n%s", want, r.stderr)
	}

	var first string
	t.Run("create", func(t *testing.T) {
		r := vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...).must(t)
		if !strings.Contains(r.stdout, fmt.Sprintf("Successfully created shadow copy for '%s'", fs.Dir)) {
			t.Fatalf("create shadow printed:\n%s", r.stdout)
		}
		m := shadowIDLine.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no shadow copy ID in:\n%s", r.stdout)
		}
		first = m[1]
		var found bool
		for _, a := range audit(t, state) {
			if a.Op == "create-shadow-set" && a.Result == "success" {
				found = true
				if a.Pid != r.pid || a.Uid != 0 {
					t.Errorf("audit records pid %d uid %d, want vssadmin's pid %d uid 0", a.Pid, a.Uid, r.pid)
				}
			}
		}
		if !found {
			t.Error("the audit log has no successful create-shadow-set")
		}
		if want := fmt.Sprintf("method=/vss.v1.Admin/CreateShadowSet uid=0 gid=0 pid=%d", r.pid); !strings.Contains(d.logText(t), want) {
			t.Errorf("the daemon's log has no call %q", want)
		}
	})
	if first == "" {
		t.FailNow()
	}

	t.Run("list", func(t *testing.T) {
		r := vssadmin(t, b, nil, append(via, "list", "shadows")...).must(t)
		for _, want := range []string{"{" + first + "}", "Original Volume: (" + fs.Dir + ")", "Type: ClientAccessible"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("list shadows lacks %q:\n%s", want, r.stdout)
			}
		}
		shadows := listJSON(t, b, via...)
		if len(shadows) != 1 || shadows[0].ID.String() != first || shadows[0].VolumePath != fs.Dir {
			t.Errorf("list shadows --format json = %+v, want shadow %s of %s", shadows, first, fs.Dir)
		}
	})

	t.Run("same error as embedded", func(t *testing.T) {
		missing := filepath.Join(dir, "no-such-volume")
		other := filepath.Join(t.TempDir(), "state")
		for _, format := range []string{"text", "json"} {
			api := vssadmin(t, b, nil, append(via, "--format", format, "create", "shadow", "--for", missing)...)
			emb := vssadmin(t, b, nil, "--embedded", "--state-dir", other, "--format", format, "create", "shadow", "--for", missing)
			if api.code != 1 || emb.code != 1 {
				t.Errorf("%s: exit %d through vssd, %d embedded; want 1", format, api.code, emb.code)
			}
			if !strings.Contains(api.stderr, "VSS_E_OBJECT_NOT_FOUND") || !strings.Contains(api.stderr, "0x80042308") {
				t.Errorf("%s: the error does not name VSS_E_OBJECT_NOT_FOUND (0x80042308):\n%s", format, api.stderr)
			}
			if d := cmp.Diff(emb.stderr, api.stderr); d != "" {
				t.Errorf("%s: stderr (-embedded +vssd):\n%s", format, d)
			}
			if d := cmp.Diff(emb.stdout, api.stdout); d != "" {
				t.Errorf("%s: stdout (-embedded +vssd):\n%s", format, d)
			}
		}
	})

	t.Run("non-root is refused", func(t *testing.T) {
		before := listJSON(t, b, via...)
		auditBefore := len(audit(t, state))
		cred := &syscall.Credential{Uid: nobody, Gid: nobody}
		for _, args := range [][]string{
			{"list", "shadows"},
			{"create", "shadow", "--for", fs.Dir},
			{"delete", "shadows", "--all", "--quiet"},
			{"delete", "shadows", "--shadow", "{" + first + "}", "--quiet"},
		} {
			r := vssadmin(t, b, cred, append(via, args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, "E_ACCESSDENIED (0x80070005)") {
				t.Errorf("vssadmin %s as uid %d: exit %d, stderr:\n%s", strings.Join(args, " "), nobody, r.code, r.stderr)
			}
		}
		if d := cmp.Diff(before, listJSON(t, b, via...)); d != "" {
			t.Errorf("the shadows changed (-before +after):\n%s", d)
		}
		// The refused create is audited as such; the refused listing is
		// not, and the deletes are refused at their first step, the
		// listing of what to delete.
		recs := audit(t, state)[auditBefore:]
		if len(recs) != 1 {
			t.Errorf("the audit log grew by %d records, want 1 (the refused create)", len(recs))
		}
		for _, r := range recs {
			if r.Op != "denied" || r.Uid != nobody || r.Result != "failure" || !strings.Contains(r.Code, "E_ACCESSDENIED") {
				t.Errorf("audit record of a refused call: %+v", r)
			}
		}
		if !strings.Contains(d.logText(t), fmt.Sprintf("call denied\" method=/vss.v1.Admin/CreateShadowSet uid=%d", nobody)) {
			t.Error("the daemon did not log the denied create")
		}
	})

	t.Run("delete", func(t *testing.T) {
		shadows := listJSON(t, b, via...)
		r := vssadmin(t, b, nil, append(via, "delete", "shadows", "--shadow", "{"+first+"}", "--quiet")...).must(t)
		if !strings.Contains(r.stdout, "Successfully deleted the 1 shadow copies.") {
			t.Errorf("delete shadows printed:\n%s", r.stdout)
		}
		r = vssadmin(t, b, nil, append(via, "list", "shadows")...).must(t)
		if !strings.Contains(r.stdout, "No items found that satisfy the query.") {
			t.Errorf("list shadows after delete:\n%s", r.stdout)
		}
		if _, err := os.Stat(shadows[0].ShadowPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the deleted shadow copy is still on disk: %v", err)
		}
	})

	t.Run("embedded after SIGKILL", func(t *testing.T) {
		vssadmin(t, b, nil, append(via, "create", "shadow", "--for", fs.Dir)...).must(t)
		text := vssadmin(t, b, nil, append(via, "list", "shadows")...).must(t).stdout
		js := vssadmin(t, b, nil, append(via, "list", "shadows", "--format", "json")...).must(t).stdout
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.wait(t, 10*time.Second)
		if _, err := os.Lstat(socket); err != nil {
			t.Logf("(the killed daemon left no socket file: %v)", err)
		}
		// The same state, now in embedded mode: the same listings.
		withState := append(via, "--state-dir", state)
		r := vssadmin(t, b, nil, append(withState, "--verbose", "list", "shadows")...).must(t)
		if !strings.Contains(r.stderr, "running the service in this process") {
			t.Errorf("vssadmin does not say it runs embedded:\n%s", r.stderr)
		}
		if d := cmp.Diff(text, r.stdout); d != "" {
			t.Errorf("list shadows (-vssd +embedded):\n%s", d)
		}
		r = vssadmin(t, b, nil, append(withState, "list", "shadows", "--format", "json")...).must(t)
		if d := cmp.Diff(js, r.stdout); d != "" {
			t.Errorf("list shadows --format json (-vssd +embedded):\n%s", d)
		}
		r = vssadmin(t, b, nil, append(withState, "delete", "shadows", "--all", "--quiet")...).must(t)
		if !strings.Contains(r.stdout, "Successfully deleted the 1 shadow copies.") {
			t.Errorf("embedded delete printed:\n%s", r.stdout)
		}
		last := audit(t, state)
		if a := last[len(last)-1]; a.Op != "delete-shadows" || a.Pid != r.pid {
			t.Errorf("last audit record %+v, want delete-shadows by pid %d", a, r.pid)
		}
	})
}

// TestVssdRefusesToShare checks that a second vssd fails fast, with a
// clear message, on a state directory or socket another one has.
func TestVssdRefusesToShare(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	dir := openDir(t)
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	startDaemon(t, b, socket, state)
	for _, tc := range []struct {
		name, socket, state, want string
	}{
		{"same state directory", filepath.Join(dir, "other.sock"), state, "another process owns the state directory"},
		{"same socket", socket, filepath.Join(dir, "other-state"), "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, b.vssd, "--socket", tc.socket, "--state-dir", tc.state)
			cmd.Env = cleanEnv()
			start := time.Now()
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("second vssd: %v, want exit status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("second vssd says:\n%s\nwant %q", out, tc.want)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("second vssd took %v to fail", took)
			}
		})
	}
	if _, err := os.Lstat(socket); err != nil {
		t.Errorf("the first daemon's socket is gone: %v", err)
	}
}

// TestVssdSignals checks the orderly stop on SIGTERM: exit status 0, the
// socket removed, the state directory released.
func TestVssdSignals(t *testing.T) {
	testutil.RequireRoot(t)
	b := build(t)
	dir := openDir(t)
	socket, state := filepath.Join(dir, "vssd.sock"), filepath.Join(dir, "state")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			d := startDaemon(t, b, socket, state)
			vssadmin(t, b, nil, "--socket", socket, "list", "providers").must(t)
			if err := d.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := d.wait(t, 40*time.Second); code != 0 {
				t.Errorf("exit status %d after %v", code, sig)
			}
			if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket left after %v: %v", sig, err)
			}
			if log := d.logText(t); !strings.Contains(log, `msg="vssd stopped"`) {
				t.Errorf("no orderly stop in the log:\n%s", log)
			}
		})
	}
	// The state directory is free again: embedded mode opens it at once.
	r := vssadmin(t, b, nil, "--socket", socket, "--state-dir", state, "list", "shadows").must(t)
	if !strings.Contains(r.stdout, "No items found") {
		t.Errorf("embedded list after stop:\n%s", r.stdout)
	}
}

// TestVssdSocketActivation runs vssd as systemd would: on a socket passed
// as descriptor 3 (LISTEN_FDS), reporting READY=1 and STOPPING=1 on
// NOTIFY_SOCKET.
func TestVssdSocketActivation(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "systemd-socket-activate")
	b := build(t)
	dir := openDir(t)
	socket, state := filepath.Join(dir, "activated.sock"), filepath.Join(dir, "state")
	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { notify.Close() })
	logPath := filepath.Join(dir, "vssd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// systemd-socket-activate listens, and at the first connection execs
	// vssd in its own process with the listening socket as descriptor 3.
	cmd := exec.Command("systemd-socket-activate", "--listen", socket, "--setenv", "NOTIFY_SOCKET="+notifyPath,
		b.vssd, "--state-dir", state, "--socket", filepath.Join(dir, "unused.sock"), "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("log:\n%s", b)
		}
	})
	for i := 0; ; i++ {
		if _, err := os.Lstat(socket); err == nil {
			break
		}
		if i == 200 {
			t.Fatal("systemd-socket-activate does not listen")
		}
		time.Sleep(20 * time.Millisecond)
	}

	recv := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		notify.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if msg := string(buf[:n]); !strings.Contains(msg, want) {
			t.Fatalf("notification %q, want %s", msg, want)
		}
	}
	r := vssadmin(t, b, nil, "--socket", socket, "--verbose", "list", "providers").must(t)
	if want := fmt.Sprintf("socket=%s pid=%d", socket, cmd.Process.Pid); !strings.Contains(r.stderr, "using vssd") || !strings.Contains(r.stderr, want) {
		t.Errorf("vssadmin did not use the activated vssd (%s):\n%s", want, r.stderr)
	}
	recv("READY=1")
	if _, err := os.Lstat(filepath.Join(dir, "unused.sock")); err == nil {
		t.Error("the activated vssd listened on its own socket too")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	recv("STOPPING=1")
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("vssd after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("vssd did not stop")
	}
}

// TestVssdUsage checks the command line.
func TestVssdUsage(t *testing.T) {
	b := build(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--version"}, 0, "vssd devel"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"--log-level", "loud", "--state-dir", "/nonexistent"}, 2, "log_level must be"},
		{[]string{"--config", "/nonexistent/vssd.toml"}, 2, "E_INVALIDARG"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(b.vssd, tc.args...)
			cmd.Env = cleanEnv()
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}
