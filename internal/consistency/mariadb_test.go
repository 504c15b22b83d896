package consistency

// The classic experiment for MariaDB, and the pieces of the experiment that
// the SQLite tests (sqlite_test.go) share: the combinations, the clients,
// the sets and the judgement of a shadow's rows.
//
// A combination's clients insert without pause while sets are made one
// second apart, alternately with the writer (context app-rollback) and
// without writers (context client-accessible), so that every set has about
// a second of inserts before and after it; then the clients stop and every
// shadow is checked in a subtest of its own. The clients never wait for a
// check, which keeps the default run short; in long mode this goes in
// rounds of mdbRoundReps repetitions, so that the shadows waiting for
// their check do not fill the storage.
//
// The MariaDB clients run in the test's process (they only talk to the
// server over its socket); the SQLite clients run in processes of their
// own (see liteStartClients).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/mariadbtest"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/mariadb"
)

// mdbFSSize is the size of the (sparse) test filesystems: room for a data
// directory and a few complete copies of it.
const mdbFSSize = 1 << 30

// mdbSettings are the options of every MariaDB server of these tests, the
// servers started on shadows included: a small redo log keeps the data
// directory, and so the complete copies, small.
var mdbSettings = map[string]string{"innodb_log_file_size": "16M"}

// mdbPeriods are the clients' periods: one inserts every 100 ms, one every
// 10 ms.
var mdbPeriods = []time.Duration{100 * time.Millisecond, 10 * time.Millisecond}

// mdbRepetitions is how often each combination repeats the experiment,
// with and without the writer each: 3, or 20 when VSS_TEST_MODE=long.
func mdbRepetitions() int {
	if os.Getenv("VSS_TEST_MODE") == "long" {
		return 20
	}
	return 3
}

// mdbCombo is a provider on its filesystem(s).
type mdbCombo struct {
	name     string
	fstype   string
	provider string
	// storageElsewhere puts the shadow storage on a second filesystem of
	// the same type: the copy provider can then freeze the volume.
	storageElsewhere bool
}

// atomic reports whether the combination's shadow captures the volume at
// one instant: a btrfs snapshot, or a copy whose final pass runs with the
// volume frozen.
func (c mdbCombo) atomic() bool { return c.provider == "btrfs" || c.storageElsewhere }

// mdbCombos are the combinations of both databases.
var mdbCombos = []mdbCombo{
	{name: "btrfs", fstype: "btrfs", provider: "btrfs"},
	{name: "reflink-xfs", fstype: "xfs", provider: "reflink"},
	{name: "copy-ext4-storage-elsewhere", fstype: "ext4", provider: "copy", storageElsewhere: true},
	{name: "copy-ext4-storage-same-fs", fstype: "ext4", provider: "copy"},
}

// mdbBed is a combination's filesystems: the volume, and the copy's
// storage elsewhere (nil otherwise).
type mdbBed struct {
	combo   mdbCombo
	vol     *testutil.FS
	storage *testutil.FS
}

// mdbNewBed makes the filesystems of c; they are unmounted and detached
// when the test ends.
func mdbNewBed(t *testing.T, c mdbCombo) *mdbBed {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "cp")
	if c.fstype == "btrfs" {
		testutil.RequireTools(t, "btrfs")
	}
	b := &mdbBed{combo: c, vol: testutil.NewFS(t, c.fstype, mdbFSSize)}
	if c.storageElsewhere {
		b.storage = testutil.NewFS(t, c.fstype, mdbFSSize)
	}
	return b
}

// associate puts the volume's shadow storage on the second filesystem,
// when the combination has one.
func (b *mdbBed) associate(t *testing.T, svc *service.Service) {
	t.Helper()
	if b.storage == nil {
		return
	}
	unbounded, err := config.ParseMaxSize("UNBOUNDED")
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddShadowStorage(context.Background(), b.vol.Dir, b.storage.Dir, unbounded); err != nil {
		t.Fatalf("add shadow storage for %s on %s: %v", b.vol.Dir, b.storage.Dir, err)
	}
}

