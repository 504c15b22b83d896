// Package postgres is the built-in PostgreSQL writer: one writer instance
// per cluster, one database component per cluster.
//
// A backup is a non-exclusive low-level backup held by a session of the
// writer (so inside the service process: if the service dies, the session
// dies and PostgreSQL ends the backup):
//
//   - PrepareSnapshot checks that the set has every volume the cluster
//     lives on, opens the session, creates a temporary physical
//     replication slot that reserves WAL (no segment the backup needs is
//     recycled) and calls pg_backup_start(fast => true).
//   - Freeze holds nothing (the backup is already in progress) but arms a
//     timer to the freeze deadline: if neither Thaw nor Abort comes by
//     then, the writer ends the session by itself.
//   - Thaw calls pg_backup_stop, which writes the backup-end record and
//     switches the WAL segment, and keeps the backup label and tablespace
//     map it returns.
//   - PostSnapshot finishes each shadow copy so that a server started on
//     it recovers to the stop point: it writes backup_label and
//     tablespace_map (tablespaces pointing into their shadows), copies the
//     WAL segments from the start to the stop segment into the shadow's
//     pg_wal and removes postmaster.pid and postmaster.opts. Atomic and
//     non-atomic (reflink, copy) snapshots work alike.
//   - Abort, BackupShutdown and Close end the session, which aborts the
//     backup and drops the temporary slot.
//
// A restore in place stops the server (PreRestore) and starts it again
// (PostRestore), where PostgreSQL recovers from the restored backup_label.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// ClassID is the writer class ID of every PostgreSQL writer.
var ClassID = uuid.MustParse("5b0c3e8a-7f21-4d6e-9c4b-1a2d3f4e5c60")

// WriterName is the writer name the tools print.
const WriterName = "PostgreSQL Writer"

// LogicalPath is the logical path of the writer's components.
const LogicalPath = "PostgreSQL"

// Schema is what kinds of backup the writer supports.
const Schema = vssmeta.SchemaDifferential | vssmeta.SchemaIncremental | vssmeta.SchemaCopy |
	vssmeta.SchemaWriterSupportsNewTarget | vssmeta.SchemaWriterSupportsRestoreWithMove |
	vssmeta.SchemaRestoreRename

// applicationName tells the writer's sessions apart in pg_stat_activity.
const applicationName = "vss postgresql writer"

// Config configures one writer instance: one cluster.
type Config struct {
	// Name is the instance name ("main"); it is also the component name.
	Name string
	// DSN is the pgx connection string of a superuser (or of a role
	// granted pg_backup_start, pg_backup_stop and replication slots).
	DSN string
	// DataDir is the cluster's data directory; asked from the server
	// (SHOW data_directory) when empty.
	DataDir string
	// StopCommand stops the server for a restore in place; default
	// pg_ctl -D DataDir stop -m fast, run as the data directory's owner.
	StopCommand []string
	// StartCommand starts it again; default pg_ctl -D DataDir start
	// (with its log in DataDir/log), run as the data directory's owner.
	StartCommand []string
	// BackupMode says when the writer puts the cluster in backup mode
	// (pg_backup_start … pg_backup_stop, a backup label in the shadow):
	// BackupModeAuto (the default) does it unless the set is atomic (every
	// shadow taken at one instant, a btrfs snapshot) and the cluster lies
	// in one directory (no tablespace, no pg_wal link elsewhere) — then the
	// shadow is crash-consistent at one instant, which PostgreSQL recovers
	// from exactly, and the immediate checkpoint of pg_backup_start (an I/O
	// burst the application feels) is not needed; BackupModeAlways always
	// does it.
	BackupMode string
}

// The backup modes.
const (
	BackupModeAuto   = "auto"
	BackupModeAlways = "always"
)

// Writer is the PostgreSQL writer of one cluster. It implements
// writers.Writer and writers.Closer.
type Writer struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // serializes events
	sessMu   sync.Mutex // guards sess (held briefly; Abort takes only this one first)
	sess     *session
	lastStop string  // stop LSN of the last finished backup
	restore  *layout // layout seen at PreRestore in place
}

var (
	_ writers.Writer = (*Writer)(nil)
	_ writers.Closer = (*Writer)(nil)
)

