// Package mariadb is the built-in MariaDB writer. It describes a server's
// files (the data directory, and the InnoDB, Aria and binary logs where
// they lie outside it) and quiesces the server for a shadow copy with
// BACKUP STAGE (MariaDB 10.4.1 and later) or, on servers without it
// (MySQL), FLUSH TABLES WITH READ LOCK.
//
// The quiesce state lives in one session the writer holds: BACKUP STAGE
// and the global read lock belong to a connection, so when the service
// dies its connection closes and the server releases everything. Within
// the service, a timer releases the server when the freeze window ends
// without a Thaw, and the session's wait_timeout makes the server drop the
// session itself shortly after, should the service hang.
//
// InnoDB recovers from its redo log when a server starts on a shadow copy,
// so the writer has nothing to finish in PostSnapshot beyond removing the
// stale pid file; a restore in place stops the server (PreRestore) and
// starts it again (PostRestore).
//
// The shadow copy must be atomic across the server's files (a btrfs
// snapshot; several volumes committed in one hold). BLOCK_COMMIT stops
// commits, not InnoDB: statements still run and write redo, and the page
// cleaner still writes data files. A file-by-file copy made during the
// freeze can therefore hold a data page newer than its copy of the redo
// log, and such a copy does not start ("log sequence number ... is in the
// future"). TestNonAtomicCopyXFS measures this; under light load such
// copies came out consistent, under load some did not start.
package mariadb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// ClassID is the writer class ID of the MariaDB writer: the same for every
// MariaDB server the service knows.
var ClassID = uuid.MustParse("6f0d2c1e-4b7a-5e39-9c58-3a1d8e5b7c42")

// WriterName is the writer name vssadmin prints.
const WriterName = "MariaDB Writer"

// LogicalPath is the logical path of the writer's components.
const LogicalPath = "MariaDB"

// DefaultName is the instance name when Config.Name is empty.
const DefaultName = "mariadb"

// DefaultFreezeLimit is the freeze window when a Freeze carries no
// deadline (the service's default freeze limit).
const DefaultFreezeLimit = 60 * time.Second

const (
	// preparedIdleLimit is the session's wait_timeout between
	// PrepareSnapshot and Freeze: the server drops a session that held
	// BACKUP STAGE START/FLUSH that long without a word.
	preparedIdleLimit = 10 * time.Minute
	// frozenGrace is added to the freeze window for the session's
	// wait_timeout, so that the writer's own timer normally acts first.
	frozenGrace = 5 * time.Second
	// releaseTimeout bounds a release the writer starts by itself.
	releaseTimeout = 10 * time.Second
	// pollInterval is how often a restore step checks the server.
	pollInterval = 200 * time.Millisecond
)

// LockMethod is how the writer quiesces the server.
type LockMethod string

// The lock methods.
const (
	// LockAuto uses BACKUP STAGE on MariaDB 10.4.1 and later and FLUSH
	// TABLES WITH READ LOCK otherwise.
	LockAuto LockMethod = ""
	// LockBackupStage uses BACKUP STAGE START, FLUSH, BLOCK_DDL,
	// BLOCK_COMMIT and END: reads and writes go on until BLOCK_COMMIT,
	// which only blocks commits.
	LockBackupStage LockMethod = "backup-stage"
	// LockFTWRL uses FLUSH TABLES WITH READ LOCK and UNLOCK TABLES: all
	// writes wait during the freeze.
	LockFTWRL LockMethod = "ftwrl"
)

// Config configures a MariaDB writer.
type Config struct {
	// Name is the instance name and the component name ("main"); empty
	// means DefaultName.
	Name string
	// DSN is the go-sql-driver/mysql data source name of the server
	// ("root@unix(/run/mysqld/mysqld.sock)/"). The user needs the RELOAD
	// privilege (BACKUP STAGE, FLUSH TABLES) and, for the default stop
	// command, SHUTDOWN.
	DSN string
	// DataDir is the server's data directory; empty means @@datadir. With
	// it, Identify also works while the server is down.
	DataDir string
	// StopCommand stops the server for a restore in place; empty means
	// `mariadb-admin shutdown` with the address and user of DSN.
	StopCommand []string
	// StartCommand starts the server after a restore in place; empty
	// means `systemctl start mariadb.service` where systemd runs, and
	// otherwise only waiting for someone else to start it. The command
	// may return (a service manager) or keep running (mariadbd itself).
	StartCommand []string
	// Lock chooses the quiesce method; the default detects it.
	Lock LockMethod
}

