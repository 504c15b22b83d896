package consistency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/testutil/pgtest"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/postgres"
)

// writerAppName is the application_name of the PostgreSQL writer's
// backup sessions (internal/writers/postgres).
const writerAppName = "vss postgresql writer"

// fsSize is the size of the test filesystems (sparse): room for the
// cluster, its WAL and a complete copy or two.
const fsSize = 1 << 30

// repetitions is how often each combination repeats the experiment.
func repetitions() int {
	if os.Getenv("VSS_TEST_MODE") == "long" {
		return 20
	}
	return 3
}

// combo is a provider on its filesystem(s).
type combo struct {
	name     string
	fstype   string
	provider string
	// storageElsewhere puts the shadow storage on a second filesystem of
	// the same type (the copy provider can then freeze the volume).
	storageElsewhere bool
	// backupMode is the writer's postgres.Config.BackupMode ("" = auto:
	// no backup mode on an atomic btrfs set).
	backupMode string
}

// labelled says whether the writer puts a backup label into the shadow.
func (c combo) labelled() bool {
	return c.provider != "btrfs" || c.backupMode == postgres.BackupModeAlways
}

var combos = []combo{
	{name: "btrfs", fstype: "btrfs", provider: "btrfs"},
	{name: "btrfs-backup-mode-always", fstype: "btrfs", provider: "btrfs", backupMode: postgres.BackupModeAlways},
	{name: "reflink-xfs", fstype: "xfs", provider: "reflink"},
	{name: "copy-ext4-storage-elsewhere", fstype: "ext4", provider: "copy", storageElsewhere: true},
	{name: "copy-ext4-storage-same-fs", fstype: "ext4", provider: "copy"},
}

// TestPostgresWithWriter is the consistency proof: with the PostgreSQL
// writer in the set, a server started on the shadow does backup recovery
// and holds exactly the rows committed before the set, whatever the
// provider.
func TestPostgresWithWriter(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) { runCombo(t, c, true) })
	}
}

// TestPostgresWithoutWriter repeats the experiment with no writer taking
// part (context client-accessible): the shadow is at best
// crash-consistent. It asserts consistency only where the service says a
// shadow is crash-consistent, and records the outcome of the others.
func TestPostgresWithoutWriter(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) { runCombo(t, c, false) })
	}
}

// rig is one combination's volume, cluster and service.
type rig struct {
	c       combo
	vol     *testutil.FS
	storage *testutil.FS // the copy's storage elsewhere, or nil
	srv     *pgtest.Server
	dataDir string
	svc     *service.Service
}

// newRig makes the filesystems, starts a cluster whose data directory is
// on the volume with the table rows, and opens a service with the
// PostgreSQL writer of that cluster registered. Everything is undone by
// t.Cleanup in the right order: service, server, filesystems.
func newRig(t *testing.T, c combo) *rig {
	t.Helper()
	testutil.RequireRoot(t)
	pgtest.Require(t)
	testutil.RequireTools(t, "cp")
	if c.fstype == "btrfs" {
		testutil.RequireTools(t, "btrfs")
	}
	r := &rig{c: c}
	r.vol = testutil.NewFS(t, c.fstype, fsSize)
	if c.storageElsewhere {
		r.storage = testutil.NewFS(t, c.fstype, fsSize)
	}
	r.dataDir = filepath.Join(r.vol.Dir, "pg", "data")
	r.srv = pgtest.Start(t, pgtest.Options{DataDir: r.dataDir})
	admin := r.srv.Connect(t, "postgres")
	if _, err := admin.Exec(context.Background(),
		"CREATE TABLE rows (id bigserial PRIMARY KEY, t timestamptz NOT NULL, client int NOT NULL)"); err != nil {
		t.Fatalf("create the table: %v", err)
	}
	_ = admin.Close(context.Background())
	r.svc = openService(t, r.srv, r.dataDir, c.backupMode)
	if r.storage != nil {
		unbounded, err := config.ParseMaxSize("UNBOUNDED")
		if err != nil {
			t.Fatal(err)
		}
		if err := r.svc.AddShadowStorage(context.Background(), r.vol.Dir, r.storage.Dir, unbounded); err != nil {
			t.Fatalf("add shadow storage: %v", err)
		}
	}
	return r
}