// New returns the writer of the cluster cfg describes. It does not
// connect: the server may be down until the first event.
func New(cfg Config, log *slog.Logger) (*Writer, error) {
	if cfg.Name == "" {
		return nil, errors.New("postgresql writer: the instance name is empty")
	}
	switch cfg.BackupMode {
	case "", BackupModeAuto, BackupModeAlways:
	default:
		return nil, fmt.Errorf("postgresql writer %s: backup mode %q is not auto or always", cfg.Name, cfg.BackupMode)
	}
	if _, err := pgx.ParseConfig(cfg.DSN); err != nil {
		return nil, fmt.Errorf("postgresql writer %s: bad DSN: %w", cfg.Name, err)
	}
	if cfg.DataDir != "" {
		if !filepath.IsAbs(cfg.DataDir) {
			return nil, fmt.Errorf("postgresql writer %s: data directory %q is not absolute", cfg.Name, cfg.DataDir)
		}
		cfg.DataDir = filepath.Clean(cfg.DataDir)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Writer{cfg: cfg, log: log.With("writer", "postgresql", "instance", cfg.Name)}, nil
}

// InstanceID returns the instance ID of the writer of cluster name with
// data directory dataDir.
func InstanceID(name, dataDir string) uuid.UUID {
	return uuid.NewSHA1(ClassID, []byte(name+dataDir))
}

// Identify returns the Writer Metadata Document: one database component
// with the data directory, the tablespaces and a WAL directory outside
// the data directory. It asks the server; when the server is down and the
// data directory is configured, it reads the layout from the disk.
func (w *Writer) Identify(ctx context.Context) (*vssmeta.WriterMetadata, error) {
	l, err := w.serverLayout(ctx)
	if err != nil {
		if w.cfg.DataDir == "" {
			return nil, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "postgresql %s: cannot ask the server for its data directory", w.cfg.Name)
		}
		w.log.Info("server does not answer; reading the cluster layout from the disk", "err", err)
		if l, err = diskLayout(w.cfg.DataDir); err != nil {
			return nil, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, err, "postgresql %s", w.cfg.Name)
		}
	}
	return w.metadata(l), nil
}

func (w *Writer) metadata(l *layout) *vssmeta.WriterMetadata {
	files := []vssmeta.File{{Path: l.dataDir, Filespec: "*", Recursive: true}}
	for _, ts := range l.tablespaces {
		files = append(files, vssmeta.File{Path: ts.location, Filespec: "*", Recursive: true})
	}
	if l.walDir != "" {
		files = append(files, vssmeta.File{Path: l.walDir, Filespec: "*", Recursive: true, Log: true})
	}
	return &vssmeta.WriterMetadata{
		WriterID:     ClassID,
		InstanceID:   InstanceID(w.cfg.Name, l.dataDir),
		Name:         WriterName,
		InstanceName: w.cfg.Name,
		Usage:        vssmeta.UsageUserData,
		Source:       vssmeta.SourceTransactedDB,
		Schema:       Schema,
		Restore: vssmeta.RestoreMethodInfo{
			Method:        vssmeta.RestoreStopStart,
			Service:       w.cfg.Name,
			WriterRestore: vssmeta.WriterRestoreAlways,
		},
		Components: []vssmeta.Component{{
			Type:                   vssmeta.ComponentDatabase,
			LogicalPath:            LogicalPath,
			Name:                   w.cfg.Name,
			Caption:                fmt.Sprintf("PostgreSQL cluster %s (%s)", w.cfg.Name, l.dataDir),
			Flags:                  vssmeta.FlagBackupRecovery,
			Selectable:             true,
			SelectableForRestore:   true,
			NotifyOnBackupComplete: true,
			Files:                  files,
		}},
		Excludes: []vssmeta.File{
			{Path: l.dataDir, Filespec: "postmaster.pid"},
			{Path: l.dataDir, Filespec: "postmaster.opts"},
		},
	}
}

// Handle delivers one event.
func (w *Writer) Handle(ctx context.Context, ev writers.Event, req *writers.Request) error {
	if req == nil {
		req = &writers.Request{}
	}
	if ev == writers.Abort {
		// Cut the session first, so that an event still running on it
		// (a slow checkpoint in pg_backup_start) ends now.
		if s := w.current(); s != nil {
			s.kill("abort")
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev {
	case writers.PrepareBackup:
		return nil
	case writers.PrepareSnapshot:
		return w.prepareSnapshot(ctx, req)
	case writers.Freeze:
		return w.freeze(ctx, req)
	case writers.Thaw:
		return w.thaw(ctx)
	case writers.PostSnapshot:
		return w.postSnapshot(ctx, req)
	case writers.Abort:
		w.endSession(ctx, "abort")
		return nil
	case writers.BackupComplete:
		w.backupComplete(req)
		return nil
	case writers.BackupShutdown:
		w.endSession(ctx, "backup shutdown")
		return nil
	case writers.PreRestore:
		return w.preRestore(ctx, req)
	case writers.PostRestore:
		return w.postRestore(ctx, req)
	default:
		return vsserr.New(vsserr.VSS_E_BAD_STATE, "postgresql %s: Handle does not take %s", w.cfg.Name, ev)
	}
}

// backupComplete records the stop LSN of the backup as the component's
// backup stamp.
func (w *Writer) backupComplete(req *writers.Request) {
	if req.Components == nil || w.lastStop == "" {
		return
	}
	for i := range req.Components.Components {
		c := &req.Components.Components[i]
		if c.Name == w.cfg.Name && c.LogicalPath == LogicalPath {
			c.BackupStamp = w.lastStop
		}
	}
}

// Close ends a backup still in progress and closes the connection.
func (w *Writer) Close() error {
	if s := w.current(); s != nil {
		s.kill("close")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endSession(context.Background(), "close")
	return nil
}

func (w *Writer) current() *session {
	w.sessMu.Lock()
	defer w.sessMu.Unlock()
	return w.sess
}

func (w *Writer) setSession(s *session) {
	w.sessMu.Lock()
	w.sess = s
	w.sessMu.Unlock()
}
