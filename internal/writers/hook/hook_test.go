package hook_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/hook"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// childEnv makes the test binary play the service: it freezes through the
// hook writer of the file it names and waits to be killed. (The package's
// init has already turned the binary into a guard if _VSS_HOOK_GUARD is
// set: that happens before TestMain.)
const childEnv = "HOOK_WRITER_TEST_CHILD"

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnv); p != "" {
		os.Exit(child(p))
	}
	os.Exit(m.Run())
}

func child(path string) int {
	b, err := os.ReadFile(path)
	if err == nil {
		var cfg *hook.Config
		if cfg, err = hook.Parse(path, b); err == nil {
			w := hook.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
			err = w.Handle(context.Background(), writers.Freeze, &writers.Request{Deadline: time.Now().Add(time.Minute)})
		}
	}
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	fmt.Println("FROZEN")
	time.Sleep(time.Hour)
	return 0
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// hookFile is a writer file whose freeze and thaw run shell scripts.
func hookFile(freeze, thaw string) string {
	return fmt.Sprintf("name = \"test\"\ntimeout = \"10s\"\n[events]\nfreeze = { command = [\"/bin/sh\", \"-c\", %q] }\nthaw = { command = [\"/bin/sh\", \"-c\", %q] }\n", freeze, thaw)
}

func newWriter(t *testing.T, file string) *hook.Writer {
	t.Helper()
	cfg, err := hook.Parse("test.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	w := hook.New(cfg, slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { w.Close() })
	return w
}

// startVictim starts the process the hooks stop and continue.
func startVictim(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// victimFile is a writer file that stops pid on Freeze and continues it
// on Thaw.
func victimFile(pid int) string {
	return hookFile(fmt.Sprintf("kill -STOP %d", pid), fmt.Sprintf("kill -CONT %d", pid))
}

// procStat returns a process's state letter and process group.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return 0, 0, false
	}
	pgrp, _ = strconv.Atoi(f[2])
	return f[0][0], pgrp, true
}

func stopped(pid int) bool {
	s, _, _ := procStat(pid)
	return s == 'T'
}

// isStopped waits a little for pid to be stopped (a signal is delivered
// asynchronously) and reports whether it is.
func isStopped(pid int) bool {
	end := time.Now().Add(time.Second)
	for !stopped(pid) {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// waitRunning waits until pid is no longer stopped and returns when.
func waitRunning(t *testing.T, pid int, limit time.Duration) time.Time {
	t.Helper()
	end := time.Now().Add(limit)
	for stopped(pid) {
		if time.Now().After(end) {
			t.Fatalf("process %d still stopped after %v", pid, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Now()
}

func handle(t *testing.T, w *hook.Writer, ev writers.Event, req *writers.Request) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Handle(ctx, ev, req); err != nil {
		t.Fatalf("%v: %v", ev, err)
	}
}

func TestFreezeThaw(t *testing.T) {
	pid := startVictim(t)
	w := newWriter(t, victimFile(pid))
	req := &writers.Request{Deadline: time.Now().Add(30 * time.Second)}
	start := time.Now()
	handle(t, w, writers.Freeze, req)
	t.Logf("Freeze (guard start and freeze command) took %v", time.Since(start))
	if !isStopped(pid) {
		t.Fatal("the freeze hook did not stop the process")
	}
	start = time.Now()
	handle(t, w, writers.Thaw, req)
	t.Logf("Thaw through the guard took %v", time.Since(start))
	waitRunning(t, pid, time.Second)
	// A second Thaw runs the thaw command directly: harmless.
	handle(t, w, writers.Thaw, req)
}

// TestFreezeDeadline: no Thaw comes; the guard continues the process at
// the deadline and Thaw reports the time-out.
func TestFreezeDeadline(t *testing.T) {
	pid := startVictim(t)
	w := newWriter(t, victimFile(pid))
	req := &writers.Request{SetID: uuid.New(), Deadline: time.Now().Add(time.Second)}
	handle(t, w, writers.Freeze, req)
	if !isStopped(pid) {
		t.Fatal("not stopped")
	}
	at := waitRunning(t, pid, 10*time.Second)
	late := at.Sub(req.Deadline)
	t.Logf("continued %v after the freeze deadline", late)
	if late < 0 || late > 300*time.Millisecond {
		t.Errorf("continued %v after the deadline", late)
	}
	err := w.Handle(context.Background(), writers.Thaw, req)
	if vsserr.CodeOf(err) != vsserr.VSS_E_WRITERERROR_TIMEOUT {
		t.Errorf("Thaw after the deadline: %v, want VSS_E_WRITERERROR_TIMEOUT", err)
	}
	for i := 0; i < 2; i++ {
		if err := w.Handle(context.Background(), writers.Abort, req); err != nil {
			t.Errorf("Abort: %v", err)
		}
	}
}

// TestKilledService runs the service side in a child process, which
// freezes and is killed with SIGKILL: the guard continues the process.
func TestKilledService(t *testing.T) {
	pid := startVictim(t)
	file := filepath.Join(t.TempDir(), "victim.toml")
	if err := os.WriteFile(file, []byte(victimFile(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+file)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "FROZEN" {
		t.Fatalf("child: %q", line)
	}
	if !isStopped(pid) {
		t.Fatal("not stopped")
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	at := waitRunning(t, pid, 5*time.Second)
	cmd.Wait()
	t.Logf("process continued %v after SIGKILL of the service", at.Sub(killed))
	if at.Sub(killed) > time.Second {
		t.Errorf("continued only %v after the service was killed", at.Sub(killed))
	}
}

// groupAlive reports whether a live (not zombie) process is in group pgid.
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, g, ok := procStat(pid); ok && g == pgid && s != 'Z' && s != 'X' {
			return true
		}
	}
	return false
}

// TestHangingHook: a command that does not end is killed, with its whole
// process group, at its timeout or at ctx's deadline.
func TestHangingHook(t *testing.T) {
	for _, c := range []struct {
		name    string
		timeout string
		ctx     time.Duration
		limit   time.Duration
	}{
		{"own timeout", "500ms", 30 * time.Second, 500 * time.Millisecond},
		{"ctx deadline", "10s", 400 * time.Millisecond, 400 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			file := fmt.Sprintf("name = \"hang\"\n[events]\nprepare-snapshot = { command = [\"/bin/sh\", \"-c\", %q, \"sh\", %q], timeout = %q }\n",
				`echo $$ > "$1"; sleep 1000 & sleep 1000; wait`, pidFile, c.timeout)
			w := newWriter(t, file)
			ctx, cancel := context.WithTimeout(context.Background(), c.ctx)
			defer cancel()
			start := time.Now()
			err := w.Handle(ctx, writers.PrepareSnapshot, &writers.Request{})
			took := time.Since(start)
			t.Logf("failed after %v: %v", took, err)
			if vsserr.CodeOf(err) != vsserr.VSS_E_WRITERERROR_TIMEOUT {
				t.Fatalf("error %v, want VSS_E_WRITERERROR_TIMEOUT", err)
			}
			if took < c.limit || took > c.limit+time.Second {
				t.Errorf("returned after %v, limit %v", took, c.limit)
			}
			b, err := os.ReadFile(pidFile)
			if err != nil {
				t.Fatal(err)
			}
			pgid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			end := time.Now().Add(2 * time.Second)
			for groupAlive(pgid) {
				if time.Now().After(end) {
					syscall.Kill(-pgid, syscall.SIGKILL)
					t.Fatalf("process group %d still alive", pgid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		name   string
		script string
		want   vsserr.Code
		says   []string
	}{
		{"success", "echo fine", vsserr.S_OK, nil},
		{"tempfail", "echo busy >&2; exit 75", vsserr.VSS_E_WRITERERROR_RETRYABLE, []string{"exit status 75", "busy"}},
		{"failure", "echo first >&2; echo 'it broke' >&2; exit 3", vsserr.VSS_E_WRITERERROR_NONRETRYABLE, []string{"exit status 3", "stderr: first\nit broke"}},
		{"stdout only", "echo 'on stdout'; exit 1", vsserr.VSS_E_WRITERERROR_NONRETRYABLE, []string{"exit status 1", "stdout: on stdout"}},
		{"signal", "kill -TERM $$", vsserr.VSS_E_WRITERERROR_NONRETRYABLE, []string{"killed by signal terminated"}},
		{"long output", "yes 0123456789 | head -c 100000 >&2; echo LAST >&2; exit 2", vsserr.VSS_E_WRITERERROR_NONRETRYABLE, []string{"exit status 2", "LAST"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := fmt.Sprintf("name = \"codes\"\n[events]\npost-snapshot = { command = [\"/bin/sh\", \"-c\", %q] }\n", c.script)
			w := newWriter(t, file)
			err := w.Handle(context.Background(), writers.PostSnapshot, &writers.Request{})
			if vsserr.CodeOf(err) != c.want {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if err != nil && len(err.Error()) > 4096+300 {
				t.Errorf("error is %d bytes long: more than the output's last 4 KiB", len(err.Error()))
			}
		})
	}
}

// TestFailedFreezeThaws: a freeze command that fails after stopping the
// process has it continued at once; Abort then runs the abort command.
func TestFailedFreezeThaws(t *testing.T) {
	pid := startVictim(t)
	mark := filepath.Join(t.TempDir(), "aborted")
	file := hookFile(fmt.Sprintf("kill -STOP %d; exit 3", pid), fmt.Sprintf("kill -CONT %d", pid)) +
		fmt.Sprintf("abort = { command = [\"/bin/sh\", \"-c\", %q] }\n", "echo x >> "+mark)
	w := newWriter(t, file)
	req := &writers.Request{SetID: uuid.New(), Deadline: time.Now().Add(30 * time.Second)}
	if err := w.Handle(context.Background(), writers.Freeze, req); vsserr.CodeOf(err) != vsserr.VSS_E_WRITERERROR_NONRETRYABLE {
		t.Fatalf("Freeze: %v, want NONRETRYABLE", err)
	}
	waitRunning(t, pid, 2*time.Second)
	for i := 0; i < 2; i++ { // the abort command runs once per set
		handle(t, w, writers.Abort, req)
	}
	if b, _ := os.ReadFile(mark); string(b) != "x\n" {
		t.Errorf("abort command output %q, want one run", b)
	}
}

// TestAbortThaws: Abort after a freeze continues the process and runs the
// abort command.
func TestAbortThaws(t *testing.T) {
	pid := startVictim(t)
	mark := filepath.Join(t.TempDir(), "aborted")
	file := victimFile(pid) + fmt.Sprintf("abort = { command = [\"/bin/sh\", \"-c\", %q] }\n", `echo "$VSS_EVENT" > `+mark)
	w := newWriter(t, file)
	req := &writers.Request{SetID: uuid.New(), Deadline: time.Now().Add(30 * time.Second)}
	handle(t, w, writers.Freeze, req)
	if !isStopped(pid) {
		t.Fatal("not stopped")
	}
	handle(t, w, writers.Abort, req)
	waitRunning(t, pid, time.Second)
	if b, _ := os.ReadFile(mark); string(b) != "abort\n" {
		t.Errorf("abort command wrote %q", b)
	}
}

func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	file := fmt.Sprintf("name = \"env-test\"\n[events]\npost-snapshot = { command = [\"/bin/sh\", \"-c\", %q, \"sh\", %q] }\n",
		`/usr/bin/env -0 > "$1"`, out)
	w := newWriter(t, file)
	set := uuid.MustParse("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
	deadline := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	req := &writers.Request{
		SetID: set, Context: 0x1d, BackupType: vssmeta.BackupFull,
		Volumes:     []string{"/srv", "/var/lib/db"},
		ShadowPaths: map[string]string{"/var/lib/db": "/run/vss/s2", "/srv": "/run/vss/s1"},
		Deadline:    deadline,
	}
	handle(t, w, writers.PostSnapshot, req)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	want := map[string]string{
		"PATH":               "/usr/sbin:/usr/bin:/sbin:/bin",
		"PWD":                "/", // set by the shell: the command runs in /
		"VSS_WRITER":         "env-test",
		"VSS_EVENT":          "post-snapshot",
		"VSS_SET_ID":         set.String(),
		"VSS_CONTEXT":        "29",
		"VSS_BACKUP_TYPE":    "full",
		"VSS_VOLUMES":        "/srv:/var/lib/db",
		"VSS_SHADOW_PATHS":   "/srv=/run/vss/s1\n/var/lib/db=/run/vss/s2",
		"VSS_SHADOW_0":       "/srv=/run/vss/s1",
		"VSS_SHADOW_1":       "/var/lib/db=/run/vss/s2",
		"VSS_DEADLINE":       "2030-01-02T03:04:05Z",
		"VSS_RESTORE_TARGET": "",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("environment (-want +got):\n%s", d)
	}
}

// TestUser runs a command as another user.
func TestUser(t *testing.T) {
	testutil.RequireRoot(t)
	file := "name = \"as-nobody\"\nuser = \"nobody\"\n[events]\npre-restore = { command = [\"/bin/sh\", \"-c\", \"id -u >&2; exit 3\"] }\n"
	w := newWriter(t, file)
	err := w.Handle(context.Background(), writers.PreRestore, &writers.Request{})
	if err == nil || !strings.Contains(err.Error(), "stderr: 65534") {
		t.Errorf("error %v, want one showing uid 65534", err)
	}
	file = "name = \"as-nobody\"\nuser = \"no-such-user-here\"\n[events]\npre-restore = { command = [\"/bin/true\"] }\n"
	w = newWriter(t, file)
	if err := w.Handle(context.Background(), writers.PreRestore, &writers.Request{}); vsserr.CodeOf(err) != vsserr.VSS_E_WRITERERROR_NONRETRYABLE {
		t.Errorf("unknown user: %v, want NONRETRYABLE", err)
	}
}

func TestIdentify(t *testing.T) {
	file := fullFile + "backup-complete = { command = [\"/bin/true\"] }\npost-restore = { command = [\"/bin/true\"] }\n"
	w := newWriter(t, file)
	if w.OnError() != "crash-consistent" {
		t.Errorf("OnError() = %q", w.OnError())
	}
	got, err := w.Identify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := w.Config()
	want := &vssmeta.WriterMetadata{
		WriterID: cfg.ClassID, InstanceID: cfg.InstanceID, Name: "nginx-cache", InstanceName: "main",
		Usage: vssmeta.UsageSystemService, Source: vssmeta.SourceNonTransactedDB,
		Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace, WriterRestore: vssmeta.WriterRestoreAlways},
	}
	for _, c := range cfg.Components {
		c.NotifyOnBackupComplete = true
		want.Components = append(want.Components, c)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Identify (-want +got):\n%s", d)
	}
	if err := w.Handle(context.Background(), writers.Identify, nil); vsserr.CodeOf(err) != vsserr.E_INVALIDARG {
		t.Errorf("Handle(Identify): %v", err)
	}
}