// mdbOpenService opens a service whose state directory is on the root
// filesystem (never on a test volume) with the writers of src, checks that
// exactly one writer named writerName is registered and stable, and closes
// the service (and so the writer) when the test ends.
func mdbOpenService(t *testing.T, src service.WriterSource, writerName string) *service.Service {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	svc, err := service.Open(context.Background(), service.Options{
		Config: cfg, Log: mdbLogger(t, slog.LevelWarn), WriterSources: []service.WriterSource{src},
	})
	if err != nil {
		t.Fatalf("open the service: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Close(); err != nil {
			t.Errorf("close the service: %v", err)
		}
	})
	ws, err := svc.ListWriters(context.Background())
	if err != nil {
		t.Fatalf("list writers: %v", err)
	}
	if len(ws) != 1 || ws[0].Name != writerName || ws[0].LastHResult != 0 {
		t.Fatalf("writers of the service: %+v; want the %s, stable", ws, writerName)
	}
	return svc
}

// mdbRow is one INSERT as its client saw it.
type mdbRow struct {
	id        int64
	client    int
	sent      time.Time // the INSERT was sent
	committed time.Time // its commit returned
}

// mdbInsertFunc inserts one row for its client (autocommit) and returns
// the row's id.
type mdbInsertFunc func(ctx context.Context) (int64, error)

// mdbClients are clients that insert one row at a time, each at its own
// period, and record every row.
type mdbClients struct {
	stopping func() // asks the clients to stop after their current INSERT
	wg       sync.WaitGroup
	once     sync.Once
	mu       sync.Mutex
	rows     []mdbRow
	errs     []error
}

// mdbStartClients starts one client per period in this process; newInsert
// gives client i its own connection. The clients stop at halt, at the
// latest when the test ends.
func mdbStartClients(t *testing.T, newInsert func(t *testing.T, client int) mdbInsertFunc, periods ...time.Duration) *mdbClients {
	t.Helper()
	var stop atomic.Bool
	cs := &mdbClients{stopping: func() { stop.Store(true) }}
	for i, period := range periods {
		insert := newInsert(t, i)
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for !stop.Load() {
				// A stop never cancels an INSERT: the outcome of every
				// recorded row is known.
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				r := mdbRow{client: i, sent: time.Now()}
				id, err := insert(ctx)
				r.committed = time.Now()
				cancel()
				if err != nil {
					cs.fail(fmt.Errorf("client %d: INSERT sent at %s: %w", i, r.sent.Format(time.StampMicro), err))
					return
				}
				r.id = id
				cs.record(r)
				<-tick.C
			}
		}()
	}
	t.Cleanup(cs.halt)
	return cs
}

// record keeps a row.
func (cs *mdbClients) record(r mdbRow) {
	cs.mu.Lock()
	cs.rows = append(cs.rows, r)
	cs.mu.Unlock()
}

// fail keeps a failure.
func (cs *mdbClients) fail(err error) {
	cs.mu.Lock()
	cs.errs = append(cs.errs, err)
	cs.mu.Unlock()
}

// halt stops the clients and waits for them.
func (cs *mdbClients) halt() {
	cs.once.Do(func() {
		cs.stopping()
		cs.wg.Wait()
	})
}

// failed returns how many clients failed and the first failure.
func (cs *mdbClients) failed() (int, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.errs) == 0 {
		return 0, nil
	}
	return len(cs.errs), cs.errs[0]
}

// recorded returns the rows the clients inserted so far.
func (cs *mdbClients) recorded() []mdbRow {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return slices.Clone(cs.rows)
}

// mdbSet is one set of the experiment.
type mdbSet struct {
	name       string // of the subtest that checks it
	withWriter bool
	before     time.Time // just before CreateShadowSet was called
	after      time.Time // just after it returned
	shadow     catalog.Shadow
	deleted    bool
}

// mdbRoundReps is how many repetitions share one round: the shadows of a
// round are all kept until they are checked, then deleted, which bounds
// the storage the experiment needs whatever the number of repetitions.
const mdbRoundReps = 5

