package consistency

// The classic experiment for SQLite. It shares the combinations, the
// clients, the sets and the judgement of a shadow's rows with the MariaDB
// tests (the mdb… pieces of mariadb_test.go).

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/sqlite"
)

// liteBusy is the clients' busy timeout: long enough to wait out any
// freeze, so that no INSERT fails.
const liteBusy = 30 * time.Second

// liteDSN returns the data source name of the database file path with the
// given pragmas ("busy_timeout(30000)").
func liteDSN(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// liteOpen opens a pool of one connection to the database file path (made
// if missing), with a busy timeout of busy, and closes it when the test
// ends.
func liteOpen(t *testing.T, path string, busy time.Duration) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", liteDSN(path, fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds())))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// liteCreate makes a WAL database at path with the table rows(id
// auto-increment, t timestamp, client int).
func liteCreate(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", liteDSN(path, "busy_timeout(1000)"))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	for _, q := range []string{
		"PRAGMA journal_mode = WAL",
		`CREATE TABLE "rows" (id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT NOT NULL, client INTEGER NOT NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode of %s: %q, %v; want wal", path, mode, err)
	}
}

// liteInsert is the clients' INSERT: the timestamp is the database's clock
// with milliseconds.
const liteInsert = `INSERT INTO "rows" (t, client) VALUES (strftime('%Y-%m-%d %H:%M:%f', 'now'), ?)`

// The SQLite clients run in processes of their own, as applications do:
// a client in the service's process would share it with the service, and
// a store into the memory-mapped -shm file of a frozen filesystem blocks
// in a page fault where Go cannot preempt it, which stalls the whole
// process (its garbage collector waits for every goroutine) until the
// freeze guard thaws at its deadline. Measured here: one set in forty
// failed with VSS_E_HOLD_WRITES_TIMEOUT that way.

// The environment of a client process (TestLiteClientHelper).
const (
	liteEnvDB     = "VSS_LITE_CLIENT_DB"
	liteEnvClient = "VSS_LITE_CLIENT_ID"
	liteEnvPeriod = "VSS_LITE_CLIENT_PERIOD"
)

// liteStartClients starts one client process per period, inserting into
// the database at path. A client reports every row on its standard output
// and stops after its current INSERT when its standard input closes
// (halt); it is killed should it not stop within a minute, and with the
// test binary.
func liteStartClients(t *testing.T, path string, periods ...time.Duration) *mdbClients {
	t.Helper()
	var stdins []io.Closer
	var procs []*os.Process
	cs := &mdbClients{stopping: func() {
		for _, in := range stdins {
			in.Close()
		}
		time.AfterFunc(time.Minute, func() {
			for _, p := range procs {
				_ = p.Kill()
			}
		})
	}}
	for i, period := range periods {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLiteClientHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), liteEnvDB+"="+path, fmt.Sprintf("%s=%d", liteEnvClient, i), liteEnvPeriod+"="+period.String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start client %d: %v", i, err)
		}
		stdins = append(stdins, stdin)
		procs = append(procs, cmd.Process)
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if msg, ok := strings.CutPrefix(line, "error "); ok {
					cs.fail(fmt.Errorf("client %d: %s", i, msg))
					continue
				}
				var id, sent, committed int64
				if n, _ := fmt.Sscanf(line, "row %d %d %d", &id, &sent, &committed); n == 3 {
					cs.record(mdbRow{id: id, client: i, sent: time.Unix(0, sent), committed: time.Unix(0, committed)})
				}
			}
			if err := cmd.Wait(); err != nil {
				cs.fail(fmt.Errorf("client %d: %w\n%s", i, err, stderr.String()))
			}
		}()
	}
	t.Cleanup(cs.halt)
	return cs
}

// TestLiteClientHelper is the body of a client process of
// liteStartClients; run by go test itself, it does nothing. It inserts a
// row every period (autocommit, waiting out locks with its busy timeout)
// and writes "row ID SENT COMMITTED" per row (times in Unix nanoseconds:
// the INSERT was sent, its commit returned), or "error MESSAGE", until its
// standard input closes.
func TestLiteClientHelper(t *testing.T) {
	path := os.Getenv(liteEnvDB)
	if path == "" {
		return
	}
	period, err := time.ParseDuration(os.Getenv(liteEnvPeriod))
	if err != nil {
		fmt.Printf("error period: %v\n", err)
		return
	}
	var client int
	if _, err := fmt.Sscan(os.Getenv(liteEnvClient), &client); err != nil {
		fmt.Printf("error client: %v\n", err)
		return
	}
	var stop atomic.Bool
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	db := liteOpen(t, path, liteBusy)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for !stop.Load() {
		sent := time.Now()
		res, err := db.Exec(liteInsert, client)
		committed := time.Now()
		var id int64
		if err == nil {
			id, err = res.LastInsertId()
		}
		if err != nil {
			fmt.Printf("error INSERT sent at %s: %s\n", sent.Format(time.StampMicro), strings.ReplaceAll(err.Error(), "\n", " "))
			return
		}
		fmt.Printf("row %d %d %d\n", id, sent.UnixNano(), committed.UnixNano())
		<-tick.C
	}
}

// liteWriterSource registers an SQLite writer of the given databases as a
// built-in writer whose failures fail the set.
func liteWriterSource(log *slog.Logger, paths ...string) service.WriterSource {
	return func(ctx context.Context, cfg config.Config) ([]writers.Registration, []error) {
		w, err := sqlite.New(sqlite.Config{Name: "app", Paths: paths}, log)
		if err != nil {
			return nil, []error{fmt.Errorf("sqlite writer: %w", err)}
		}
		return []writers.Registration{{Writer: w, Kind: writers.KindBuiltIn, Policy: writers.PolicyFail}}, nil
	}
}

// TestSQLiteConsistency is the classic experiment for SQLite, per
// provider: two clients insert rows into a WAL database on the volume
// while shadow copy sets are made through the service, with the SQLite
// writer (which holds the write lock from Freeze to Thaw) and without
// writers; a copy of each shadow's database files must pass PRAGMA
// integrity_check and hold every row committed before the set began and
// none sent after it returned.
//
// With the writer this must hold for every provider, atomic or not: no
// commit can happen while the files are copied and the WAL holds only
// committed frames. Without writers it is asserted for btrfs only (a
// crash-consistent snapshot, which SQLite recovers from); the other
// outcomes are recorded, one SUMMARY line per combination and mode.
func TestSQLiteConsistency(t *testing.T) {
	var summaries []string
	for _, c := range mdbCombos {
		t.Run(c.name, func(t *testing.T) {
			summaries = append(summaries, liteRunCombo(t, c)...)
		})
	}
	for _, s := range summaries {
		t.Log(s)
	}
}

// liteMust reports whether a shadow of combination c must be consistent:
// with the writer always, without writers where the shadow is a btrfs
// snapshot.
func liteMust(c mdbCombo, withWriter bool) bool { return withWriter || c.provider == "btrfs" }

// liteRunCombo runs the experiment on one combination and returns its
// summary lines.
func liteRunCombo(t *testing.T, c mdbCombo) []string {
	b := mdbNewBed(t, c)
	path := filepath.Join(b.vol.Dir, "lite", "app.db")
	liteCreate(t, path)
	svc := mdbOpenService(t, liteWriterSource(mdbLogger(t, slog.LevelWarn), path), sqlite.WriterName)
	b.associate(t, svc)
	rel, err := filepath.Rel(b.vol.Dir, path)
	if err != nil {
		t.Fatal(err)
	}
	return mdbRun(t, mdbExperiment{
		db: "sqlite", startedWord: "opened", bed: b, svc: svc,
		startClients: func(t *testing.T) *mdbClients { return liteStartClients(t, path, mdbPeriods...) },
		check: func(t *testing.T, s *mdbSet, rows []mdbRow, must bool) mdbOutcome {
			return liteCheck(t, filepath.Join(s.shadow.ShadowPath, rel), s, rows, must)
		},
		must: func(withWriter bool) bool { return liteMust(c, withWriter) },
	})
}

// liteCheck copies the database files of a shadow (the database and its
// -wal, -shm and -journal, where there) to the root filesystem, opens the
// copy (which recovers it from its WAL), runs PRAGMA integrity_check and
// checks its rows against the clients' rows. A failure is an error where
// must, a log line otherwise.
func liteCheck(t *testing.T, shadowDB string, s *mdbSet, rows []mdbRow, must bool) (o mdbOutcome) {
	report := mdbReport(t, must)
	dst := filepath.Join(t.TempDir(), filepath.Base(shadowDB))
	var copied []string
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		n, err := liteCopyFile(shadowDB+suffix, dst+suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatalf("copy the shadow's database: %v", err)
		}
		copied = append(copied, fmt.Sprintf("%s (%d bytes)", filepath.Base(shadowDB+suffix), n))
	}
	t.Logf("copied %s", strings.Join(copied, ", "))
	db := liteOpen(t, dst, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if msgs, err := liteIntegrity(ctx, db); err != nil || len(msgs) != 1 || msgs[0] != "ok" {
		report("the shadow's database does not pass its integrity check: %v %s", err, strings.Join(mdbFirst(msgs, 20), "; "))
		return o
	}
	o.started = true
	got, problems := liteRows(ctx, db)
	if got != nil {
		p, account := mdbJudge(rows, got, s)
		t.Log(account)
		problems = append(problems, p...)
	}
	if len(problems) > 0 {
		report("the shadow is not consistent:\n  %s", strings.Join(mdbFirst(problems, 20), "\n  "))
		return o
	}
	o.consistent = true
	return o
}

// liteCopyFile copies the file src to dst and returns the bytes copied.
func liteCopyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return n, nil
}

// liteIntegrity runs PRAGMA integrity_check and returns its messages
// ("ok" alone when the database is sound).
func liteIntegrity(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return nil, fmt.Errorf("integrity_check: %w", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return msgs, fmt.Errorf("integrity_check: %w", err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return msgs, fmt.Errorf("integrity_check: %w", err)
	}
	return msgs, nil
}

// liteRows reads the rows (id → client) of a database and compares
// count(*) with them. It returns nil rows when they cannot be read.
func liteRows(ctx context.Context, db *sql.DB) (map[int64]int, []string) {
	rows, err := db.QueryContext(ctx, `SELECT id, client FROM "rows"`)
	if err != nil {
		return nil, []string{fmt.Sprintf("read the table: %v", err)}
	}
	defer rows.Close()
	got := map[int64]int{}
	var problems []string
	for rows.Next() {
		var id int64
		var client int
		if err := rows.Scan(&id, &client); err != nil {
			return nil, []string{fmt.Sprintf("read the table: %v", err)}
		}
		if _, dup := got[id]; dup {
			problems = append(problems, fmt.Sprintf("row %d is more than once in the table", id))
		}
		got[id] = client
	}
	if err := rows.Err(); err != nil {
		return nil, []string{fmt.Sprintf("read the table: %v", err)}
	}
	var count int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "rows"`).Scan(&count); err != nil {
		problems = append(problems, fmt.Sprintf("count(*): %v", err))
	} else if count != len(got) {
		problems = append(problems, fmt.Sprintf("count(*) says %d rows, %d were read", count, len(got)))
	}
	return got, problems
}

