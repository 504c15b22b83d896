package diskshadow_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/linuxvss/vss/internal/testutil"
)

// term is a process on a pseudo-terminal and what it printed.
type term struct {
	t    *testing.T
	pty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startTerm(t *testing.T, cmd *exec.Cmd) *term {
	t.Helper()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 250})
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, pty: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(tm.done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return // EIO once the process is gone
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		f.Close()
		<-tm.done
	})
	return tm
}

func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// waitFor waits until the output holds sub n times.
func (tm *term) waitFor(sub string, n int) {
	tm.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(tm.output(), sub) < n {
		if time.Now().After(deadline) {
			tm.t.Fatalf("waiting for %q (%d times); the terminal shows:\n%s", sub, n, tm.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.pty, s); err != nil {
		tm.t.Fatal(err)
	}
}

// TestInteractivePty drives the interactive shell on a pseudo-terminal:
// commands, an error that does not end the session, history recall with
// the up arrow, exit; the history file keeps the commands.
func TestInteractivePty(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	testutil.WriteFile(t, vol.Dir, "f.txt", []byte("x\n"))
	e := newEnv(t, "")
	home := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "session.log")
	cmd := exec.Command(diskshadowBin(t), append(e.args(), "-l", logFile)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "TERM=xterm")
	tm := startTerm(t, cmd)

	tm.waitFor("DISKSHADOW> ", 1)
	tm.send("add volume " + vol.Dir + "\r")
	tm.send("frobnicate the volume\r")
	tm.waitFor(`Error: unknown command "frobnicate": type HELP for the list of commands`, 1)
	tm.send("create\r")
	tm.waitFor("Number of shadow copies listed: 1", 1)
	tm.send("list shadows all\r")
	tm.waitFor("Querying all shadow copies on the computer ...", 1)
	tm.waitFor("Number of shadow copies listed: 1", 2)
	time.Sleep(200 * time.Millisecond)
	tm.send("\x1b[A") // up arrow: the last command again
	time.Sleep(200 * time.Millisecond)
	tm.send("\r")
	tm.waitFor("Querying all shadow copies on the computer ...", 2)
	tm.waitFor("Number of shadow copies listed: 1", 3)
	tm.send("exit\r")
	select {
	case <-tm.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("diskshadow did not exit; the terminal shows:\n%s", tm.output())
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d; the terminal shows:\n%s", code, tm.output())
	}
	t.Logf("the terminal showed:\n%s", tm.output())

	hist, err := os.ReadFile(filepath.Join(home, ".diskshadow_history"))
	if err != nil {
		t.Fatal(err)
	}
	// readline keeps a repeated command once.
	want := "add volume " + vol.Dir + "\nfrobnicate the volume\ncreate\nlist shadows all\nexit\n"
	if string(hist) != want {
		t.Errorf("history file:\n%s\nwant:\n%s", hist, want)
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "log", string(log), "Linux DiskShadow version 1.0", "DISKSHADOW> create\n", `Error: unknown command "frobnicate"`,
		"Alias VSS_SHADOW_1 for shadow ID {", "Number of shadow copies listed: 1")
	if n := len(e.shadows(t)); n != 0 {
		t.Errorf("%d volatile shadow copies left after exit", n)
	}
}

// TestInteractiveSignals: Ctrl-C stops the running command, not the
// session; SIGTERM at the prompt ends the session (the volatile shadow
// copies are released) and gives the terminal back.
func TestInteractiveSignals(t *testing.T) {
	vol := testutil.NewFS(t, "btrfs", 0)
	e := newEnv(t, "")
	cmd := exec.Command(diskshadowBin(t), e.args()...)
	cmd.Env = append(os.Environ(), "HOME=", "TERM=xterm")
	tm := startTerm(t, cmd)
	tm.waitFor("DISKSHADOW> ", 1)
	tm.send("add volume " + vol.Dir + "\r")
	tm.send("create\r")
	tm.waitFor("Number of shadow copies listed: 1", 1)
	tm.send("exec /bin/sleep 60\r")
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	tm.send("\x03") // Ctrl-C
	tm.waitFor("Error: exec /bin/sleep: ", 1)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Ctrl-C took %v to stop the command", d)
	}
	tm.send("list shadows all\r")
	tm.waitFor("Number of shadow copies listed: 1", 2)
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tm.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("diskshadow did not exit on SIGTERM; the terminal shows:\n%s", tm.output())
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d after SIGTERM, want 1", code)
	}
	t.Logf("the terminal showed:\n%s", tm.output())
	mustContain(t, "terminal", tm.output(), "Stopped: ending the session.")
	if n := len(e.shadows(t)); n != 0 {
		t.Errorf("%d volatile shadow copies left after SIGTERM", n)
	}
}