type holdState int

const (
	holdNone     holdState = iota
	holdPrepared           // BACKUP STAGE START, FLUSH
	holdFrozen             // BLOCK_COMMIT or the global read lock
)

// Writer is a MariaDB writer. It is safe for concurrent use; events are
// handled one at a time.
type Writer struct {
	cfg  Config
	dsn  *mysql.Config
	log  *slog.Logger
	db   *sql.DB // a pool of one connection: the writer's session
	name string

	mu      sync.Mutex
	conn    *sql.Conn // the session that holds the quiesce state
	connID  int64
	version string
	method  LockMethod
	lay     *layout // from the last PrepareSnapshot or Identify
	held    holdState
	gen     uint64 // changes at every freeze and release
	timer   *time.Timer
	// expiredAt is set when the timer released a freeze nobody thawed.
	expiredAt time.Time
	closed    bool
}

var _ writers.Writer = (*Writer)(nil)
var _ writers.Closer = (*Writer)(nil)

// New returns a writer for the server of cfg.DSN. It does not connect:
// the session is opened when first needed.
func New(cfg Config, log *slog.Logger) (*Writer, error) {
	if cfg.DSN == "" {
		return nil, errors.New("mariadb writer: no DSN")
	}
	dc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("mariadb writer: DSN: %w", err)
	}
	switch cfg.Lock {
	case LockAuto, LockBackupStage, LockFTWRL:
	default:
		return nil, fmt.Errorf("mariadb writer: unknown lock method %q (backup-stage or ftwrl)", cfg.Lock)
	}
	if cfg.DataDir != "" {
		if !filepath.IsAbs(cfg.DataDir) {
			return nil, fmt.Errorf("mariadb writer: data directory %q is not absolute", cfg.DataDir)
		}
		cfg.DataDir = filepath.Clean(cfg.DataDir)
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if log == nil {
		log = slog.Default()
	}
	if dc.Timeout == 0 {
		dc.Timeout = 10 * time.Second // dialling; statements are bounded by contexts
	}
	conn, err := mysql.NewConnector(dc)
	if err != nil {
		return nil, fmt.Errorf("mariadb writer: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &Writer{
		cfg:  cfg,
		dsn:  dc,
		log:  log.With("writer", "mariadb", "instance", cfg.Name),
		db:   db,
		name: cfg.Name,
	}, nil
}

// SessionID returns the server's connection ID of the writer's session, 0
// when it has none. An administrator can find the session holding a
// freeze with it in SHOW PROCESSLIST.
func (w *Writer) SessionID() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.connID
}

// Method returns the lock method in use: the configured one, or the one
// detected from the server's version once connected (LockAuto before).
func (w *Writer) Method() LockMethod {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.Lock != LockAuto {
		return w.cfg.Lock
	}
	return w.method
}

// SupportsBackupStage reports whether a server of the given VERSION()
// has BACKUP STAGE: MariaDB 10.4.1 or later.
func SupportsBackupStage(version string) bool {
	if !strings.Contains(strings.ToLower(version), "mariadb") {
		return false
	}
	// Replication handshakes prefix "5.5.5-"; VERSION() does not, but a
	// configured version string might.
	v := strings.TrimPrefix(version, "5.5.5-")
	var n [3]int
	for i, part := range strings.SplitN(v, ".", 3) {
		digits := part
		if j := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = part[:j]
		}
		x, err := strconv.Atoi(digits)
		if err != nil {
			return false
		}
		n[i] = x
	}
	switch {
	case n[0] != 10:
		return n[0] > 10
	case n[1] != 4:
		return n[1] > 4
	}
	return n[2] >= 1
}

// Identify returns the Writer Metadata Document: one database component
// with the server's files. It asks the server where they are; with
// Config.DataDir it also answers while the server is down (the data
// directory only).
func (w *Writer) Identify(ctx context.Context) (*vssmeta.WriterMetadata, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	lay, err := w.layoutLocked(ctx)
	if err != nil {
		if w.cfg.DataDir == "" {
			return nil, err
		}
		w.log.Warn("server not reachable; describing the configured data directory only", "err", err)
		lay = &layout{dataDir: w.cfg.DataDir}
	}
	return w.metadata(lay), nil
}

