// Package sqlite is the built-in SQLite writer: it makes a shadow copy of
// SQLite databases consistent without stopping the applications that use
// them.
//
// The writer holds one connection per database in the service's own
// process. PrepareSnapshot checkpoints WAL databases (so that the shadow
// holds a small WAL); Freeze runs BEGIN IMMEDIATE on every connection, which
// takes each database's write lock: from then on no application can commit,
// the WAL holds only committed frames and, in rollback-journal mode, no
// writer can touch the database file, so the files on disk are a consistent
// database whenever they are copied. Readers are never blocked. Thaw (or
// Abort) rolls the empty transactions back and the applications' writes
// resume; their own busy timeouts decide whether they wait or fail meanwhile.
//
// Nothing stays locked: a timer releases the locks by itself at the Freeze
// deadline, and because SQLite's locks are POSIX record locks held by the
// service process, the kernel drops them when the service dies, even by
// SIGKILL.
//
// A restore in place goes PreRestore → the requester places the files →
// PostRestore. PreRestore takes each database exclusively (locking_mode
// EXCLUSIVE, BEGIN EXCLUSIVE) to make sure no process has it open,
// checkpoints its WAL empty, closes it and removes the -wal and -shm files,
// so that the restored main file is not mixed with a newer WAL. PostRestore
// opens each restored database and runs PRAGMA integrity_check.
//
// PostSnapshot does nothing. In particular the writer does not remove the
// -shm file from the shadow copy: the -shm is only a cache of the WAL index
// which SQLite rebuilds from the WAL when the first connection opens a
// database that no process holds (it takes the dead-man-switch lock and
// truncates it), and a read-only shadow is opened through a heap-memory WAL
// index rebuilt from the WAL as well. Removing it would need a writable
// shadow and buy nothing.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	sqlitedrv "modernc.org/sqlite"

	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// ClassID is the writer class ID of every SQLite writer.
var ClassID = uuid.MustParse("5c0e4f1a-7d2b-4c36-9a8e-3b1f6d2a9e47")

// WriterName is the writer name of every SQLite writer; instances differ
// by their instance name (Config.Name).
const WriterName = "SQLite Writer"

// DefaultBusyTimeout is how long Freeze waits for a database's write lock
// when Config.BusyTimeout is zero (ctx's deadline may shorten it).
const DefaultBusyTimeout = 10 * time.Second

// DefaultFreezeWindow is how long the writer stays frozen by itself when a
// Freeze request carries no deadline.
const DefaultFreezeWindow = 60 * time.Second

// checkpointWait is how long PrepareSnapshot tries a TRUNCATE checkpoint
// before it settles for a PASSIVE one.
const checkpointWait = 3 * time.Second

// restoreBusy is how long PreRestore waits for a database's locks.
const restoreBusy = time.Second

// Config configures one SQLite writer instance.
type Config struct {
	// Name is the instance name; the instance ID is derived from it.
	Name string
	// Paths are the database files (absolute). Each is one component,
	// named by its base name, whose files are the database and its -wal,
	// -journal and -shm siblings. Base names must be unique.
	Paths []string
	// BusyTimeout bounds the wait for a database's write lock in Freeze
	// (DefaultBusyTimeout when zero). When ctx's deadline comes first,
	// a lock not had in time is VSS_E_WRITERERROR_TIMEOUT; when this
	// limit comes first, it is VSS_E_WRITERERROR_RETRYABLE.
	BusyTimeout time.Duration
}

// Writer is an SQLite writer. It implements writers.Writer and
// writers.Closer. Its methods are safe for concurrent use.
type Writer struct {
	cfg Config
	log *slog.Logger
	dbs []*database // every configured database, in Config order

	mu      sync.Mutex
	active  []*database // opened by PrepareSnapshot, for this set
	held    bool        // the write locks of active are held (frozen)
	expired bool        // the freeze deadline passed before Thaw
	timer   *time.Timer
	gen     uint64 // freeze generation, so that a stale timer does nothing
}

var (
	_ writers.Writer = (*Writer)(nil)
	_ writers.Closer = (*Writer)(nil)
)

// database is one configured database and, while a set runs, the
// connection the writer holds on it.
type database struct {
	path string // absolute, clean
	dir  string
	base string
	db   *sql.DB
	conn *sql.Conn
	wal  bool
}