// mdbExperiment is what one database brings to the experiment on one
// combination.
type mdbExperiment struct {
	db          string // "mariadb", "sqlite"
	startedWord string // what "started" means for the summary
	bed         *mdbBed
	svc         *service.Service
	// startClients starts the clients of one round.
	startClients func(t *testing.T) *mdbClients
	// check checks the shadow of one set against the rows of the clients;
	// a failure is an error where must, a log line otherwise.
	check func(t *testing.T, s *mdbSet, rows []mdbRow, must bool) mdbOutcome
	// must says whether the shadows of a mode must be consistent.
	must func(withWriter bool) bool
}

// mdbRun runs the experiment mdbRepetitions() times with and without the
// writer, in rounds of mdbRoundReps: start the clients, make the round's
// sets, stop the clients, check every shadow in a subtest of its own,
// delete the shadows. The rows of earlier rounds take part in the
// judgement of later ones (they were committed long before). It returns
// one summary line per mode.
func mdbRun(t *testing.T, e mdbExperiment) []string {
	n := mdbRepetitions()
	tallies := map[bool]*mdbTally{true: {}, false: {}}
	var rows []mdbRow
	for first := 1; first <= n; first += mdbRoundReps {
		cs := e.startClients(t)
		sets := mdbTakeSets(t, e.svc, e.bed, cs, first, min(mdbRoundReps, n-first+1))
		rows = append(rows, cs.recorded()...)
		for _, s := range sets {
			var o mdbOutcome
			t.Run(s.name, func(t *testing.T) { o = e.check(t, s, rows, e.must(s.withWriter)) })
			tallies[s.withWriter].add(o)
		}
		mdbDeleteSets(t, e.svc, sets)
	}
	var lines []string
	for _, withWriter := range []bool{true, false} {
		line := mdbSummary(e.db, e.bed.combo.name, withWriter, e.must(withWriter), e.startedWord, *tallies[withWriter])
		t.Log(line)
		lines = append(lines, line)
	}
	return lines
}

// mdbTakeSets makes the sets of repetitions first … first+n-1 of the
// volume with the combination's provider, one a second after the clients
// warmed up for a second, alternately with the writer (app-rollback) and
// without writers (client-accessible); it stops the clients a second after
// the last set. The shadows are deleted when the test ends unless
// mdbDeleteSets did it before. It fails the test on a failed INSERT and on
// anything but a set of one shadow of the right provider, with the right
// writers and the right freeze.
func mdbTakeSets(t *testing.T, svc *service.Service, b *mdbBed, cs *mdbClients, first, n int) []*mdbSet {
	t.Helper()
	ctx := context.Background()
	c := b.combo
	time.Sleep(time.Second)
	var sets []*mdbSet
	for rep := first; rep < first+n; rep++ {
		for _, withWriter := range []bool{true, false} {
			req := service.CreateRequest{Volumes: []string{b.vol.Dir}, Provider: c.provider, Context: vss.CtxAppRollback}
			name := fmt.Sprintf("with-writer-%02d", rep)
			if !withWriter {
				req.Context = vss.CtxClientAccessible
				name = fmt.Sprintf("without-writer-%02d", rep)
			}
			before := time.Now()
			res, err := svc.CreateShadowSet(ctx, req)
			after := time.Now()
			if err != nil {
				cs.halt()
				t.Fatalf("%s: create a %s shadow copy set: %v", name, c.provider, err)
			}
			s := &mdbSet{name: name, withWriter: withWriter, before: before, after: after}
			t.Cleanup(func() {
				if !s.deleted {
					mdbDeleteSets(t, svc, []*mdbSet{s})
				}
			})
			if len(res.Shadows) != 1 || res.Shadows[0].Provider != c.provider {
				for _, sh := range res.Shadows {
					if _, err := svc.DeleteShadows(context.Background(), []uuid.UUID{sh.ID}); err != nil {
						t.Errorf("delete shadow %s: %v", sh.ID, err)
					}
				}
				s.deleted = true
				cs.halt()
				t.Fatalf("%s: set %+v; want one %s shadow", name, res.Shadows, c.provider)
			}
			s.shadow = res.Shadows[0]
			if withWriter && (len(res.Writers) != 1 || len(res.Dropped) != 0) {
				cs.halt()
				t.Fatalf("%s: writers of the set %+v, dropped %v; want the one writer", name, res.Writers, res.Dropped)
			}
			if !withWriter && len(res.Writers) != 0 {
				cs.halt()
				t.Fatalf("%s: a set without writers had writers: %+v", name, res.Writers)
			}
			if c.provider == "copy" {
				if frozen := len(res.NotFrozen) == 0; frozen != c.storageElsewhere {
					t.Errorf("%s: copy with its storage elsewhere=%v: frozen=%v (not frozen: %v)", name, c.storageElsewhere, frozen, res.NotFrozen)
				}
			}
			if s.shadow.CrashConsistent != c.atomic() {
				t.Errorf("%s: the %s shadow is marked crash-consistent=%v; want %v", name, c.provider, s.shadow.CrashConsistent, c.atomic())
			}
			t.Logf("%s: call %v, writers' freeze %v, hold %v, not frozen %v",
				name, after.Sub(before).Round(time.Millisecond), res.Timings.Freeze.Round(time.Microsecond),
				res.Timings.Hold.Round(time.Microsecond), res.NotFrozen)
			sets = append(sets, s)
			time.Sleep(time.Second)
		}
	}
	cs.halt()
	if n, err := cs.failed(); err != nil {
		t.Fatalf("%d clients failed; the first: %v", n, err)
	}
	return sets
}