// Handle delivers one event.
func (w *Writer) Handle(ctx context.Context, ev writers.Event, req *writers.Request) error {
	if req == nil {
		req = &writers.Request{}
	}
	switch ev {
	case writers.PrepareSnapshot:
		return w.prepareSnapshot(ctx, req)
	case writers.Freeze:
		return w.freeze(ctx, req)
	case writers.Thaw:
		return w.thaw(ctx)
	case writers.PostSnapshot:
		w.postSnapshot(req)
		return nil
	case writers.Abort, writers.BackupShutdown:
		w.abort(ctx, ev)
		return nil
	case writers.PreRestore:
		return w.preRestore(ctx, req)
	case writers.PostRestore:
		return w.postRestore(ctx, req)
	}
	return nil // Identify, PrepareBackup, BackupComplete: nothing to do
}

// Close releases whatever the writer holds and closes its session.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if w.held != holdNone {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		if err := w.releaseLocked(ctx); err != nil {
			w.log.Warn("release at close", "err", err)
		}
		cancel()
	}
	w.dropLocked(false)
	w.closed = true
	if err := w.db.Close(); err != nil {
		return fmt.Errorf("mariadb writer: close: %w", err)
	}
	return nil
}

func (w *Writer) prepareSnapshot(ctx context.Context, req *writers.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held != holdNone {
		w.log.Warn("PrepareSnapshot while a previous set still holds the server; releasing it first")
		if err := w.releaseLocked(ctx); err != nil {
			w.log.Warn("release", "err", err)
		}
	}
	w.expiredAt = time.Time{}
	lay, err := w.layoutLocked(ctx)
	if err != nil {
		return err
	}
	if err := checkVolumes(lay, req.Volumes); err != nil {
		return err
	}
	if err := w.setIdleLimitLocked(ctx, preparedIdleLimit); err != nil {
		return w.failLocked(ctx, err, "set the session's wait_timeout")
	}
	start := time.Now()
	if w.method == LockBackupStage {
		if err := w.execLocked(ctx, "BACKUP STAGE START"); err != nil {
			return w.failLocked(ctx, err, "BACKUP STAGE START")
		}
		w.held = holdPrepared
		if err := w.execLocked(ctx, "BACKUP STAGE FLUSH"); err != nil {
			return w.failLocked(ctx, err, "BACKUP STAGE FLUSH")
		}
	} else {
		// Flushing before the read lock makes FLUSH TABLES WITH READ
		// LOCK wait less.
		if err := w.execLocked(ctx, "FLUSH TABLES"); err != nil {
			return w.failLocked(ctx, err, "FLUSH TABLES")
		}
		w.held = holdPrepared
	}
	w.log.Info("prepared for snapshot", "method", w.method, "session", w.connID, "took", time.Since(start))
	return nil
}

func (w *Writer) freeze(ctx context.Context, req *writers.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held != holdPrepared {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "Freeze without PrepareSnapshot")
	}
	deadline := req.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(DefaultFreezeLimit)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Should the service hang (not die), the server drops the session
	// shortly after the window and so releases the freeze by itself.
	if err := w.setIdleLimitLocked(ctx, time.Until(deadline)+frozenGrace); err != nil {
		return w.failLocked(ctx, err, "set the session's wait_timeout")
	}
	start := time.Now()
	stmts := []string{"BACKUP STAGE BLOCK_DDL", "BACKUP STAGE BLOCK_COMMIT"}
	if w.method == LockFTWRL {
		stmts = []string{"FLUSH TABLES WITH READ LOCK"}
	}
	for _, q := range stmts {
		if err := w.execLocked(ctx, q); err != nil {
			return w.failLocked(ctx, err, q)
		}
		w.held = holdFrozen
	}
	w.gen++
	gen := w.gen
	w.timer = time.AfterFunc(time.Until(deadline), func() { w.expire(gen, deadline) })
	w.log.Info("frozen", "method", w.method, "session", w.connID, "took", time.Since(start), "until", deadline)
	return nil
}