// New returns a writer for the databases of cfg. The databases need not
// exist yet; PrepareSnapshot requires them.
func New(cfg Config, log *slog.Logger) (*Writer, error) {
	if log == nil {
		log = slog.Default()
	}
	if strings.TrimSpace(cfg.Name) == "" {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "sqlite writer: empty name")
	}
	if len(cfg.Paths) == 0 {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "sqlite writer %s: no database paths", cfg.Name)
	}
	if cfg.BusyTimeout < 0 {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "sqlite writer %s: negative busy timeout %v", cfg.Name, cfg.BusyTimeout)
	}
	if cfg.BusyTimeout == 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	w := &Writer{cfg: cfg, log: log.With("writer", WriterName, "instance", cfg.Name)}
	bases := map[string]string{}
	for _, p := range cfg.Paths {
		if !filepath.IsAbs(p) {
			return nil, vsserr.New(vsserr.E_INVALIDARG, "sqlite writer %s: database path %q is not absolute", cfg.Name, p)
		}
		p = filepath.Clean(p)
		base := filepath.Base(p)
		if base == "/" || strings.ContainsAny(base, "*?[\\") {
			return nil, vsserr.New(vsserr.E_INVALIDARG, "sqlite writer %s: bad database file name %q", cfg.Name, p)
		}
		if prev, ok := bases[base]; ok {
			return nil, vsserr.New(vsserr.E_INVALIDARG, "sqlite writer %s: databases %s and %s have the same base name (component name)", cfg.Name, prev, p)
		}
		bases[base] = p
		w.dbs = append(w.dbs, &database{path: p, dir: filepath.Dir(p), base: base})
	}
	return w, nil
}

// InstanceID returns the writer's instance ID.
func (w *Writer) InstanceID() uuid.UUID { return uuid.NewSHA1(ClassID, []byte(w.cfg.Name)) }

