package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/postgres"
)

// The pgbench benchmark's shape: a run of pgbenchDuration with shadow
// copies at pgbenchFirst, pgbenchFirst+pgbenchSpacing, …; each shadow copy
// is compared with the quiet window just before its own window.
const (
	pgbenchScale    = 20
	pgbenchClients  = 8
	pgbenchThreads  = 2
	pgbenchShadows  = 3
	pgbenchWindow   = 10 * time.Second // the windows compared
	pgbenchFirst    = 20 * time.Second // first shadow copy, from the start of pgbench
	pgbenchSpacing  = 20 * time.Second // between shadow copies
	pgbenchTail     = 10 * time.Second // after the last shadow copy
	pgbenchDuration = pgbenchFirst + (pgbenchShadows-1)*pgbenchSpacing + pgbenchTail
	pgbenchFSSize   = 8 << 30 // sparse
)

// pgOSUser is the OS user the benchmark's PostgreSQL server runs as.
const pgOSUser = "postgres"

// RatioAtLeast is met when ours/theirs ≥ min.
func RatioAtLeast(min float64) Goal {
	return Goal{Text: fmt.Sprintf("ratio >= %.2f", min), check: func(o, t time.Duration) bool {
		r := Ratio(o, t)
		return !math.IsNaN(r) && r >= min
	}}
}

// benchPgbench measures what a shadow copy set with the PostgreSQL writer
// costs a busy database: pgbench (TPC-B like, scale 20, 8 clients) runs on
// a private cluster whose data directory is on the volume, shadow copy
// sets of the volume are made through the service in this process with
// the PostgreSQL writer taking part (pg_backup_start, snapshot,
// pg_backup_stop, backup label and WAL into the shadow), and pgbench's
// per-transaction log gives the TPS and the worst latency in the 10 s
// window centred on each set against the quiet 10 s window before it
// (the local cost of a set: pg_backup_start's immediate checkpoint, the
// snapshot, the full-page writes after the checkpoint), and the quiet TPS
// before the last set against before the first (the lasting cost of the
// shadows kept meanwhile: on XFS, writes into blocks shared with a reflink
// shadow are copy-on-write). On btrfs (the atomic provider), then with the
// reflink provider on XFS. Rows: Bench BenchPgbench.
func (r *runner) benchPgbench(ctx context.Context) (rows []*Row, err error) {
	pg, err := findPostgres()
	if err != nil {
		return nil, err
	}
	runs := []struct{ fstype, provider, mode string }{
		{"btrfs", "btrfs", postgres.BackupModeAuto},   // atomic: no backup mode
		{"btrfs", "btrfs", postgres.BackupModeAlways}, // pg_backup_start's checkpoint
		{"xfs", "reflink", postgres.BackupModeAuto},
	}
	if r.opts.Quick {
		runs = runs[:1]
	}
	for _, v := range runs {
		rs, err := r.pgbenchOn(ctx, pg, v.fstype, v.provider, v.mode)
		rows = append(rows, rs...)
		if err != nil {
			return rows, fmt.Errorf("pgbench on %s (%s provider): %w", v.fstype, v.provider, err)
		}
	}
	return rows, nil
}

// pgInstall is the PostgreSQL installation the benchmark uses.
type pgInstall struct {
	bin  string // directory of initdb, pg_ctl, pgbench, psql
	cred *syscall.Credential
}

