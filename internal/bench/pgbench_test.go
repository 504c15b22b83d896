package bench

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestPgbench runs the pgbench benchmark alone (about three minutes, as
// root) and prints its rows. It is a benchmark, not a test: it runs only
// when VSS_BENCH_PGBENCH=1.
func TestPgbench(t *testing.T) {
	if os.Getenv("VSS_BENCH_PGBENCH") != "1" {
		t.Skip("set VSS_BENCH_PGBENCH=1 to run the pgbench benchmark")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the pgbench benchmark makes filesystems on loop devices: run it as root")
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fx, err := NewFixtures("/var/tmp", "vssbench-pgbench-", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fx.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	r := &runner{opts: Options{Quick: true, WorkDir: "/var/tmp"}, p: paramsFor(true), log: log,
		svcLog: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), fx: fx}
	rows, err := r.benchPgbench(context.Background())
	var b strings.Builder
	if werr := WriteTable(&b, rows); werr != nil {
		t.Fatal(werr)
	}
	t.Log("\n" + b.String())
	if err != nil {
		t.Fatal(err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
