package mariadbtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"
)

func TestStartStopRestart(t *testing.T) {
	Require(t)
	s := Start(t, Options{Settings: map[string]string{"innodb_buffer_pool_size": "32M"}})
	db := s.DB(t, "")
	if _, err := db.Exec("CREATE DATABASE d"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE d.t (x int) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO d.t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	var flush, dir, sock string
	if err := db.QueryRow("SELECT @@innodb_flush_log_at_trx_commit, @@datadir, @@socket").Scan(&flush, &dir, &sock); err != nil {
		t.Fatal(err)
	}
	if flush != "1" || filepath.Clean(dir) != s.DataDir || sock != s.Socket {
		t.Errorf("server runs with flush=%s datadir=%s socket=%s; want 1 %s %s", flush, dir, sock, s.DataDir, s.Socket)
	}
	if !s.Running() {
		t.Fatal("Running() = false for a started server")
	}
	s.Stop(t)
	if s.Running() {
		t.Fatal("Running() = true after Stop")
	}
	if err := ping(s, time.Second); err == nil {
		t.Fatal("the server answers after Stop")
	}
	s.Start(t)
	var n int
	if err := s.DB(t, "d").QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after restart: %d rows, %v; want 2", n, err)
	}
}

func TestStartOnCopy(t *testing.T) {
	Require(t)
	a := Start(t, Options{})
	if _, err := a.DB(t, "").Exec("CREATE DATABASE d"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB(t, "").Exec("CREATE TABLE d.t (x int) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB(t, "").Exec("INSERT INTO d.t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	// A copy of a running server (crash-consistent enough here: nothing
	// writes) with a stale pid file and socket in it.
	dst := filepath.Join(t.TempDir(), "copy")
	testutil.Run(t, "cp", "-a", a.DataDir, dst)
	if err := os.WriteFile(filepath.Join(dst, "old.pid"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := StartOn(t, dst, Options{TCP: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "old.pid")); !os.IsNotExist(err) {
		t.Errorf("stale pid file still there: %v", err)
	}
	var x int
	if err := b.DB(t, "d").QueryRow("SELECT x FROM t").Scan(&x); err != nil || x != 7 {
		t.Fatalf("copy: x=%d, %v; want 7", x, err)
	}
	// TCP works too.
	if b.Port == 0 {
		t.Fatal("TCP asked, no port")
	}
	if out, err := exec.Command("mariadb", "--no-defaults", "-h", "127.0.0.1", "-P",
		strconv.Itoa(b.Port), "-uroot", "-N", "-e", "SELECT 1").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("TCP query: %v %s", err, out)
	}
}

func TestStartOnBadDirReportsLog(t *testing.T) {
	Require(t)
	dir := t.TempDir()
	// Not a data directory: InnoDB creates new files, but the grant tables
	// are missing, so the server refuses to run.
	_, err := StartOn(t, dir, Options{})
	if err == nil {
		t.Fatal("StartOn on an empty directory succeeded")
	}
	if !strings.Contains(err.Error(), "error log") || !strings.Contains(err.Error(), "mysql.") {
		t.Errorf("the error does not carry the server's log:\n%v", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
}

// TestForeignStartIsStopped: a server started by another program (the
// writer's start command) from Command() is stopped by the cleanup, found
// through its pid file.
func TestForeignStartIsStopped(t *testing.T) {
	Require(t)
	s := Start(t, Options{})
	s.Stop(t)
	argv := s.Command()
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(StartTimeout)
	for ping(s, time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("foreign server did not answer:\n%s", s.ErrorLogText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !s.Running() {
		t.Fatal("Running() = false for a server started from Command()")
	}
	s.Stop(t)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("foreign server still running after Stop")
	}
}

// ping asks srv whether it answers within d.
func ping(srv *Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return srv.Ping(ctx)
}