// findPostgres finds the newest PostgreSQL server binaries
// (/usr/lib/postgresql/<major>/bin on Debian) with pgbench, and the
// postgres OS user.
func findPostgres() (*pgInstall, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVer := "", -1
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, BenchPgbench)); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			continue
		}
		v, _ := strconv.Atoi(strings.SplitN(filepath.Base(filepath.Dir(d)), ".", 2)[0])
		if v > bestVer {
			best, bestVer = d, v
		}
	}
	if best == "" {
		return nil, errors.New("no PostgreSQL server binaries with pgbench in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	u, err := user.Lookup(pgOSUser)
	if err != nil {
		return nil, fmt.Errorf("the %s OS user (the PostgreSQL package makes it): %w", pgOSUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &pgInstall{bin: best, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// pgCluster is a private PostgreSQL server of the benchmark: unix socket
// only, in a private directory.
type pgCluster struct {
	pg      *pgInstall
	dataDir string
	sockDir string
	logFile string
	port    int
}

// DSN returns the pgx connection string of database postgres.
func (c *pgCluster) DSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.sockDir, c.port)
}

// command returns a PostgreSQL program run as the server's OS user.
func (c *pgCluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	x := exec.CommandContext(ctx, filepath.Join(c.pg.bin, name), args...)
	x.Dir = "/"
	x.SysProcAttr = &syscall.SysProcAttr{Credential: c.pg.cred}
	x.Cancel = func() error { return x.Process.Signal(os.Interrupt) }
	x.WaitDelay = 10 * time.Second
	return x
}

func (c *pgCluster) run(ctx context.Context, name string, args ...string) error {
	out, err := c.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startPostgres makes a cluster with initdb in dataDir (as the postgres
// user) and starts it with its socket in a private directory. Its stop
// (and the removal of the socket directory) is registered with fx before
// the start, so that a failure, even half-way through the start, stops it.
func startPostgres(ctx context.Context, fx *Fixtures, pg *pgInstall, dataDir string, settings map[string]string) (*pgCluster, error) {
	c := &pgCluster{pg: pg, dataDir: dataDir}
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(dataDir, int(pg.cred.Uid), int(pg.cred.Gid)); err != nil {
		return nil, err
	}
	// Every directory above the data directory must be searchable by the
	// server user (the fixtures' directories are 0700).
	if err := searchable(fx, dataDir, pg.cred); err != nil {
		return nil, err
	}
	sock, err := os.MkdirTemp("", "vsspgb")
	if err != nil {
		return nil, err
	}
	fx.Defer("remove "+sock, func() error { return os.RemoveAll(sock) })
	if err := os.Chown(sock, int(pg.cred.Uid), int(pg.cred.Gid)); err != nil {
		return nil, err
	}
	c.sockDir, c.logFile = sock, filepath.Join(sock, "postgres.log")
	if c.port, err = freeTCPPort(); err != nil {
		return nil, err
	}
	if err := c.run(ctx, "initdb", "-D", dataDir, "--auth=trust", "-U", "postgres", "--encoding=UTF8",
		"--locale=C", "--no-instructions"); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("\n# vss bench\nport = %d\nunix_socket_directories = '%s'\nlisten_addresses = ''\n", c.port, sock)
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		conf += fmt.Sprintf("%s = '%s'\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("postgresql.conf: %w", err)
	}
	fx.Defer("stop the PostgreSQL server on "+dataDir, c.stop)
	if err := c.run(ctx, "pg_ctl", "-D", dataDir, "-l", c.logFile, "-w", "-t", "120", "start"); err != nil {
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, c.logTail())
	}
	return c, nil
}

// stop stops the server: fast, then immediate, then SIGKILL of its
// postmaster. A server that does not run is fine.
func (c *pgCluster) stop() error {
	ctx := context.Background()
	pid := 0
	if b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	}
	var err error
	if c.command(ctx, "pg_ctl", "-D", c.dataDir, "status").Run() == nil {
		if err = c.run(ctx, "pg_ctl", "-D", c.dataDir, "-w", "-t", "60", "stop", "-m", "fast"); err != nil {
			err = errors.Join(err, c.run(ctx, "pg_ctl", "-D", c.dataDir, "-w", "-t", "60", "stop", "-m", "immediate"))
		}
	}
	if pid > 0 && postmasterAlive(pid, c.dataDir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && postmasterAlive(pid, c.dataDir); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		return errors.Join(fmt.Errorf("postmaster %d did not stop; killed", pid), err)
	}
	return err
}

// postmasterAlive reports whether pid is a live postgres process of
// dataDir.
func postmasterAlive(pid int, dataDir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(st, ')'); i > 0 && bytes.HasPrefix(st[i:], []byte(") Z")) {
			return false
		}
	}
	return filepath.Base(strings.SplitN(string(b), "\x00", 2)[0]) == "postgres" && strings.Contains(string(b), dataDir)
}

// logTail returns the end of the server log.
func (c *pgCluster) logTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	return string(b)
}

// searchable gives o+x to every directory above path that the user of
// cred cannot search, and registers with fx the return of their modes.
func searchable(fx *Fixtures, path string, cred *syscall.Credential) error {
	for dir := filepath.Dir(path); dir != "/"; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		if mode&0o001 != 0 || (st.Uid == cred.Uid && mode&0o100 != 0) || (st.Gid == cred.Gid && mode&0o010 != 0) {
			continue
		}
		if err := os.Chmod(dir, fi.Mode().Perm()|0o001); err != nil {
			return err
		}
		d, m := dir, fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid|os.ModeSetuid)
		fx.Defer("restore the mode of "+d, func() error {
			if err := os.Chmod(d, m); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		})
	}
	return nil
}

