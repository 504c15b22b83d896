package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })

	t.Setenv(envNotifySocket, "")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("without NOTIFY_SOCKET: sent=%v err=%v, want nothing", sent, err)
	}

	t.Setenv(envNotifySocket, path)
	sent, err := Notify("READY=1\nSTATUS=ok")
	if !sent || err != nil {
		t.Fatalf("Notify: sent=%v err=%v", sent, err)
	}
	buf := make([]byte, 256)
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "READY=1\nSTATUS=ok" {
		t.Errorf("received %q", got)
	}

	t.Setenv(envNotifySocket, "relative")
	if _, err := Notify("READY=1"); err == nil {
		t.Error("a relative NOTIFY_SOCKET was accepted")
	}
}

func TestListenersNotActivated(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pid, fds string
	}{
		{"no variables", "", ""},
		{"another process", strconv.Itoa(os.Getpid() + 1), "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envListenPID, tc.pid)
			t.Setenv(envListenFDs, tc.fds)
			ls, err := Listeners()
			if err != nil || len(ls) != 0 {
				t.Errorf("Listeners() = %v, %v; want none", ls, err)
			}
			if os.Getenv(envListenPID) != "" || os.Getenv(envListenFDs) != "" {
				t.Error("the variables are still set")
			}
		})
	}
	t.Run("bad count", func(t *testing.T) {
		t.Setenv(envListenPID, strconv.Itoa(os.Getpid()))
		t.Setenv(envListenFDs, "x")
		if _, err := Listeners(); err == nil {
			t.Error("LISTEN_FDS=x accepted")
		}
	})
}
