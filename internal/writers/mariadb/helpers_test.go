package mariadb_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/mariadbtest"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/mariadb"
)

// newWriter makes a writer for srv and closes it when the test ends.
func newWriter(t *testing.T, srv *mariadbtest.Server, cfg mariadb.Config) *mariadb.Writer {
	t.Helper()
	cfg.DSN = srv.DSN("")
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	w, err := mariadb.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close writer: %v", err)
		}
	})
	return w
}

// testWriter sends the writer's log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// handle delivers an event with its own time limit.
func handle(t *testing.T, w *mariadb.Writer, ev writers.Event, req *writers.Request, limit time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return w.Handle(ctx, ev, req)
}

// mustHandle delivers an event and fails the test if it fails.
func mustHandle(t *testing.T, w *mariadb.Writer, ev writers.Event, req *writers.Request) {
	t.Helper()
	if err := handle(t, w, ev, req, 30*time.Second); err != nil {
		t.Fatalf("%s: %v", ev, err)
	}
}

// createTable makes test.rows, which the inserters fill.
func createTable(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS test",
		"CREATE TABLE test.`rows` (id BIGINT AUTO_INCREMENT PRIMARY KEY, t TIMESTAMP(6) NOT NULL, client INT NOT NULL) ENGINE=InnoDB",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rec is one INSERT as its client saw it.
type rec struct {
	id     int64
	client int
	sent   time.Time // the INSERT was sent
	done   time.Time // its commit returned (zero: it failed)
	err    error
}

// inserters are clients that insert a timestamped row at fixed intervals
// (autocommit), each one INSERT at a time.
type inserters struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	recs   []rec
}

// startInserters starts one client per interval; they stop at Stop or when
// the test ends.
func startInserters(t *testing.T, db *sql.DB, intervals ...time.Duration) *inserters {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &inserters{cancel: cancel}
	for i, iv := range intervals {
		in.wg.Add(1)
		go in.run(ctx, db, i+1, iv)
	}
	t.Cleanup(func() { in.Stop() })
	return in
}