// mdbDeleteSets deletes the shadows of sets through the service.
func mdbDeleteSets(t *testing.T, svc *service.Service, sets []*mdbSet) {
	t.Helper()
	for _, s := range sets {
		if s.deleted {
			continue
		}
		if _, err := svc.DeleteShadows(context.Background(), []uuid.UUID{s.shadow.ID}); err != nil {
			t.Errorf("delete the shadow of %s: %v", s.name, err)
			continue
		}
		s.deleted = true
	}
}

// mdbJudge compares the rows found in a shadow (id → client) with what the
// clients saw around set s: every row whose commit returned before the set
// began is there, no row whose INSERT was sent after the set returned is,
// each client's rows there are a prefix of its rows (a client inserts one
// row at a time, so any consistent state holds a prefix), and the shadow
// holds no row the clients do not know, under the right client. It returns
// the problems found and an account of the rows.
func mdbJudge(rows []mdbRow, got map[int64]int, s *mdbSet) (problems []string, account string) {
	known := map[int64]bool{}
	var nBefore, nWindow, nWindowIn, nAfter int
	var longest time.Duration
	for _, r := range rows {
		known[r.id] = true
		client, in := got[r.id]
		if in && client != r.client {
			problems = append(problems, fmt.Sprintf("row %d of client %d is in the shadow as client %d's", r.id, r.client, client))
		}
		if r.sent.Before(s.after) && r.committed.After(s.before) {
			longest = max(longest, r.committed.Sub(r.sent))
		}
		switch {
		case r.committed.Before(s.before):
			nBefore++
			if !in {
				problems = append(problems, fmt.Sprintf("row %d (client %d), committed %v before the set began, is missing",
					r.id, r.client, s.before.Sub(r.committed).Round(time.Microsecond)))
			}
		case r.sent.After(s.after):
			nAfter++
			if in {
				problems = append(problems, fmt.Sprintf("row %d (client %d), sent %v after the set returned, is there",
					r.id, r.client, r.sent.Sub(s.after).Round(time.Microsecond)))
			}
		default:
			nWindow++
			if in {
				nWindowIn++
			}
		}
	}
	for id := range got {
		if !known[id] {
			problems = append(problems, fmt.Sprintf("row %d is in the shadow but no client inserted it", id))
		}
	}
	byClient := map[int][]mdbRow{}
	for _, r := range rows {
		byClient[r.client] = append(byClient[r.client], r)
	}
	for client, rs := range byClient {
		slices.SortFunc(rs, func(a, b mdbRow) int { return a.sent.Compare(b.sent) })
		gap := -1
		for i, r := range rs {
			_, in := got[r.id]
			if !in && gap < 0 {
				gap = i
			}
			if in && gap >= 0 {
				problems = append(problems, fmt.Sprintf("client %d: row %d is in the shadow but its earlier row %d is not", client, r.id, rs[gap].id))
				break
			}
		}
	}
	if nBefore == 0 || nAfter == 0 {
		problems = append(problems, fmt.Sprintf("the experiment proves little: %d rows committed before the set, %d sent after it", nBefore, nAfter))
	}
	account = fmt.Sprintf("%d rows inserted: %d committed before the set, %d sent after it, %d in flight of which %d in the shadow; the shadow holds %d rows; INSERTs overlapping the set took up to %v",
		len(rows), nBefore, nAfter, nWindow, nWindowIn, len(got), longest.Round(time.Microsecond))
	return problems, account
}