// openService opens a service on a state directory on the root
// filesystem with the PostgreSQL writer of srv registered as a built-in
// writer (on-error policy: fail).
func openService(t *testing.T, srv *pgtest.Server, dataDir, backupMode string) *service.Service {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	log := testLogger(t, slog.LevelWarn)
	src := func(ctx context.Context, _ config.Config) ([]writers.Registration, []error) {
		w, err := postgres.New(postgres.Config{Name: "main", DSN: srv.DSN("postgres"), DataDir: dataDir, BackupMode: backupMode}, log)
		if err != nil {
			return nil, []error{err}
		}
		return []writers.Registration{{Writer: w, Kind: writers.KindBuiltIn, Policy: writers.PolicyFail}}, nil
	}
	svc, err := service.Open(context.Background(), service.Options{Config: cfg, Log: log, WriterSources: []service.WriterSource{src}})
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
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Name != postgres.WriterName || ws[0].LastHResult != 0 {
		t.Fatalf("writers of the service: %+v; want the PostgreSQL writer, stable", ws)
	}
	return svc
}

// outcome is what one repetition found.
type outcome struct {
	started    bool
	consistent bool
}

// runCombo runs the experiment repetitions() times on one rig and logs a
// summary line.
func runCombo(t *testing.T, c combo, withWriter bool) {
	r := newRig(t, c)
	n := repetitions()
	var outs []outcome
	claimed := false
	for i := 1; i <= n; i++ {
		var o outcome
		t.Run(fmt.Sprintf("rep-%02d", i), func(t *testing.T) {
			o, claimed = r.repeat(t, i, withWriter)
		})
		outs = append(outs, o)
	}
	started, consistent := 0, 0
	for _, o := range outs {
		if o.started {
			started++
		}
		if o.consistent {
			consistent++
		}
	}
	mode := "with the PostgreSQL writer"
	if !withWriter {
		mode = "without writer"
	}
	t.Logf("SUMMARY %s %s: started %d/%d, consistent %d/%d (service marks the shadows crash-consistent: %v)",
		c.name, mode, started, n, consistent, n, claimed)
}