func (in *inserters) run(ctx context.Context, db *sql.DB, client int, every time.Duration) {
	defer in.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		r := rec{client: client, sent: time.Now()}
		res, err := db.ExecContext(ctx, "INSERT INTO test.`rows` (t, client) VALUES (NOW(6), ?)", client)
		if err == nil {
			r.done = time.Now()
			r.id, err = res.LastInsertId()
		}
		r.err = err
		in.mu.Lock()
		in.recs = append(in.recs, r)
		in.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Stop stops the clients and returns what they did, by send time.
func (in *inserters) Stop() []rec {
	in.cancel()
	in.wg.Wait()
	return in.Snapshot()
}

// Snapshot returns what the clients did so far, by send time.
func (in *inserters) Snapshot() []rec {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := append([]rec(nil), in.recs...)
	sort.Slice(out, func(i, j int) bool { return out[i].sent.Before(out[j].sent) })
	return out
}

// waitCommitAfter waits until an INSERT sent after from has committed and
// returns its commit time; zero after limit.
func (in *inserters) waitCommitAfter(from time.Time, limit time.Duration) time.Time {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		for _, r := range in.Snapshot() {
			if r.err == nil && !r.sent.Before(from) {
				return r.done
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}
}

// window is one freeze as the test saw it.
type window struct {
	freezeStart time.Time // Freeze was called
	frozen      time.Time // Freeze returned
	thawStart   time.Time // Thaw was called
	thawEnd     time.Time // Thaw returned
}

// committedIn returns the INSERTs whose commit returned in (from, to).
func committedIn(recs []rec, from, to time.Time) []rec {
	var out []rec
	for _, r := range recs {
		if r.err == nil && r.done.After(from) && r.done.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// maxLatency returns the longest INSERT (send to commit) that overlapped
// [from, to], and the longest of the others.
func maxLatency(recs []rec, from, to time.Time) (in, out time.Duration) {
	for _, r := range recs {
		if r.err != nil {
			continue
		}
		d := r.done.Sub(r.sent)
		if r.sent.Before(to) && r.done.After(from) {
			in = max(in, d)
		} else {
			out = max(out, d)
		}
	}
	return in, out
}

// verdict compares the rows of a shadow copy with what the clients saw.
type verdict struct {
	shadowRows       int
	committedBefore  int     // commits that returned before Freeze was called
	missingCommitted []int64 // of those, not in the shadow
	sentAfterThaw    int
	presentAfterThaw []int64 // sent after Thaw returned, yet in the shadow
	unknown          []int64 // in the shadow, but no client saw that ID
	inWindow         int     // INSERTs sent before Thaw returned that committed after Freeze was called
	inWindowPresent  int     // of those, in the shadow
}

func (v verdict) consistent() bool {
	return len(v.missingCommitted) == 0 && len(v.presentAfterThaw) == 0 && len(v.unknown) == 0
}

func (v verdict) String() string {
	return fmt.Sprintf("shadow rows %d; committed before Freeze %d, missing %d; sent after Thaw %d, present %d; "+
		"in the freeze window %d, present %d; unknown IDs %d",
		v.shadowRows, v.committedBefore, len(v.missingCommitted), v.sentAfterThaw, len(v.presentAfterThaw),
		v.inWindow, v.inWindowPresent, len(v.unknown))
}

func judge(recs []rec, ids map[int64]bool, w window) verdict {
	v := verdict{shadowRows: len(ids)}
	known := map[int64]bool{}
	for _, r := range recs {
		if r.err != nil {
			continue
		}
		known[r.id] = true
		switch {
		case r.done.Before(w.freezeStart):
			v.committedBefore++
			if !ids[r.id] {
				v.missingCommitted = append(v.missingCommitted, r.id)
			}
		case r.sent.After(w.thawEnd):
			v.sentAfterThaw++
			if ids[r.id] {
				v.presentAfterThaw = append(v.presentAfterThaw, r.id)
			}
		default:
			v.inWindow++
			if ids[r.id] {
				v.inWindowPresent++
			}
		}
	}
	for id := range ids {
		if !known[id] {
			v.unknown = append(v.unknown, id)
		}
	}
	return v
}

// shadowIDs reads the row IDs of a server started on a shadow copy.
func shadowIDs(t *testing.T, srv *mariadbtest.Server) (map[int64]bool, error) {
	t.Helper()
	db := srv.DB(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT id FROM test.`rows`")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

// countRows counts the committed rows of test.rows (reads are not blocked
// by the freeze).
func countRows(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM test.`rows`").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

// checkTable runs CHECK TABLE on test.rows and returns its verdict.
func checkTable(db *sql.DB) string {
	var table, op, typ, text string
	if err := db.QueryRow("CHECK TABLE test.`rows`").Scan(&table, &op, &typ, &text); err != nil {
		return "CHECK TABLE failed: " + err.Error()
	}
	return typ + ": " + text
}

// recoveryLines returns the error log lines of a server that tell about
// recovery and errors.
func recoveryLines(srv *mariadbtest.Server) []string {
	var out []string
	for _, l := range strings.Split(srv.ErrorLogText(), "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "recover") || strings.Contains(ll, "roll") || strings.Contains(ll, "[error]") ||
			strings.Contains(ll, "in the future") || strings.Contains(ll, "corrupt") || strings.Contains(ll, "[warning] innodb") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// requireNothingHeld fails the test if the server is quiesced: from a
// session of its own, DDL, an INSERT and a whole BACKUP STAGE sequence go
// through without waiting.
func requireNothingHeld(t *testing.T, srv *mariadbtest.Server) {
	t.Helper()
	db := srv.DB(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range []string{
		"SET SESSION lock_wait_timeout = 2",
		"CREATE DATABASE IF NOT EXISTS held",
		"CREATE TABLE held.probe (x int) ENGINE=InnoDB",
		"INSERT INTO held.probe VALUES (1)",
		"DROP TABLE held.probe",
		"BACKUP STAGE START",
		"BACKUP STAGE FLUSH",
		"BACKUP STAGE BLOCK_DDL",
		"BACKUP STAGE BLOCK_COMMIT",
		"BACKUP STAGE END",
	} {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.ExecContext(qctx, q)
		qcancel()
		if err != nil {
			t.Fatalf("the server is still held: %s: %v", q, err)
		}
	}
}

// requireTools skips (fails in CI) without the MariaDB server or tools.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	mariadbtest.Require(t)
	testutil.RequireTools(t, tools...)
}