// mdbOutcome is what the check of one shadow found.
type mdbOutcome struct {
	started    bool // the server started on it (SQLite: the copy opened and passed its integrity check)
	consistent bool
}

// mdbTally counts the outcomes of one combination and mode.
type mdbTally struct {
	n, started, consistent int
}

func (ty *mdbTally) add(o mdbOutcome) {
	ty.n++
	if o.started {
		ty.started++
	}
	if o.consistent {
		ty.consistent++
	}
}

// mdbSummary is the summary line of one combination and mode.
func mdbSummary(db, combo string, withWriter, asserted bool, startedWord string, ty mdbTally) string {
	mode := "with writer"
	if !withWriter {
		mode = "without writer"
	}
	how := "recorded, not asserted"
	if asserted {
		how = "asserted"
	}
	return fmt.Sprintf("SUMMARY %s %s %s: %s %d/%d, consistent %d/%d (%s)", db, combo, mode, startedWord, ty.started, ty.n, ty.consistent, ty.n, how)
}

// mdbReport returns the function that reports a problem: t.Errorf where
// the result must hold, t.Logf where it is only recorded.
func mdbReport(t *testing.T, must bool) func(format string, args ...any) {
	if must {
		return t.Errorf
	}
	return t.Logf
}

// mdbRequireNoShadow checks that the catalog lists no shadow and that the
// storage directories of the given filesystems hold none.
func mdbRequireNoShadow(t *testing.T, svc *service.Service, dirs ...string) {
	t.Helper()
	shadows, err := svc.ListShadows(context.Background(), service.Selection{})
	if err != nil {
		t.Fatalf("list shadows: %v", err)
	}
	if len(shadows) != 0 {
		t.Errorf("the catalog lists %d shadows after a failed set", len(shadows))
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(filepath.Join(d, provider.StorageDirName))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("the storage of %s holds %s after a failed set", d, e.Name())
		}
	}
}

// mdbLog sends log records to the test log until the test ends (the
// service's goroutines may log later).
type mdbLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *mdbLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// mdbLogger returns a logger that writes to the test log.
func mdbLogger(t testing.TB, level slog.Level) *slog.Logger {
	l := &mdbLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: level}))
}

// ---- MariaDB ----

// mdbDatabase is the database of the clients' table.
const mdbDatabase = "vss"

// mdbRig is a combination's volume with a MariaDB server whose data
// directory is on it, and a service with the server's writer.
type mdbRig struct {
	*mdbBed
	srv     *mariadbtest.Server
	dataDir string
	svc     *service.Service
}