// repeat runs the experiment once. It fails the test where the result
// must hold: always with the writer, and without it when the service
// claims its shadow is crash-consistent. It returns what it found and
// that claim.
func (r *rig) repeat(t *testing.T, rep int, withWriter bool) (o outcome, claimed bool) {
	ctx := context.Background()
	admin := r.srv.Connect(t, "postgres")
	var priorMax, priorCount int64
	if err := admin.QueryRow(ctx, "SELECT coalesce(max(id), 0), count(*) FROM rows").Scan(&priorMax, &priorCount); err != nil {
		t.Fatal(err)
	}
	ins := startInserters(t, r.srv, 100*time.Millisecond, 10*time.Millisecond)
	time.Sleep(time.Second)

	req := service.CreateRequest{Volumes: []string{r.vol.Dir}, Provider: r.c.provider, Context: vss.CtxAppRollback}
	if !withWriter {
		req.Context = vss.CtxClientAccessible
	}
	before := time.Now()
	res, err := r.svc.CreateShadowSet(ctx, req)
	after := time.Now()
	if err != nil {
		ins.halt()
		t.Fatalf("create a %s shadow copy set: %v", r.c.provider, err)
	}
	ids := make([]uuid.UUID, len(res.Shadows))
	for i, sh := range res.Shadows {
		ids[i] = sh.ID
	}
	t.Cleanup(func() {
		if _, err := r.svc.DeleteShadows(context.Background(), ids); err != nil {
			t.Errorf("delete the shadows: %v", err)
		}
	})
	time.Sleep(time.Second)
	ins.halt()
	if len(ins.errs) > 0 {
		t.Fatalf("%d inserts failed, first: %v", len(ins.errs), ins.errs[0])
	}
	if len(res.Shadows) != 1 || res.Shadows[0].Provider != r.c.provider {
		t.Fatalf("set %+v; want one %s shadow", res.Shadows, r.c.provider)
	}
	sh := res.Shadows[0]
	claimed = sh.CrashConsistent
	if withWriter {
		if len(res.Writers) != 1 || len(res.Dropped) != 0 {
			t.Fatalf("writers of the set: %+v, dropped %v; want the PostgreSQL writer", res.Writers, res.Dropped)
		}
	} else if len(res.Writers) != 0 {
		t.Fatalf("a set without writers had writers: %+v", res.Writers)
	}
	t.Logf("set: call %v, freeze window %v, hold %v, not frozen %v, crash-consistent %v",
		after.Sub(before).Round(time.Millisecond), res.Timings.Freeze.Round(time.Microsecond),
		res.Timings.Hold.Round(time.Microsecond), res.NotFrozen, sh.CrashConsistent)
	if r.c.provider == "copy" {
		if frozen := len(res.NotFrozen) == 0; frozen != r.c.storageElsewhere {
			t.Errorf("copy with storage elsewhere=%v: frozen=%v (not frozen: %v)", r.c.storageElsewhere, frozen, res.NotFrozen)
		}
	}
	if want := r.c.provider == "btrfs" || r.c.storageElsewhere; sh.CrashConsistent != want {
		t.Errorf("the %s shadow is marked crash-consistent=%v; want %v", r.c.provider, sh.CrashConsistent, want)
	}

	rel, err := filepath.Rel(r.vol.Dir, r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	_, labelErr := os.Stat(filepath.Join(sh.ShadowPath, rel, "backup_label"))
	labelled := withWriter && r.c.labelled()
	if labelled && labelErr != nil {
		t.Errorf("the writer left no backup_label in the shadow: %v", labelErr)
	}
	if !labelled && labelErr == nil {
		t.Errorf("a shadow has a backup_label (writer %v, %s, backup mode %q)", withWriter, r.c.provider, r.c.backupMode)
	}
	dataCopy := r.writableCopy(t, rep, sh.ShadowPath, rel)

	must := withWriter || claimed
	report := t.Logf
	if must {
		report = t.Errorf
	}
	t0 := time.Now()
	ss, err := startServerOn(t, dataCopy)
	if err != nil {
		report("the server on the shadow did not start: %v", err)
		return o, claimed
	}
	o.started = true
	t.Logf("server on the shadow up in %v", time.Since(t0).Round(time.Millisecond))
	_, statErr := os.Stat(filepath.Join(dataCopy, "backup_label.old"))
	if labelled && statErr != nil {
		t.Errorf("the server on the shadow did not do backup recovery (no backup_label.old): %v\n%s", statErr, ss.log())
	}
	problems := checkShadow(t, ss, ins.recs, priorMax, priorCount, before, after)
	if len(problems) == 0 {
		o.consistent = true
		return o, claimed
	}
	report("the shadow is not consistent:\n  %s", strings.Join(problems, "\n  "))
	return o, claimed
}

// writableCopy makes a writable copy of the shadow next to it and returns
// its data directory: a writable btrfs snapshot of a read-only btrfs
// shadow (no freeze involved), cp -a --reflink=auto of the others. The
// copy is removed when the test ends (after the server on it stops).
func (r *rig) writableCopy(t *testing.T, rep int, shadow, rel string) string {
	t.Helper()
	base := r.vol.Dir
	if r.storage != nil {
		base = r.storage.Dir
	}
	dst := filepath.Join(base, fmt.Sprintf("check-%02d", rep))
	if r.c.fstype == "btrfs" {
		testutil.Run(t, "btrfs", "subvolume", "snapshot", shadow, dst)
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
	testutil.Run(t, "cp", "-a", "--reflink=auto", filepath.Join(shadow, top), filepath.Join(dst, top))
	return filepath.Join(dst, rel)
}

// insertRec is one INSERT: when it was sent and when its commit returned.
type insertRec struct {
	id        int64
	client    int
	sent      time.Time
	committed time.Time
}

// inserters run one client per period, each inserting a timestamped row
// per period and recording it.
type inserters struct {
	stop atomic.Bool
	wg   sync.WaitGroup
	once sync.Once
	mu   sync.Mutex
	recs []insertRec
	errs []error
}

func startInserters(t *testing.T, srv *pgtest.Server, periods ...time.Duration) *inserters {
	t.Helper()
	ins := &inserters{}
	for client, period := range periods {
		c := srv.Connect(t, "postgres")
		ins.wg.Add(1)
		go func() {
			defer ins.wg.Done()
			for !ins.stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				r := insertRec{client: client, sent: time.Now()}
				err := c.QueryRow(ctx, "INSERT INTO rows (t, client) VALUES (now(), $1) RETURNING id", client).Scan(&r.id)
				r.committed = time.Now()
				cancel()
				ins.mu.Lock()
				if err != nil {
					ins.errs = append(ins.errs, err)
				} else {
					ins.recs = append(ins.recs, r)
				}
				ins.mu.Unlock()
				if err != nil {
					return
				}
				time.Sleep(period)
			}
		}()
	}
	t.Cleanup(ins.halt)
	return ins
}

// halt stops the clients and waits for them.
func (ins *inserters) halt() {
	ins.once.Do(func() {
		ins.stop.Store(true)
		ins.wg.Wait()
	})
}

// checkShadow checks the rows of the server on the shadow against the
// clients' records and the rows that were there before the clients
// started, and checks the database with pg_amcheck. It returns the
// problems found.
func checkShadow(t *testing.T, ss *shadowServer, recs []insertRec, priorMax, priorCount int64, before, after time.Time) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var problems []string
	c, err := pgx.Connect(ctx, ss.dsn())
	if err != nil {
		return []string{fmt.Sprintf("connect: %v", err)}
	}
	defer c.Close(context.Background())

	// A full scan of the table (sequential, no index).
	if _, err := c.Exec(ctx, "SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off"); err != nil {
		return []string{fmt.Sprintf("settings: %v", err)}
	}
	rows, err := c.Query(ctx, "SELECT id, client, t FROM rows")
	if err != nil {
		return []string{fmt.Sprintf("scan the table: %v", err)}
	}
	got := map[int64]int{}
	var scanned, prior int64
	for rows.Next() {
		var id int64
		var client int
		var ts time.Time
		if err := rows.Scan(&id, &client, &ts); err != nil {
			rows.Close()
			return []string{fmt.Sprintf("scan the table: %v", err)}
		}
		scanned++
		if id <= priorMax {
			prior++
		} else {
			got[id]++
		}
	}
	if err := rows.Err(); err != nil {
		return []string{fmt.Sprintf("scan the table: %v", err)}
	}
	var count int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM rows").Scan(&count); err != nil {
		problems = append(problems, fmt.Sprintf("SELECT count(*): %v", err))
	} else if count != scanned {
		problems = append(problems, fmt.Sprintf("SELECT count(*) says %d rows, a full scan gives %d", count, scanned))
	}
	if prior != priorCount {
		problems = append(problems, fmt.Sprintf("%d of the %d rows committed before this repetition are in the shadow", prior, priorCount))
	}

	known := map[int64]bool{}
	var nBefore, nWindow, nWindowIn, nAfter int
	for _, r := range recs {
		known[r.id] = true
		in := got[r.id] > 0
		switch {
		case r.committed.Before(before):
			nBefore++
			if !in {
				problems = append(problems, fmt.Sprintf("row %d (client %d), committed %v before the set, is missing", r.id, r.client, before.Sub(r.committed).Round(time.Microsecond)))
			}
		case r.sent.After(after):
			nAfter++
			if in {
				problems = append(problems, fmt.Sprintf("row %d (client %d), sent %v after the set, is there", r.id, r.client, r.sent.Sub(after).Round(time.Microsecond)))
			}
		default:
			nWindow++
			if in {
				nWindowIn++
			}
		}
	}
	for id, n := range got {
		if !known[id] {
			problems = append(problems, fmt.Sprintf("row %d is in the shadow but no client inserted it", id))
		}
		if n > 1 {
			problems = append(problems, fmt.Sprintf("row %d is %d times in the shadow", id, n))
		}
	}
	// Each client's rows in the shadow are a prefix of its rows.
	byClient := map[int][]insertRec{}
	for _, r := range recs {
		byClient[r.client] = append(byClient[r.client], r)
	}
	for client, rs := range byClient {
		slices.SortFunc(rs, func(a, b insertRec) int { return a.sent.Compare(b.sent) })
		gap := -1
		for i, r := range rs {
			in := got[r.id] > 0
			if !in && gap < 0 {
				gap = i
			}
			if in && gap >= 0 {
				problems = append(problems, fmt.Sprintf("client %d: row %d is in the shadow but its earlier row %d is not", client, r.id, rs[gap].id))
				break
			}
		}
	}
	t.Logf("rows: %d inserted; %d committed before the set, %d sent after it, %d in flight of which %d in the shadow; the shadow holds %d rows (%d from before)",
		len(recs), nBefore, nAfter, nWindow, nWindowIn, scanned, prior)
	if nBefore == 0 || nAfter == 0 {
		problems = append(problems, fmt.Sprintf("the experiment proves little: %d rows before the set, %d after it", nBefore, nAfter))
	}
	if err := ss.amcheck(ctx); err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

