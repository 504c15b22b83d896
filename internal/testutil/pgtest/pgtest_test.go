package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartStopStartOn(t *testing.T) {
	Require(t)
	srv := Start(t, Options{Settings: map[string]string{"application_name": "pgtest's"}})
	ctx := context.Background()
	c := srv.Connect(t, "postgres")
	var dir, listen, app string
	if err := c.QueryRow(ctx, "SELECT current_setting('data_directory'), current_setting('listen_addresses'), current_setting('application_name')").Scan(&dir, &listen, &app); err != nil {
		t.Fatal(err)
	}
	if dir != srv.DataDir || listen != "" || app != "pgtest's" {
		t.Fatalf("data_directory %q listen_addresses %q application_name %q; want %q, '', pgtest's", dir, listen, app, srv.DataDir)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE t AS SELECT 42 AS v"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(ctx)

	srv.Stop(t)
	if srv.Running() {
		t.Fatal("server runs after Stop")
	}
	// A copy of the stopped cluster with a stale postmaster.pid: StartOn
	// must fix ownership and mode and start it beside the original.
	cp := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", srv.DataDir, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(cp, "postmaster.pid"), []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cp, 0o755); err != nil {
		t.Fatal(err)
	}
	srv.Start(t)
	other := StartOn(t, cp, Options{TCP: true})
	if other.Port == srv.Port || other.SocketDir == srv.SocketDir {
		t.Fatalf("copy shares port or socket directory with the original")
	}
	var v int
	if err := other.Connect(t, "postgres").QueryRow(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != 42 {
		t.Fatalf("copy: v=%d err=%v", v, err)
	}
	// TCP was asked: 127.0.0.1 answers.
	tc, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", other.Port))
	if err != nil {
		t.Fatalf("TCP: %v", err)
	}
	_ = tc.Close(ctx)
	// The original listens on no TCP port.
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", srv.Port), time.Second); err == nil {
		conn.Close()
		t.Fatal("server without TCP listens on 127.0.0.1")
	}
}

func TestStartOnFailureHasLog(t *testing.T) {
	Require(t)
	// A data directory the server cannot start on: StartOn must fail with
	// the server log (fakeT catches the failure and runs the cleanups).
	srv := Start(t, Options{})
	srv.Stop(t)
	if err := os.WriteFile(filepath.Join(srv.DataDir, "postgresql.auto.conf"), []byte("shared_buffers = 'nonsense'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		defer ft.runCleanups()
		StartOn(ft, srv.DataDir, Options{})
	}()
	<-done
	if !ft.failed {
		t.Fatal("StartOn on a broken cluster did not fail")
	}
	if !strings.Contains(ft.msg, "server log") || !strings.Contains(ft.msg, "shared_buffers") {
		t.Fatalf("failure does not carry the server log:\n%s", ft.msg)
	}
}

// fakeT records a Fatal instead of ending the test.
type fakeT struct {
	testing.TB
	failed   bool
	msg      string
	cleanups []func()
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
func (f *fakeT) Fatal(args ...any) {
	f.failed = true
	f.msg = fmt.Sprint(args...)
	panic("fatal")
}
func (f *fakeT) Helper()             {}
func (f *fakeT) Cleanup(fn func())   { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) TempDir() string     { return f.TB.TempDir() }
func (f *fakeT) Logf(string, ...any) {}
func (f *fakeT) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}