// expire releases a freeze whose window passed without Thaw or Abort.
func (w *Writer) expire(gen uint64, deadline time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen || w.held != holdFrozen {
		return
	}
	w.log.Warn("freeze window ended without Thaw; releasing the server", "deadline", deadline)
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := w.releaseLocked(ctx); err != nil {
		w.log.Warn("release after the freeze window", "err", err)
	}
	w.expiredAt = deadline
}

func (w *Writer) thaw(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.expiredAt.IsZero() {
		at := w.expiredAt
		w.expiredAt = time.Time{}
		return vsserr.New(vsserr.VSS_E_WRITERERROR_TIMEOUT,
			"the freeze window ended at %s before Thaw; the writer released the server then, so the shadow copy may not be consistent",
			at.Format(time.RFC3339Nano))
	}
	if w.held == holdNone {
		return nil
	}
	frozen := w.held == holdFrozen
	start := time.Now()
	if err := w.releaseLocked(ctx); err != nil {
		if frozen {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err,
				"thaw: the session that held the freeze failed (killed or disconnected?), the server released it at that moment and the shadow copy may not be consistent")
		}
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "thaw")
	}
	w.log.Info("thawed", "took", time.Since(start))
	return nil
}

func (w *Writer) abort(ctx context.Context, ev writers.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expiredAt = time.Time{}
	if w.held == holdNone {
		return
	}
	if err := w.releaseLocked(ctx); err != nil {
		// releaseLocked dropped the session: the server releases on
		// disconnect.
		w.log.Warn("release", "event", ev, "err", err)
		return
	}
	w.log.Info("released", "event", ev)
}

// releaseLocked ends BACKUP STAGE or the read lock. On any failure it drops
// the session (and kills it from a second one), which releases the server
// too, and returns the failure.
func (w *Writer) releaseLocked(ctx context.Context) error {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.gen++
	held := w.held
	w.held = holdNone
	if held == holdNone || w.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	q := "BACKUP STAGE END"
	if w.method == LockFTWRL {
		q = "UNLOCK TABLES"
	}
	if err := w.execLocked(ctx, q); err != nil {
		w.dropLocked(true)
		return fmt.Errorf("%s: %w", q, err)
	}
	if err := w.setIdleLimitLocked(ctx, 0); err != nil {
		w.dropLocked(true)
		w.log.Warn("reset wait_timeout", "err", err)
	}
	return nil
}

// failLocked releases after a failed statement and classifies the error.
func (w *Writer) failLocked(ctx context.Context, err error, what string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if w.held != holdNone {
		if rerr := w.releaseLocked(rctx); rerr != nil {
			w.log.Warn("release after a failure", "err", rerr)
		}
	}
	if lost(err) && w.conn != nil {
		w.dropLocked(true)
	}
	return classify(err, what)
}

// classify gives a statement's error its VSS code: waits that ran out and
// lost connections are worth a retry, what the server refuses is not.
func classify(err error, what string) error {
	var me *mysql.MySQLError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err,
			"%s did not finish in time (long-running statements or locks?)", what)
	case errors.As(err, &me) && (me.Number == 1205 || me.Number == 3024): // lock wait timeout, max_statement_time
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err,
			"%s did not get its lock in time (long-running statements or transactions?)", what)
	case errors.As(err, &me) && !lostNumbers[me.Number]:
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "%s", what)
	}
	return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "%s", what)
}

// lostNumbers are server errors that end the session.
var lostNumbers = map[uint16]bool{
	1053: true, // ER_SERVER_SHUTDOWN
	1927: true, // ER_CONNECTION_KILLED
	2006: true, // server has gone away
	2013: true, // lost connection
}

// lost reports whether err means that the session is gone or unusable.
func lost(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return lostNumbers[me.Number]
	}
	return true
}

func (w *Writer) postSnapshot(req *writers.Request) {
	w.mu.Lock()
	lay := w.lay
	w.mu.Unlock()
	if lay == nil || len(req.ShadowPaths) == 0 {
		return
	}
	var stale []string
	for _, p := range []string{lay.pidFile, lay.socket} {
		if p != "" {
			stale = append(stale, p)
		}
	}
	if pids, err := filepath.Glob(filepath.Join(lay.dataDir, "*.pid")); err == nil {
		stale = append(stale, pids...)
	}
	for _, p := range stale {
		sp, ok := shadowPath(p, req.ShadowPaths)
		if !ok {
			continue
		}
		if err := os.Remove(sp); err == nil {
			w.log.Debug("removed stale file from the shadow copy", "path", sp)
		} else if !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("cannot remove a stale file from the shadow copy", "path", sp, "err", err)
		}
	}
}