// shadowServer is a server started on a writable copy of a shadow. Unlike
// pgtest.StartOn it reports a failed start as an error rather than failing
// the test: a crash-consistent copy may rightly not start.
type shadowServer struct {
	bin     string
	dataDir string
	sockDir string
	logFile string
	port    int
	cred    *syscall.Credential
}

// startServerOn starts a server on dataDir (as the postgres OS user when
// root) with its own port and socket directory, and registers its stop
// with t.Cleanup, also when the start fails (a server still in recovery
// when pg_ctl gives up is stopped too).
func startServerOn(t *testing.T, dataDir string) (*shadowServer, error) {
	t.Helper()
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	s := &shadowServer{bin: bin, dataDir: dataDir}
	if os.Geteuid() == 0 {
		s.cred = pgUser(t)
	}
	s.sockDir, err = os.MkdirTemp("", "vsscons")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.sockDir) })
	s.logFile = filepath.Join(s.sockDir, "postgres.log")
	if s.cred != nil {
		if err := chownTree(s.sockDir, s.cred); err != nil {
			t.Fatal(err)
		}
		if err := chownTree(dataDir, s.cred); err != nil {
			t.Fatal(err)
		}
		traversable(t, s.sockDir, s.cred)
		traversable(t, dataDir, s.cred)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dataDir, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	s.port = freePort(t)
	opts := fmt.Sprintf("-c port=%d -c 'unix_socket_directories=%s' -c 'listen_addresses='", s.port, s.sockDir)
	t.Cleanup(func() { s.stop(t) })
	out, err := s.command("pg_ctl", "-D", dataDir, "-l", s.logFile, "-w", "-t", "90", "-o", opts, "start").CombinedOutput()
	if err != nil {
		return s, fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, s.log())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.dsn())
		if err == nil {
			_ = c.Close(context.Background())
			return s, nil
		}
		if ctx.Err() != nil {
			return s, fmt.Errorf("the server does not accept connections: %w\nserver log:\n%s", err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *shadowServer) dsn() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.sockDir, s.port)
}