// freeTCPPort returns a port number no one listens on (it names the
// server's unix socket; the server does not listen on TCP).
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pgShot is one shadow copy set made during the pgbench run.
type pgShot struct {
	start, end time.Time // just before CreateShadowSet, just after it returned
	freeze     time.Duration
	hold       time.Duration
}

// pgTx is one transaction of pgbench's log.
type pgTx struct {
	end     time.Time
	latency time.Duration
}

// pgWindow is a span of the run and what pgbench did in it.
type pgWindow struct {
	from, to time.Time
	n        int
	max      time.Duration
	lat      []time.Duration
}

func (w *pgWindow) tps() float64 { return float64(w.n) / w.to.Sub(w.from).Seconds() }

// perTx is the mean time per transaction of the window (1/TPS).
func (w *pgWindow) perTx() time.Duration {
	if w.n == 0 {
		return 0
	}
	return w.to.Sub(w.from) / time.Duration(w.n)
}

func (w *pgWindow) p99() time.Duration {
	if len(w.lat) == 0 {
		return 0
	}
	s := slices.Clone(w.lat)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// pgbenchOn runs the benchmark on a fresh filesystem of type fstype with
// the given provider.
func (r *runner) pgbenchOn(ctx context.Context, pg *pgInstall, fstype, prov, mode string) (rows []*Row, err error) {
	fx, err := NewFixtures(r.fx.Dir(), "pgbench-", r.log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, fx.Cleanup()) }()
	fs, err := fx.NewFS(ctx, fstype, "pg-"+fstype, pgbenchFSSize)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(fs.Dir, "pg", "data")
	// The only checkpoints of the run are those the shadow copies make
	// (pg_backup_start with fast => true): automatic ones are pushed out of
	// it, so that the quiet windows are quiet.
	cl, err := startPostgres(ctx, fx, pg, dataDir, map[string]string{
		"max_wal_size":       "4GB",
		"checkpoint_timeout": "30min",
	})
	if err != nil {
		return nil, err
	}
	conn := []string{"-h", cl.sockDir, "-p", strconv.Itoa(cl.port), "-U", "postgres"}
	t := time.Now()
	if err := cl.run(ctx, BenchPgbench, append(append([]string{"-i", "-q", "-s", strconv.Itoa(pgbenchScale)}, conn...), "postgres")...); err != nil {
		return nil, err
	}
	// A checkpoint after the load, as a database in steady state has had
	// one: the first shadow copy does not pay for flushing the whole load.
	if err := cl.run(ctx, "psql", append(conn, "-X", "-q", "-c", "CHECKPOINT", "postgres")...); err != nil {
		return nil, err
	}
	r.log.Info("pgbench: cluster loaded", "fs", fstype, "scale", pgbenchScale, "took", time.Since(t).Round(time.Millisecond))

	cfg := config.Default()
	cfg.StateDir = filepath.Join(fx.Dir(), "state")
	cfg.MaxShadowCopies = config.MaxMaxShadowCopies
	src := func(ctx context.Context, _ config.Config) ([]writers.Registration, []error) {
		w, err := postgres.New(postgres.Config{Name: "bench", DSN: cl.DSN(), DataDir: dataDir, BackupMode: mode}, r.svcLog)
		if err != nil {
			return nil, []error{err}
		}
		return []writers.Registration{{Writer: w, Kind: writers.KindBuiltIn, Policy: writers.PolicyFail}}, nil
	}
	svc, err := service.Open(ctx, service.Options{Config: cfg, LockWait: 30 * time.Second, Log: r.svcLog,
		WriterSources: []service.WriterSource{src}})
	if err != nil {
		return nil, fmt.Errorf("opening the service on %s: %w", cfg.StateDir, err)
	}
	defer svc.Close()
	if ws, err := svc.ListWriters(ctx); err != nil || len(ws) != 1 || ws[0].LastHResult != 0 {
		return nil, fmt.Errorf("the PostgreSQL writer is not registered: %+v %v", ws, err)
	}

	logDir := filepath.Join(fx.Dir(), "txlog")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return nil, err
	}
	prefix := filepath.Join(logDir, "pgbench_log")
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	args := append(append([]string{"-c", strconv.Itoa(pgbenchClients), "-j", strconv.Itoa(pgbenchThreads),
		"-T", strconv.Itoa(int(pgbenchDuration / time.Second)), "--log", "--log-prefix=" + prefix}, conn...), "postgres")
	bench := exec.CommandContext(runCtx, filepath.Join(pg.bin, BenchPgbench), args...)
	bench.Cancel = func() error { return bench.Process.Signal(os.Interrupt) }
	bench.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	bench.Stdout, bench.Stderr = &out, &out
	start := time.Now()
	if err := bench.Start(); err != nil {
		return nil, fmt.Errorf("pgbench: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- bench.Wait() }()
	benchDone := false
	defer func() {
		if !benchDone {
			stop()
			<-done
		}
	}()
	var shots []pgShot
	var made []uuid.UUID
	for k := 0; k < pgbenchShadows; k++ {
		at := start.Add(pgbenchFirst + time.Duration(k)*pgbenchSpacing)
		select {
		case err := <-done:
			benchDone = true
			return nil, fmt.Errorf("pgbench ended before shadow copy %d: %v: %s", k+1, err, strings.TrimSpace(out.String()))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(at)):
		}
		s := pgShot{start: time.Now()}
		res, err := svc.CreateShadowSet(ctx, service.CreateRequest{Volumes: []string{fs.Dir}, Provider: prov, Context: vss.CtxAppRollback})
		s.end = time.Now()
		if err != nil {
			return nil, fmt.Errorf("shadow copy set %d during pgbench: %w", k+1, err)
		}
		if len(res.Writers) != 1 {
			return nil, fmt.Errorf("shadow copy set %d: %d writers took part, want the PostgreSQL writer", k+1, len(res.Writers))
		}
		for _, sh := range res.Shadows {
			made = append(made, sh.ID)
		}
		s.freeze, s.hold = res.Timings.Freeze, res.Timings.Hold
		shots = append(shots, s)
		r.log.Info("pgbench: shadow copy set made", "fs", fstype, "provider", prov, "at", s.start.Sub(start).Round(time.Millisecond),
			"call", s.end.Sub(s.start).Round(time.Millisecond), "prepare", res.Timings.Prepare.Round(time.Millisecond),
			"freeze", s.freeze.Round(time.Microsecond), "flush", res.Timings.Flush.Round(time.Microsecond),
			"hold", s.hold.Round(time.Microsecond), "total", res.Timings.Total.Round(time.Millisecond))
	}
	select {
	case err := <-done:
		benchDone = true
		if err != nil {
			return nil, fmt.Errorf("pgbench: %w: %s", err, strings.TrimSpace(out.String()))
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if _, err := svc.DeleteShadows(ctx, made); err != nil {
		return nil, fmt.Errorf("deleting the shadows: %w", err)
	}
	txs, bad, err := readPgbenchLogs(prefix)
	if err != nil {
		return nil, err
	}
	if bad > 0 {
		r.log.Warn("pgbench: unreadable lines in the transaction log", "lines", bad)
	}
	return r.pgbenchRows(fstype, prov, mode, start, txs, shots, out.String())
}

// pgbenchRows turns the transactions and the shadow copies into rows.
func (r *runner) pgbenchRows(fstype, prov, mode string, start time.Time, txs []pgTx, shots []pgShot, summary string) ([]*Row, error) {
	quietTPT := &Measure{Label: "quiet 10 s windows: time per transaction (1/TPS)"}
	aroundTPT := &Measure{Label: "10 s windows centred on a shadow copy: time per transaction (1/TPS)"}
	quietMax := &Measure{Label: "quiet 10 s windows: max latency"}
	aroundMax := &Measure{Label: "10 s windows centred on a shadow copy: max latency"}
	freeze, hold, call := &Measure{}, &Measure{}, &Measure{}
	var tpsNotes, latNotes []string
	var worst time.Duration
	var quiets []*pgWindow
	for k, s := range shots {
		c := s.start.Add(s.end.Sub(s.start) / 2)
		around := &pgWindow{from: c.Add(-pgbenchWindow / 2), to: c.Add(pgbenchWindow / 2)}
		if s.start.Before(around.from) {
			around.from = s.start
		}
		if s.end.After(around.to) {
			around.to = s.end
		}
		quiet := &pgWindow{from: around.from.Add(-pgbenchWindow), to: around.from}
		if k > 0 && quiet.from.Before(shots[k-1].end) {
			return nil, fmt.Errorf("shadow copy %d took too long: its quiet window overlaps the set before", k+1)
		}
		for _, tx := range txs {
			for _, w := range []*pgWindow{quiet, around} {
				if !tx.end.Before(w.from) && tx.end.Before(w.to) {
					w.n++
					w.lat = append(w.lat, tx.latency)
					w.max = max(w.max, tx.latency)
				}
			}
		}
		if quiet.n == 0 || around.n == 0 {
			return nil, fmt.Errorf("no transaction logged around shadow copy %d (%d quiet, %d around)", k+1, quiet.n, around.n)
		}
		quiets = append(quiets, quiet)
		quietTPT.Add(quiet.perTx())
		aroundTPT.Add(around.perTx())
		quietMax.Add(quiet.max)
		aroundMax.Add(around.max)
		worst = max(worst, around.max)
		freeze.Add(s.freeze)
		hold.Add(s.hold)
		call.Add(s.end.Sub(s.start))
		tpsNotes = append(tpsNotes, fmt.Sprintf("%.0f vs %.0f at %.0f s", around.tps(), quiet.tps(), s.start.Sub(start).Seconds()))
		latNotes = append(latNotes, fmt.Sprintf("p99 %s vs %s", FormatDuration(around.p99()), FormatDuration(quiet.p99())))
		r.log.Info("pgbench: windows", "fs", fstype, "shadow", k+1,
			"tps_quiet", int(quiet.tps()), "tps_around", int(around.tps()),
			"max_quiet", quiet.max.Round(time.Microsecond), "max_around", around.max.Round(time.Microsecond),
			"p99_quiet", quiet.p99().Round(time.Microsecond), "p99_around", around.p99().Round(time.Microsecond))
	}
	r.log.Info("pgbench: TPS per second", "fs", fstype, "series", tpsSeries(start, txs, shots))
	if i := strings.Index(summary, "tps = "); i >= 0 {
		line, _, _ := strings.Cut(summary[i:], "\n")
		r.log.Info("pgbench: summary", "fs", fstype, "line", strings.TrimSpace(line))
	}
	where := fmt.Sprintf("%s provider on %s", prov, fstype)
	if fstype == "xfs" {
		where = "reflink provider on XFS"
	}
	if prov == "btrfs" {
		where += ", backup mode " + mode
	}
	windows := fmt.Sprintf("freeze window %s (%s), hold %s (%s), set %s",
		FormatDuration(freeze.Median()), msList(freeze.Samples), FormatDuration(hold.Median()), msList(hold.Samples),
		FormatDuration(call.Median()))
	shape := fmt.Sprintf("pgbench -s %d -c %d -j %d -T %.0f, %d sets with the PostgreSQL writer, each vs the 10 s before its window",
		pgbenchScale, pgbenchClients, pgbenchThreads, pgbenchDuration.Seconds(), len(shots))
	tpsGoal := RatioAtLeast(0.95)
	latGoal := AtMost(100 * time.Millisecond)
	first, last := quiets[0], quiets[len(quiets)-1]
	return []*Row{
		{Bench: BenchPgbench, What: fmt.Sprintf("pgbench TPS around a shadow copy vs quiet, %s (cells: 1/TPS quiet | around)", where),
			Ours: quietTPT, Theirs: aroundTPT, Goal: &tpsGoal,
			Note: fmt.Sprintf("TPS around vs quiet: %s; %s; %s", strings.Join(tpsNotes, ", "), windows, shape)},
		{Bench: BenchPgbench, What: fmt.Sprintf("pgbench max latency around a shadow copy, %s (vs quiet)", where),
			Ours: aroundMax, Theirs: quietMax, Goal: &latGoal,
			Note: fmt.Sprintf("median of the windows' maxima; worst %s; %s; %s", FormatDuration(worst), strings.Join(latNotes, ", "), windows)},
		{Bench: BenchPgbench, What: fmt.Sprintf("pgbench TPS with %d shadow copies kept vs none, %s (cells: 1/TPS none | kept)", len(shots)-1, where),
			Ours:   &Measure{Label: "quiet window before the first set: 1/TPS", Samples: []time.Duration{first.perTx()}},
			Theirs: &Measure{Label: "quiet window before the last set: 1/TPS", Samples: []time.Duration{last.perTx()}},
			Note: fmt.Sprintf("what the shadows cost while they exist: %.0f TPS before the last set vs %.0f before the first (one run, one window each)",
				last.tps(), first.tps())},
	}, nil
}

// msList formats durations as "1.2/3.4/5.6 ms".
func msList(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
	}
	return strings.Join(parts, "/") + " ms"
}

// tpsSeries returns the transactions per second of the run, second by
// second, with the seconds of the shadow copies marked by a star.
func tpsSeries(start time.Time, txs []pgTx, shots []pgShot) string {
	n := int(pgbenchDuration/time.Second) + 2
	counts := make([]int, n)
	for _, tx := range txs {
		if i := int(tx.end.Sub(start) / time.Second); i >= 0 && i < n {
			counts[i]++
		}
	}
	marks := map[int]bool{}
	for _, s := range shots {
		for i := int(s.start.Sub(start) / time.Second); i <= int(s.end.Sub(start)/time.Second); i++ {
			marks[i] = true
		}
	}
	var b strings.Builder
	for i, c := range counts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(c))
		if marks[i] {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// readPgbenchLogs reads pgbench's per-transaction logs (prefix.<pid> and
// prefix.<pid>.<thread>; lines "client_id transaction_no time_us
// script_no time_epoch time_us_part") and returns the transactions and
// the number of lines it could not read (failed or skipped ones).
func readPgbenchLogs(prefix string) ([]pgTx, int, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return nil, 0, err
	}
	if len(files) == 0 {
		return nil, 0, fmt.Errorf("pgbench wrote no transaction log (%s.*)", prefix)
	}
	var txs []pgTx
	bad := 0
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 6 {
				bad++
				continue
			}
			lat, err1 := strconv.ParseInt(fields[2], 10, 64)
			sec, err2 := strconv.ParseInt(fields[4], 10, 64)
			usec, err3 := strconv.ParseInt(fields[5], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				bad++
				continue
			}
			txs = append(txs, pgTx{end: time.Unix(sec, usec*1000), latency: time.Duration(lat) * time.Microsecond})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", name, err)
		}
	}
	return txs, bad, nil
}
