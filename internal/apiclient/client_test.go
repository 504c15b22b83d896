package apiclient

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDialNoDaemon(t *testing.T) {
	dir := t.TempDir()
	// A socket nobody serves (a daemon that died), and a listener that
	// accepts but never speaks gRPC.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	mute := filepath.Join(dir, "mute.sock")
	ml, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ml.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	for _, tc := range []struct {
		name, path string
		within     time.Duration
	}{
		{"no socket", filepath.Join(dir, "missing.sock"), 500 * time.Millisecond},
		{"stale socket", stale, 500 * time.Millisecond},
		{"mute server", mute, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := Dial(context.Background(), tc.path, 300*time.Millisecond)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, ErrNoDaemon) {
				t.Errorf("Dial: %v, want ErrNoDaemon", err)
			}
			if took := time.Since(start); took > tc.within {
				t.Errorf("Dial took %v to fail", took)
			}
		})
	}
}

func TestSameDir(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.Mkdir(a, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{a, a, true},
		{a, a + "/", true},
		{a, link, true},
		{a, dir, false},
		{filepath.Join(dir, "x"), filepath.Join(dir, "x"), true},
		{filepath.Join(dir, "x"), filepath.Join(dir, "y"), false},
	} {
		if got := sameDir(tc.a, tc.b); got != tc.want {
			t.Errorf("sameDir(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