// command runs a PostgreSQL program as the server user.
func (s *shadowServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = "/"
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// log returns the end of the server log.
func (s *shadowServer) log() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > 8<<10 {
		b = append([]byte("…\n"), b[len(b)-8<<10:]...)
	}
	return string(b)
}

// amcheck runs pg_amcheck on the database postgres: every heap and
// B-tree index, with heapallindexed.
func (s *shadowServer) amcheck(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.bin, "pg_amcheck")); err != nil {
		return nil // the full scan above is the check then
	}
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "pg_amcheck"), "-h", s.sockDir, "-p", strconv.Itoa(s.port),
		"-U", "postgres", "--install-missing", "--heapallindexed", "--rootdescend", "postgres")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_amcheck: %w\n%s", err, out)
	}
	return nil
}

// stop stops the server however it can: fast, immediate, then SIGKILL
// of the postmaster.
func (s *shadowServer) stop(t *testing.T) {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	}
	if s.command("pg_ctl", "-D", s.dataDir, "status").Run() == nil {
		if out, err := s.command("pg_ctl", "-D", s.dataDir, "-w", "-t", "60", "stop", "-m", "fast").CombinedOutput(); err != nil {
			t.Logf("pg_ctl stop -m fast: %v\n%s", err, out)
			_ = s.command("pg_ctl", "-D", s.dataDir, "-w", "-t", "60", "stop", "-m", "immediate").Run()
		}
	}
	if pid > 0 && isPostmasterOf(pid, s.dataDir) {
		t.Errorf("postmaster %d on %s still runs; killing it", pid, s.dataDir)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && isPostmasterOf(pid, s.dataDir); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// isPostmasterOf reports whether pid is a live postgres process whose
// command line names dataDir.
func isPostmasterOf(pid int, dataDir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i:]), ") Z") {
			return false
		}
	}
	args := strings.Split(string(b), "\x00")
	return filepath.Base(args[0]) == "postgres" && strings.Contains(string(b), dataDir)
}