// TestSQLiteMissingVolume: with one writer for two databases on two
// volumes, a set that lacks either volume fails with
// VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, naming the database it lacks,
// leaves no shadow and holds no lock (a write to each database succeeds
// at once); a set of both volumes is made afterwards.
func TestSQLiteMissingVolume(t *testing.T) {
	testutil.RequireRoot(t)
	one := testutil.NewFS(t, "ext4", 0)
	two := testutil.NewFS(t, "ext4", 0)
	a := filepath.Join(one.Dir, "lite", "a.db")
	b := filepath.Join(two.Dir, "lite", "b.db")
	liteCreate(t, a)
	liteCreate(t, b)
	svc := mdbOpenService(t, liteWriterSource(mdbLogger(t, slog.LevelWarn), a, b), sqlite.WriterName)
	ctx := context.Background()

	for _, c := range []struct {
		name    string
		volumes []string
		missing string
	}{
		{"without the volume of a.db", []string{two.Dir}, filepath.Dir(a)},
		{"without the volume of b.db", []string{one.Dir}, filepath.Dir(b)},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: c.volumes, Provider: "copy", Context: vss.CtxAppRollback})
			if err == nil {
				t.Fatalf("the set of %v was made: %+v", c.volumes, res.Shadows)
			}
			if got := vsserr.CodeOf(err); got != vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT {
				t.Fatalf("error %v: code %s (0x%08X); want VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT (0x800423F0)", err, got, uint32(got))
			}
			if !strings.Contains(err.Error(), c.missing) {
				t.Errorf("the error does not name %s: %v", c.missing, err)
			}
			t.Logf("refused as it should be: %v", err)
			mdbRequireNoShadow(t, svc, one.Dir, two.Dir)
			liteRequireFree(t, a, b)
		})
	}

	t.Run("with both volumes", func(t *testing.T) {
		res, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{one.Dir, two.Dir}, Provider: "copy", Context: vss.CtxAppRollback})
		if err != nil {
			t.Fatalf("a set of both volumes after the refused ones: %v", err)
		}
		ids := make([]uuid.UUID, 0, len(res.Shadows))
		for _, sh := range res.Shadows {
			ids = append(ids, sh.ID)
		}
		if _, err := svc.DeleteShadows(ctx, ids); err != nil {
			t.Errorf("delete the shadows: %v", err)
		}
		if len(res.Shadows) != 2 || len(res.Writers) != 1 {
			t.Fatalf("set: %d shadows, writers %+v; want 2 shadows and the SQLite writer", len(res.Shadows), res.Writers)
		}
		liteRequireFree(t, a, b)
	})
}

// liteRequireFree fails the test unless a write to each database succeeds
// at once, from a new connection without a busy timeout: nobody holds a
// lock on it.
func liteRequireFree(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		db, err := sql.Open("sqlite", liteDSN(p, "busy_timeout(0)"))
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		_, err = db.Exec(liteInsert, 0)
		db.Close()
		if err != nil {
			t.Errorf("a write to %s does not succeed at once: %v", p, err)
		}
	}
}