// shadowPath maps a path to its place in the shadow copy of the volume
// that holds it (the deepest one).
func shadowPath(p string, shadows map[string]string) (string, bool) {
	best := ""
	for vol := range shadows {
		v := filepath.Clean(vol)
		if within(p, v) && len(v) > len(best) {
			best = v
		}
	}
	if best == "" {
		return "", false
	}
	rel, err := filepath.Rel(best, p)
	if err != nil {
		return "", false
	}
	return filepath.Join(shadows[best], rel), true
}

// execLocked runs a statement on the session, bounded by ctx: the
// session's lock_wait_timeout is set from ctx's deadline first, so that
// the server also gives up waiting by itself.
func (w *Writer) execLocked(ctx context.Context, q string) error {
	if w.conn == nil {
		return errors.New("no session")
	}
	if dl, ok := ctx.Deadline(); ok {
		secs := int64(math.Ceil(time.Until(dl).Seconds()))
		secs = max(1, min(secs, 31536000))
		if _, err := w.conn.ExecContext(ctx, "SET SESSION lock_wait_timeout = "+strconv.FormatInt(secs, 10)); err != nil {
			return fmt.Errorf("set lock_wait_timeout: %w", err)
		}
	}
	if _, err := w.conn.ExecContext(ctx, q); err != nil {
		return err
	}
	return nil
}

// setIdleLimitLocked sets the session's wait_timeout (how long the server
// keeps a silent session); 0 restores the server's default.
func (w *Writer) setIdleLimitLocked(ctx context.Context, d time.Duration) error {
	if w.conn == nil {
		return errors.New("no session")
	}
	v := "DEFAULT"
	if d > 0 {
		v = strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
	}
	_, err := w.conn.ExecContext(ctx, "SET SESSION wait_timeout = "+v)
	return err
}

// sessionLocked returns the writer's session, opening it when there is
// none and replacing an idle one the server has closed.
func (w *Writer) sessionLocked(ctx context.Context) (*sql.Conn, error) {
	if w.closed {
		return nil, vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "the writer is closed")
	}
	if w.conn != nil && w.held == holdNone {
		if err := w.conn.PingContext(ctx); err != nil {
			w.log.Info("session lost while idle; reconnecting", "err", err)
			w.dropLocked(false)
		}
	}
	if w.conn != nil {
		return w.conn, nil
	}
	c, err := w.db.Conn(ctx)
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "connect to the server")
	}
	var id int64
	var version string
	if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID(), VERSION()").Scan(&id, &version); err != nil {
		_ = c.Raw(func(any) error { return errBadConn })
		_ = c.Close()
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "connect to the server")
	}
	w.conn, w.connID, w.version = c, id, version
	switch {
	case w.cfg.Lock != LockAuto:
		w.method = w.cfg.Lock
	case SupportsBackupStage(version):
		w.method = LockBackupStage
	default:
		w.method = LockFTWRL
	}
	w.log.Debug("session opened", "session", id, "version", version, "method", w.method)
	return c, nil
}

// dropLocked closes the session without returning it to the pool; with
// kill it also kills it from a second session, in case the server has not
// noticed yet (a statement still waiting on a lock).
func (w *Writer) dropLocked(kill bool) {
	if w.conn == nil {
		return
	}
	_ = w.conn.Raw(func(any) error { return errBadConn })
	_ = w.conn.Close()
	id := w.connID
	w.conn, w.connID = nil, 0
	w.held = holdNone
	if kill && id != 0 {
		w.killSession(id)
	}
}

// killSession kills a session of ours from a separate, short-lived
// connection (best effort).
func (w *Writer) killSession(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := mysql.NewConnector(w.dsn)
	if err != nil {
		return
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if _, err := db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10)); err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1094 { // unknown thread: gone already
			return
		}
		w.log.Debug("kill session", "session", id, "err", err)
		return
	}
	w.log.Info("killed the writer's old session", "session", id)
}