// pgUser returns the credential of the PostgreSQL OS user (pgtest made
// it if it was missing).
func pgUser(t *testing.T) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(pgtest.OSUser)
	if err != nil {
		t.Fatalf("the %s user: %v", pgtest.OSUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// chownTree gives path and everything below it (not following links) to
// the user of cred.
func chownTree(path string, cred *syscall.Credential) error {
	return filepath.WalkDir(path, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

// traversable lets the user of cred reach path: every ancestor it cannot
// search gets o+x until the test ends.
func traversable(t *testing.T, path string, cred *syscall.Credential) {
	t.Helper()
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 || (st.Uid == cred.Uid && mode&0o100 != 0) || (st.Gid == cred.Gid && mode&0o010 != 0)
		if !ok {
			if err := os.Chmod(dir, mode|0o001); err != nil {
				t.Fatal(err)
			}
			d, m := dir, fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid|os.ModeSetuid)
			t.Cleanup(func() { _ = os.Chmod(d, m) })
		}
		if dir == "/" {
			return
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPostgresWriterMissingVolume: with the data directory on one volume
// and a tablespace on another, a set that lacks either volume is refused
// by the writer with VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, leaves no
// shadow and no backup in progress on the server; a set with both is
// made afterwards. A set made while the server is down fails, also
// leaving no shadow.
func TestPostgresWriterMissingVolume(t *testing.T) {
	testutil.RequireRoot(t)
	pgtest.Require(t)
	data := testutil.NewFS(t, "btrfs", fsSize)
	other := testutil.NewFS(t, "btrfs", fsSize)
	dataDir := filepath.Join(data.Dir, "pg", "data")
	srv := pgtest.Start(t, pgtest.Options{DataDir: dataDir})
	ts := filepath.Join(other.Dir, "ts")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := chownTree(ts, pgUser(t)); err != nil {
		t.Fatal(err)
	}
	admin := srv.Connect(t, "postgres")
	ctx := context.Background()
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLESPACE ts LOCATION '%s'", ts),
		"CREATE TABLE rows (id bigserial PRIMARY KEY, t timestamptz NOT NULL DEFAULT now(), client int NOT NULL) TABLESPACE ts",
		"INSERT INTO rows (client) SELECT 0 FROM generate_series(1, 100)",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	svc := openService(t, srv, dataDir, "")

	for _, c := range []struct {
		name    string
		volumes []string
		missing string
	}{
		{"without the data directory's volume", []string{other.Dir}, dataDir},
		{"without the tablespace's volume", []string{data.Dir}, ts},
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
			requireNoShadow(t, svc, data.Dir, other.Dir)
			requireNoBackup(t, srv)
		})
	}

	t.Run("with both volumes", func(t *testing.T) {
		res, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{data.Dir, other.Dir}, Provider: "btrfs", Context: vss.CtxAppRollback})
		if err != nil {
			t.Fatalf("a set with both volumes after the refused ones: %v", err)
		}
		if len(res.Shadows) != 2 || len(res.Writers) != 1 {
			t.Fatalf("set: %d shadows, writers %+v", len(res.Shadows), res.Writers)
		}
		ids := []uuid.UUID{res.Shadows[0].ID, res.Shadows[1].ID}
		if _, err := svc.DeleteShadows(ctx, ids); err != nil {
			t.Fatal(err)
		}
		requireNoBackup(t, srv)
	})

	t.Run("server down", func(t *testing.T) {
		_ = admin.Close(ctx)
		srv.Stop(t)
		t.Cleanup(func() {
			if !srv.Running() {
				srv.Start(t)
			}
		})
		_, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{data.Dir, other.Dir}, Provider: "btrfs", Context: vss.CtxAppRollback})
		if err == nil {
			t.Fatal("a set was made while the writer's server is down")
		}
		if got := vsserr.CodeOf(err); got != vsserr.VSS_E_WRITERERROR_RETRYABLE {
			t.Errorf("error %v: code %s; want VSS_E_WRITERERROR_RETRYABLE", err, got)
		}
		t.Logf("refused as it should be: %v", err)
		requireNoShadow(t, svc, data.Dir, other.Dir)
		srv.Start(t)
		requireNoBackup(t, srv)
	})
}