// mdbNewRig makes the filesystems, starts a server with its data directory
// on the volume, creates the table rows(id auto-increment, t timestamp,
// client int), and opens a service with the MariaDB writer of that server.
// t.Cleanup undoes it all in order: service (and writer), server,
// filesystems.
func mdbNewRig(t *testing.T, c mdbCombo) *mdbRig {
	t.Helper()
	mariadbtest.Require(t)
	r := &mdbRig{mdbBed: mdbNewBed(t, c)}
	r.dataDir = filepath.Join(r.vol.Dir, "mdb", "data")
	r.srv = mariadbtest.Start(t, mariadbtest.Options{DataDir: r.dataDir, Settings: mdbSettings})
	db := r.srv.DB(t, "")
	for _, q := range []string{
		"CREATE DATABASE " + mdbDatabase,
		"CREATE TABLE " + mdbDatabase + ".`rows` (id BIGINT AUTO_INCREMENT PRIMARY KEY, t TIMESTAMP(6) NOT NULL, client INT NOT NULL) ENGINE=InnoDB",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r.svc = mdbOpenService(t, mdbWriterSource(r.srv, r.dataDir, mdbLogger(t, slog.LevelWarn)), mariadb.WriterName)
	r.associate(t, r.svc)
	return r
}

// mdbWriterSource registers the MariaDB writer of srv as a built-in
// writer whose failures fail the set.
func mdbWriterSource(srv *mariadbtest.Server, dataDir string, log *slog.Logger) service.WriterSource {
	return func(ctx context.Context, cfg config.Config) ([]writers.Registration, []error) {
		w, err := mariadb.New(mariadb.Config{Name: "main", DSN: srv.DSN(""), DataDir: dataDir}, log)
		if err != nil {
			return nil, []error{fmt.Errorf("mariadb writer: %w", err)}
		}
		return []writers.Registration{{Writer: w, Kind: writers.KindBuiltIn, Policy: writers.PolicyFail}}, nil
	}
}

// mdbInserter gives a client its own connection to srv; it is closed when
// the test ends.
func mdbInserter(srv *mariadbtest.Server) func(t *testing.T, client int) mdbInsertFunc {
	return func(t *testing.T, client int) mdbInsertFunc {
		db, err := sql.Open("mysql", srv.DSN(mdbDatabase)+"?parseTime=true")
		if err != nil {
			t.Fatalf("client %d: %v", client, err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return func(ctx context.Context) (int64, error) {
			res, err := db.ExecContext(ctx, "INSERT INTO `rows` (t, client) VALUES (NOW(6), ?)", client)
			if err != nil {
				return 0, fmt.Errorf("insert: %w", err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return 0, fmt.Errorf("insert id: %w", err)
			}
			return id, nil
		}
	}
}

// TestMariaDBConsistency is the classic experiment for MariaDB, per
// provider: two clients insert rows while shadow copy sets of the volume
// that holds the data directory are made through the service, with the
// MariaDB writer (BACKUP STAGE) and without writers; a second server is
// started on a writable copy of each shadow and must hold every row
// committed before the set began and none sent after it returned, with a
// clean CHECK TABLE.
//
// It asserts what must hold: with the writer, the atomic combinations
// (btrfs; copy with its storage elsewhere, which freezes the volume);
// without writers, btrfs (a crash-consistent snapshot: InnoDB recovers
// from its redo log). BLOCK_COMMIT stops commits but not InnoDB's page and
// redo writes, so a copy that is not atomic (reflink, file by file; copy
// with its storage on the volume itself, unfrozen) is not guaranteed even
// with the writer: those outcomes are recorded, one SUMMARY line per
// combination and mode.
func TestMariaDBConsistency(t *testing.T) {
	var summaries []string
	for _, c := range mdbCombos {
		t.Run(c.name, func(t *testing.T) {
			summaries = append(summaries, mdbRunCombo(t, c)...)
		})
	}
	for _, s := range summaries {
		t.Log(s)
	}
}

// mdbMust reports whether a MariaDB shadow of combination c must be
// consistent: a btrfs snapshot always, an atomic copy with the writer.
func mdbMust(c mdbCombo, withWriter bool) bool {
	return c.provider == "btrfs" || (withWriter && c.atomic())
}

// mdbRunCombo runs the experiment on one combination and returns its
// summary lines.
func mdbRunCombo(t *testing.T, c mdbCombo) []string {
	r := mdbNewRig(t, c)
	return mdbRun(t, mdbExperiment{
		db: "mariadb", startedWord: "started", bed: r.mdbBed, svc: r.svc,
		startClients: func(t *testing.T) *mdbClients { return mdbStartClients(t, mdbInserter(r.srv), mdbPeriods...) },
		check:        r.check,
		must:         func(withWriter bool) bool { return mdbMust(c, withWriter) },
	})
}

// check starts a server on a writable copy of set s's shadow and checks
// its rows against the clients' rows. A failure is an error where must,
// a log line otherwise.
func (r *mdbRig) check(t *testing.T, s *mdbSet, rows []mdbRow, must bool) (o mdbOutcome) {
	report := mdbReport(t, must)
	dataCopy := r.writableCopy(t, s)
	t0 := time.Now()
	srv, err := mariadbtest.StartOn(t, dataCopy, mariadbtest.Options{Settings: mdbSettings})
	if err != nil {
		report("the server on the shadow did not start: %s", mdbInteresting(err.Error(), must))
		return o
	}
	o.started = true
	t.Logf("server on the shadow up in %v", time.Since(t0).Round(time.Millisecond))
	for _, l := range mdbRecoveryLines(srv.ErrorLogText()) {
		t.Log("shadow server: " + l)
	}
	got, problems := mdbShadowRows(srv)
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

// mdbShadowRows reads the rows (id → client) of a server started on a
// shadow and checks the table (CHECK TABLE … EXTENDED, and COUNT(*)
// against the rows read). It returns nil rows when they cannot be read.
func mdbShadowRows(srv *mariadbtest.Server) (map[int64]int, []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("mysql", srv.DSN(mdbDatabase))
	if err != nil {
		return nil, []string{err.Error()}
	}
	defer db.Close()
	var problems []string
	rows, err := db.QueryContext(ctx, "SELECT id, client FROM `rows`")
	if err != nil {
		return nil, []string{fmt.Sprintf("read the table: %v", err)}
	}
	got := map[int64]int{}
	for rows.Next() {
		var id int64
		var client int
		if err := rows.Scan(&id, &client); err != nil {
			rows.Close()
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
	rows.Close()
	var count int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `rows`").Scan(&count); err != nil {
		problems = append(problems, fmt.Sprintf("COUNT(*): %v", err))
	} else if count != len(got) {
		problems = append(problems, fmt.Sprintf("COUNT(*) says %d rows, %d were read", count, len(got)))
	}
	checks, err := db.QueryContext(ctx, "CHECK TABLE `rows` EXTENDED")
	if err != nil {
		return got, append(problems, fmt.Sprintf("CHECK TABLE: %v", err))
	}
	defer checks.Close()
	for checks.Next() {
		var table, op, typ, text string
		if err := checks.Scan(&table, &op, &typ, &text); err != nil {
			return got, append(problems, fmt.Sprintf("CHECK TABLE: %v", err))
		}
		if typ != "status" || text != "OK" {
			problems = append(problems, fmt.Sprintf("CHECK TABLE: %s %s: %s", table, typ, text))
		}
	}
	if err := checks.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("CHECK TABLE: %v", err))
	}
	return got, problems
}

// writableCopy makes a writable copy of set s's shadow and returns the
// data directory in it: a writable btrfs snapshot of the read-only btrfs
// shadow (no freeze), cp -a --reflink=auto of the others, on the storage
// filesystem when there is one, else on the volume. The copy is removed
// when the test ends, after the server on it stopped.
func (r *mdbRig) writableCopy(t *testing.T, s *mdbSet) string {
	t.Helper()
	rel, err := filepath.Rel(r.vol.Dir, r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	base := r.vol.Dir
	if r.storage != nil {
		base = r.storage.Dir
	}
	dst := filepath.Join(base, "check-"+s.name)
	if r.combo.fstype == "btrfs" {
		testutil.Run(t, "btrfs", "subvolume", "snapshot", s.shadow.ShadowPath, dst)
		t.Cleanup(func() {
			if out, err := exec.Command("btrfs", "subvolume", "delete", dst).CombinedOutput(); err != nil {
				t.Errorf("btrfs subvolume delete %s: %v\n%s", dst, err, out)
			}
		})
		return filepath.Join(dst, rel)
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dst); err != nil {
			t.Errorf("remove %s: %v", dst, err)
		}
	})
	top := strings.SplitN(rel, string(filepath.Separator), 2)[0]
	testutil.Run(t, "cp", "-a", "--reflink=auto", filepath.Join(s.shadow.ShadowPath, top), filepath.Join(dst, top))
	return filepath.Join(dst, rel)
}

// mdbInteresting keeps, unless all is wanted, the lines of a failed start
// that say what went wrong.
func mdbInteresting(msg string, all bool) string {
	if all {
		return msg
	}
	var out []string
	for _, l := range strings.Split(msg, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "[error]") || strings.Contains(ll, "[warning] innodb") || strings.Contains(ll, "future") ||
			strings.Contains(ll, "corrupt") || strings.Contains(ll, "exited") || strings.Contains(ll, "did not answer") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return "\n  " + strings.Join(mdbFirst(out, 20), "\n  ")
}

// mdbRecoveryLines returns the lines of a server's error log about
// recovery and errors.
func mdbRecoveryLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		ll := strings.ToLower(l)
		if strings.Contains(ll, "crash recovery") || strings.Contains(ll, "to recover") || strings.Contains(ll, "[error]") ||
			strings.Contains(ll, "corrupt") || strings.Contains(ll, "[warning] innodb") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return mdbFirst(out, 20)
}

// mdbFirst returns the first n of lines, with a note of how many more
// there were.
func mdbFirst(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return append(slices.Clip(lines[:n]), fmt.Sprintf("… and %d more", len(lines)-n))
}

// TestMariaDBMissingVolume: with the data directory on one volume and the
// InnoDB redo log on another, a set that lacks either volume fails with
// VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, naming what it lacks, leaves no
// shadow and leaves the server free (DDL, an INSERT and a BACKUP STAGE
// cycle of another session go through at once); a set of both volumes is
// made afterwards.
func TestMariaDBMissingVolume(t *testing.T) {
	testutil.RequireRoot(t)
	mariadbtest.Require(t)
	testutil.RequireTools(t, "btrfs")
	data := testutil.NewFS(t, "btrfs", mdbFSSize)
	logs := testutil.NewFS(t, "btrfs", mdbFSSize)
	dataDir := filepath.Join(data.Dir, "mdb", "data")
	redo := filepath.Join(logs.Dir, "redo")
	if err := os.Mkdir(redo, 0o750); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{"innodb_log_group_home_dir": redo}
	for k, v := range mdbSettings {
		settings[k] = v
	}
	srv := mariadbtest.Start(t, mariadbtest.Options{DataDir: dataDir, Settings: settings})
	db := srv.DB(t, "")
	for _, q := range []string{
		"CREATE DATABASE " + mdbDatabase,
		"CREATE TABLE " + mdbDatabase + ".`rows` (id BIGINT AUTO_INCREMENT PRIMARY KEY, t TIMESTAMP(6) NOT NULL, client INT NOT NULL) ENGINE=InnoDB",
		"INSERT INTO " + mdbDatabase + ".`rows` (t, client) VALUES (NOW(6), 0)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	svc := mdbOpenService(t, mdbWriterSource(srv, dataDir, mdbLogger(t, slog.LevelWarn)), mariadb.WriterName)
	ctx := context.Background()

	for _, c := range []struct {
		name    string
		volumes []string
		missing string
	}{
		{"without the data directory's volume", []string{logs.Dir}, dataDir},
		{"without the redo log's volume", []string{data.Dir}, redo},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: c.volumes, Provider: "btrfs", Context: vss.CtxAppRollback})
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
			mdbRequireNoShadow(t, svc, data.Dir, logs.Dir)
			mdbRequireFree(t, srv)
		})
	}

	t.Run("with both volumes", func(t *testing.T) {
		res, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{data.Dir, logs.Dir}, Provider: "btrfs", Context: vss.CtxAppRollback})
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
			t.Fatalf("set: %d shadows, writers %+v; want 2 shadows and the MariaDB writer", len(res.Shadows), res.Writers)
		}
		mdbRequireFree(t, srv)
	})
}

// mdbRequireFree fails the test unless a new session of srv runs DDL, an
// INSERT and a BACKUP STAGE cycle at once: nothing is held by the writer.
func mdbRequireFree(t *testing.T, srv *mariadbtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", srv.DSN(mdbDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	start := time.Now()
	for _, q := range []string{
		"SET SESSION lock_wait_timeout = 1",
		"CREATE TABLE probe (x INT) ENGINE=InnoDB",
		"INSERT INTO probe VALUES (1)",
		"INSERT INTO `rows` (t, client) VALUES (NOW(6), 0)",
		"DROP TABLE probe",
		"BACKUP STAGE START",
		"BACKUP STAGE FLUSH",
		"BACKUP STAGE BLOCK_DDL",
		"BACKUP STAGE BLOCK_COMMIT",
		"BACKUP STAGE END",
	} {
		qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := c.ExecContext(qctx, q)
		qcancel()
		if err != nil {
			t.Fatalf("the server is held: %s: %v", q, err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("DDL and INSERT took %v: the server was held", d)
	}
}