// logicalPath is the logical path of every component of the writer.
func (w *Writer) logicalPath() string { return `SQLite\` + w.cfg.Name }

// Identify returns the Writer Metadata Document: one database component
// per database file.
func (w *Writer) Identify(ctx context.Context) (*vssmeta.WriterMetadata, error) {
	md := &vssmeta.WriterMetadata{
		WriterID:     ClassID,
		InstanceID:   w.InstanceID(),
		Name:         WriterName,
		InstanceName: w.cfg.Name,
		Usage:        vssmeta.UsageUserData,
		Source:       vssmeta.SourceTransactedDB,
		Schema:       vssmeta.SchemaCopy | vssmeta.SchemaWriterSupportsNewTarget | vssmeta.SchemaWriterSupportsRestoreWithMove | vssmeta.SchemaRestoreRename,
		Restore: vssmeta.RestoreMethodInfo{
			Method:        vssmeta.RestoreIfCanReplace,
			WriterRestore: vssmeta.WriterRestoreAlways,
		},
	}
	for _, d := range w.dbs {
		md.Components = append(md.Components, vssmeta.Component{
			Type:                 vssmeta.ComponentDatabase,
			LogicalPath:          w.logicalPath(),
			Name:                 d.base,
			Caption:              d.path,
			Selectable:           true,
			SelectableForRestore: true,
			Files:                []vssmeta.File{{Path: d.dir, Filespec: d.base + "*"}},
		})
	}
	return md, nil
}

// Handle delivers one event.
func (w *Writer) Handle(ctx context.Context, ev writers.Event, req *writers.Request) error {
	if req == nil {
		req = &writers.Request{}
	}
	switch ev {
	case writers.PrepareBackup, writers.PostSnapshot, writers.BackupComplete:
		return nil
	case writers.PrepareSnapshot:
		return w.prepareSnapshot(ctx, req)
	case writers.Freeze:
		return w.freeze(ctx, req)
	case writers.Thaw:
		return w.thaw()
	case writers.Abort, writers.BackupShutdown:
		w.mu.Lock()
		defer w.mu.Unlock()
		w.stopTimerLocked()
		w.expired = false
		w.releaseLocked("event " + ev.String())
		w.closeLocked()
		return nil
	case writers.PreRestore:
		return w.preRestore(ctx, req)
	case writers.PostRestore:
		return w.postRestore(ctx, req)
	}
	return vsserr.New(vsserr.E_INVALIDARG, "sqlite writer %s: unexpected event %v", w.cfg.Name, ev)
}

// Close releases the locks if they are held and closes the connections.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopTimerLocked()
	w.releaseLocked("close")
	w.closeLocked()
	return nil
}

// selected returns the databases the request is about: those of the
// selected components, or all when the request selects none.
func (w *Writer) selected(req *writers.Request) []*database {
	if req.Components == nil || len(req.Components.Components) == 0 {
		return w.dbs
	}
	var out []*database
	for _, d := range w.dbs {
		for _, c := range req.Components.Components {
			if c.Name == d.base && (c.LogicalPath == "" || c.LogicalPath == w.logicalPath()) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// dsn returns the data source name that opens path read-write without
// creating it.
func dsn(path string) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=rw"}
	return u.String()
}

// open opens a connection to d's database and reads its journal mode,
// waiting for a read lock until limit.
func (d *database) open(ctx context.Context, limit time.Time) error {
	db, err := sql.Open("sqlite", dsn(d.path))
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return err
	}
	d.db, d.conn = db, conn
	var mode string
	err = d.poll(ctx, limit, func() error {
		return conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	})
	if err != nil {
		d.close()
		return err
	}
	d.wal = strings.EqualFold(mode, "wal")
	return nil
}

func (d *database) setBusy(ctx context.Context, busy time.Duration) error {
	_, err := d.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", max(busy.Milliseconds(), 0)))
	return err
}

// poll runs f, which needs a lock of d's database, again and again while
// the lock is busy, until limit. SQLite's own busy handler sleeps up to
// 100 ms between tries, and an application that commits back to back
// leaves the locks free for microseconds only: it starves a waiter that
// sleeps that long (measured here on a rollback-journal database: no
// read lock and no write lock in 10 s). So the connection runs without a
// busy handler and poll tries again at once (yielding the processor) for
// its first second, then every 100 µs.
func (d *database) poll(ctx context.Context, limit time.Time, f func() error) error {
	if err := d.setBusy(ctx, 0); err != nil {
		return err
	}
	spinUntil := time.Now().Add(time.Second)
	for {
		err := f()
		now := time.Now()
		if err == nil || !isBusy(err) || !now.Before(limit) || ctx.Err() != nil {
			return err
		}
		if now.Before(spinUntil) {
			runtime.Gosched()
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

func (d *database) close() {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	if d.db != nil {
		d.db.Close()
		d.db = nil
	}
}

// errBusy marks a checkpoint that could not complete.
var errBusy = errors.New("busy")

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED (with any
// extended code) or errBusy.
func isBusy(err error) bool {
	if errors.Is(err, errBusy) {
		return true
	}
	var e *sqlitedrv.Error
	if errors.As(err, &e) {
		switch e.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return true
		}
	}
	return false
}

// isInterrupt reports whether err is SQLITE_INTERRUPT (the driver
// interrupts a statement when its context ends).
func isInterrupt(err error) bool {
	var e *sqlitedrv.Error
	return errors.As(err, &e) && e.Code()&0xff == 9
}

// ctxErr classifies an error that happened while ctx may have ended.
func ctxErr(ctx context.Context, err error, format string, args ...any) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || isInterrupt(err) {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, err, format, args...)
	}
	return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, format, args...)
}

// canonicalDir resolves symbolic links in dir (as far as it exists).
func canonicalDir(dir string) string {
	if p, err := filepath.EvalSymlinks(dir); err == nil {
		return p
	}
	return filepath.Clean(dir)
}

// covered reports whether dir is in one of the volumes: at or below a
// volume's path, with no mount point between the volume and dir.
func covered(mounts []volume.Mount, dir string, vols []string) bool {
	mp := ""
	if m, ok := volume.MountOf(mounts, dir); ok {
		mp = m.MountPoint
	}
	for _, v := range vols {
		if v == "" {
			continue
		}
		cv := canonicalDir(v)
		if !volume.Within(dir, cv) {
			continue
		}
		if mp == "" || volume.Within(cv, mp) {
			return true
		}
	}
	return false
}

// prepareSnapshot checks that the set covers every database, opens a
// connection to each and checkpoints the WAL databases.
func (w *Writer) prepareSnapshot(ctx context.Context, req *writers.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Leftovers of a set that never ended.
	w.stopTimerLocked()
	w.releaseLocked("new PrepareSnapshot")
	w.closeLocked()
	w.expired = false

	dbs := w.selected(req)
	mounts, err := volume.Mounts()
	if err != nil {
		w.log.Warn("cannot read the mount table; checking volume coverage by path only", "err", err)
	}
	for _, d := range dbs {
		if _, err := os.Stat(d.path); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s: database %s", w.cfg.Name, d.path)
		}
		if !covered(mounts, canonicalDir(d.dir), req.Volumes) {
			return vsserr.New(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT,
				"sqlite writer %s: database %s is on no volume of the set (%s)", w.cfg.Name, d.path, strings.Join(req.Volumes, ", "))
		}
	}
	for _, d := range dbs {
		if err := d.open(ctx, time.Now().Add(w.cfg.BusyTimeout)); err != nil {
			w.closeLocked()
			for _, o := range dbs {
				o.close()
			}
			if isBusy(err) {
				return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "sqlite writer %s: open %s", w.cfg.Name, d.path)
			}
			return ctxErr(ctx, err, "sqlite writer %s: open %s", w.cfg.Name, d.path)
		}
		w.active = append(w.active, d)
	}
	for _, d := range w.active {
		if !d.wal {
			continue
		}
		if err := w.checkpoint(ctx, d); err != nil {
			w.closeLocked()
			return err
		}
	}
	return nil
}

// checkpoint runs a TRUNCATE checkpoint on d, trying again while it is
// busy for a while, then settles for a PASSIVE one: a busy checkpoint
// only means that the shadow holds a longer WAL.
func (w *Writer) checkpoint(ctx context.Context, d *database) error {
	start := time.Now()
	limit := start.Add(min(checkpointWait, w.cfg.BusyTimeout))
	if dl, ok := ctx.Deadline(); ok {
		limit = minTime(limit, start.Add(time.Until(dl)/2))
	}
	tries := 0
	var logFrames, done int
	err := d.poll(ctx, limit, func() error {
		tries++
		var b int
		if err := d.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &logFrames, &done); err != nil {
			return err
		}
		if b != 0 {
			return errBusy
		}
		return nil
	})
	if err == nil {
		w.log.Debug("WAL checkpointed", "db", d.path, "took", time.Since(start), "tries", tries)
		return nil
	}
	if !isBusy(err) {
		return ctxErr(ctx, err, "sqlite writer %s: checkpoint %s", w.cfg.Name, d.path)
	}
	var b int
	err = d.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&b, &logFrames, &done)
	if err != nil && !isBusy(err) {
		return ctxErr(ctx, err, "sqlite writer %s: checkpoint %s", w.cfg.Name, d.path)
	}
	w.log.Warn("WAL could not be truncated (readers or writers busy); continuing with a passive checkpoint",
		"db", d.path, "tried", time.Since(start), "tries", tries, "wal_frames", logFrames, "checkpointed", done, "err", err)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// freeze takes the write lock of every active database.
func (w *Writer) freeze(ctx context.Context, req *writers.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.active) == 0 {
		return vsserr.New(vsserr.VSS_E_BAD_STATE, "sqlite writer %s: Freeze without PrepareSnapshot", w.cfg.Name)
	}
	if w.held {
		return vsserr.New(vsserr.VSS_E_BAD_STATE, "sqlite writer %s: already frozen", w.cfg.Name)
	}
	start := time.Now()
	limit := start.Add(w.cfg.BusyTimeout)
	byCtx := false
	// Keep a little time to answer before ctx ends.
	const margin = 50 * time.Millisecond
	if dl, ok := ctx.Deadline(); ok && dl.Add(-margin).Before(limit) {
		limit, byCtx = dl.Add(-margin), true
	}
	if !req.Deadline.IsZero() && req.Deadline.Before(limit) {
		limit, byCtx = req.Deadline, true
	}
	w.expired = false
	w.gen++
	for i, d := range w.active {
		if d.conn == nil {
			w.rollback(w.active[:i])
			return vsserr.New(vsserr.VSS_E_BAD_STATE, "sqlite writer %s: connection to %s was lost; run PrepareSnapshot again", w.cfg.Name, d.path)
		}
		wait := time.Until(limit)
		if wait <= 0 {
			w.rollback(w.active[:i])
			return vsserr.New(vsserr.VSS_E_WRITERERROR_TIMEOUT, "sqlite writer %s: no time left to lock %s", w.cfg.Name, d.path)
		}
		err := d.lockWrite(ctx, limit)
		if err != nil {
			w.rollback(w.active[:i])
			took := time.Since(start).Round(time.Millisecond)
			switch {
			case isBusy(err) && byCtx:
				return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, err, "sqlite writer %s: %s stayed locked by another writer for %v", w.cfg.Name, d.path, took)
			case isBusy(err):
				return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "sqlite writer %s: %s stayed locked by another writer for %v", w.cfg.Name, d.path, took)
			}
			return ctxErr(ctx, err, "sqlite writer %s: lock %s", w.cfg.Name, d.path)
		}
	}
	w.held = true
	window := DefaultFreezeWindow
	if !req.Deadline.IsZero() {
		window = time.Until(req.Deadline)
	}
	gen := w.gen
	w.timer = time.AfterFunc(window, func() { w.expire(gen) })
	w.log.Info("frozen: write locks held", "databases", len(w.active), "took", time.Since(start), "until", time.Now().Add(window))
	return nil
}

// lockWrite takes d's write lock (BEGIN IMMEDIATE) by limit.
func (d *database) lockWrite(ctx context.Context, limit time.Time) error {
	return d.poll(ctx, limit, func() error {
		_, err := d.conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		return err
	})
}

// expire releases the locks of freeze generation gen at its deadline.
func (w *Writer) expire(gen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gen != gen || !w.held {
		return
	}
	w.log.Warn("freeze deadline passed without Thaw: releasing the write locks")
	w.releaseLocked("freeze deadline")
	w.expired = true
}

// thaw releases the write locks.
func (w *Writer) thaw() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopTimerLocked()
	if w.expired {
		w.expired = false
		return vsserr.New(vsserr.VSS_E_WRITERERROR_TIMEOUT,
			"sqlite writer %s: the freeze deadline passed before Thaw; the write locks were released early", w.cfg.Name)
	}
	if !w.held {
		return nil
	}
	w.releaseLocked("thaw")
	return nil
}

func (w *Writer) stopTimerLocked() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

// releaseLocked rolls back the transactions that hold the write locks.
func (w *Writer) releaseLocked(why string) {
	if !w.held {
		return
	}
	w.rollback(w.active)
	w.held = false
	w.log.Info("write locks released", "why", why)
}

// rollback ends the transactions of dbs. A connection whose ROLLBACK
// fails is closed: closing it drops its locks.
func (w *Writer) rollback(dbs []*database) {
	for _, d := range dbs {
		if d.conn == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.conn.ExecContext(ctx, "ROLLBACK")
		cancel()
		if err != nil {
			w.log.Error("ROLLBACK failed; closing the connection to release the lock", "db", d.path, "err", err)
			d.close()
		}
	}
}

// closeLocked closes the connections of the set.
func (w *Writer) closeLocked() {
	for _, d := range w.active {
		d.close()
	}
	w.active = nil
}

// preRestore makes sure nobody uses the databases to be restored in place
// and removes their -wal and -shm files.
func (w *Writer) preRestore(ctx context.Context, req *writers.Request) error {
	if req.Elsewhere() {
		return nil // restored elsewhere or under a new name: the live databases stay as they are
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held {
		return vsserr.New(vsserr.VSS_E_BAD_STATE, "sqlite writer %s: PreRestore while frozen", w.cfg.Name)
	}
	w.closeLocked() // our own connections would count as users
	for _, d := range w.selected(req) {
		if err := w.preRestoreOne(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func fileSize(path string) (int64, bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), true, nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (w *Writer) preRestoreOne(ctx context.Context, d *database) error {
	walPath, shmPath := d.path+"-wal", d.path+"-shm"
	if _, err := os.Stat(d.path); errors.Is(err, os.ErrNotExist) {
		// Nothing to take; but a WAL without its database cannot be
		// checked, and would be replayed onto the restored file.
		size, ok, err := fileSize(walPath)
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s", w.cfg.Name)
		}
		if ok && size > 0 {
			return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE,
				"sqlite writer %s: %s exists without its database; it cannot be checked and would be applied to the restored file (remove it by hand)", w.cfg.Name, walPath)
		}
		if err := errors.Join(removeIfExists(walPath), removeIfExists(shmPath)); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s", w.cfg.Name)
		}
		return nil
	} else if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s", w.cfg.Name)
	}

	limit := time.Now().Add(restoreBusy)
	if dl, ok := ctx.Deadline(); ok {
		limit = minTime(limit, time.Now().Add(time.Until(dl)/3))
	}
	inUse := func(err error) error {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "sqlite writer %s: database %s in use", w.cfg.Name, d.path)
	}
	if err := d.open(ctx, limit); err != nil {
		if isBusy(err) {
			return inUse(err)
		}
		return ctxErr(ctx, err, "sqlite writer %s: open %s", w.cfg.Name, d.path)
	}
	wal := d.wal
	err := func() error {
		defer d.close()
		// In EXCLUSIVE locking mode, BEGIN EXCLUSIVE takes an exclusive
		// lock on the database file, also in WAL mode, where every open
		// connection holds a shared one: it fails if any other
		// connection, in any process, has the database open. The lock
		// stays after the ROLLBACK, until the connection closes.
		if _, err := d.conn.ExecContext(ctx, "PRAGMA locking_mode = EXCLUSIVE"); err != nil {
			return ctxErr(ctx, err, "sqlite writer %s: %s", w.cfg.Name, d.path)
		}
		err := d.poll(ctx, limit, func() error {
			_, err := d.conn.ExecContext(ctx, "BEGIN EXCLUSIVE")
			return err
		})
		if err == nil {
			_, err = d.conn.ExecContext(ctx, "ROLLBACK")
		}
		if err != nil {
			if isBusy(err) {
				return inUse(err)
			}
			return ctxErr(ctx, err, "sqlite writer %s: lock %s", w.cfg.Name, d.path)
		}
		if !wal {
			return nil
		}
		var b, logFrames, done int
		err = d.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &logFrames, &done)
		if err == nil && b != 0 {
			err = errBusy
		}
		if err != nil {
			if isBusy(err) {
				return inUse(fmt.Errorf("its WAL cannot be checkpointed: %w", err))
			}
			return ctxErr(ctx, err, "sqlite writer %s: checkpoint %s", w.cfg.Name, d.path)
		}
		return nil
	}()
	if err != nil {
		return err
	}
	// Closing the last connection checkpoints and removes the WAL; if it
	// is still there, it must be empty.
	size, ok, err := fileSize(walPath)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s", w.cfg.Name)
	}
	if ok && size > 0 {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_RETRYABLE,
			"sqlite writer %s: database %s in use: %s holds %d bytes after the checkpoint", w.cfg.Name, d.path, walPath, size)
	}
	if err := errors.Join(removeIfExists(walPath), removeIfExists(shmPath)); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s", w.cfg.Name)
	}
	w.log.Info("database released for restore", "db", d.path, "wal", wal)
	return nil
}

// restoredPath returns where database d is after a restore of req.
func (w *Writer) restoredPath(d *database, req *writers.Request) string {
	name := d.base
	dir := d.dir
	if req.Components != nil {
		for _, c := range req.Components.Components {
			if c.Name != d.base {
				continue
			}
			if c.RestoreName != "" {
				name = c.RestoreName
			}
			for _, nt := range c.NewTargets {
				if filepath.Clean(nt.Path) == d.dir && nt.AlternatePath != "" {
					dir = nt.AlternatePath
				}
			}
		}
	}
	if req.RestoreTarget == "" {
		return filepath.Join(dir, name)
	}
	// Restore with move: the files are in the target directory, by
	// themselves or under their original path.
	if p := filepath.Join(req.RestoreTarget, name); fileExists(p) {
		return p
	}
	return filepath.Join(req.RestoreTarget, dir, name)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// postRestore checks the integrity of every restored database.
func (w *Writer) postRestore(ctx context.Context, req *writers.Request) error {
	for _, d := range w.selected(req) {
		p := w.restoredPath(d, req)
		if err := w.checkIntegrity(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) checkIntegrity(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "sqlite writer %s: restored database", w.cfg.Name)
	}
	d := &database{path: path}
	if err := d.open(ctx, time.Now().Add(restoreBusy)); err != nil {
		if isBusy(err) {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "sqlite writer %s: restored database %s in use", w.cfg.Name, path)
		}
		return ctxErr(ctx, err, "sqlite writer %s: open restored database %s", w.cfg.Name, path)
	}
	defer d.close()
	rows, err := d.conn.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return ctxErr(ctx, err, "sqlite writer %s: integrity check of %s", w.cfg.Name, path)
	}
	defer rows.Close()
	var first string
	if rows.Next() {
		err = rows.Scan(&first)
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return ctxErr(ctx, err, "sqlite writer %s: integrity check of %s", w.cfg.Name, path)
	}
	if first != "ok" {
		return vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "sqlite writer %s: restored database %s fails its integrity check: %s", w.cfg.Name, path, first)
	}
	w.log.Info("restored database passes its integrity check", "db", path)
	return nil
}