// requireNoShadow checks that the catalog lists no shadow and that the
// volumes' storage directories hold none.
func requireNoShadow(t *testing.T, svc *service.Service, volumes ...string) {
	t.Helper()
	shadows, err := svc.ListShadows(context.Background(), service.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if len(shadows) != 0 {
		t.Errorf("the catalog lists %d shadows after a failed set", len(shadows))
	}
	for _, v := range volumes {
		ents, err := os.ReadDir(filepath.Join(v, ".vss"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("storage of %s holds %s after a failed set", v, e.Name())
		}
	}
}

// requireNoBackup waits (a session ending takes the server a moment) until
// the server has no session of the writer and no replication slot, that
// is no backup in progress.
func requireNoBackup(t *testing.T, srv *pgtest.Server) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	end := time.Now().Add(5 * time.Second)
	for {
		var sessions, slots int
		if err := c.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = $1), (SELECT count(*) FROM pg_replication_slots)",
			writerAppName).Scan(&sessions, &slots); err != nil {
			t.Fatal(err)
		}
		if sessions == 0 && slots == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the server still has %d writer session(s) and %d replication slot(s): a backup is left in progress", sessions, slots)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tLog sends a log to the test log until the test ends (the service's
// goroutines may log later).
type tLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *tLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	tl := &tLog{t: t}
	t.Cleanup(func() { tl.mu.Lock(); tl.done = true; tl.mu.Unlock() })
	return slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: level}))
}
