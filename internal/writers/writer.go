// Package writers is the service side of the writer framework: the events
// a writer receives, the Writer interface every kind of writer (built-in,
// hook, SDK over the API) implements, and the registry that tracks each
// writer's state and last error and drives the writers of a set.
package writers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/pkg/vssmeta"
)

// Event is a VSS writer event.
type Event int

// The events, in the order a backup and a restore send them.
const (
	Identify Event = iota
	PrepareBackup
	PrepareSnapshot
	Freeze
	Thaw
	PostSnapshot
	Abort
	BackupComplete
	BackupShutdown
	PreRestore
	PostRestore
)

var eventNames = [...]string{"Identify", "PrepareBackup", "PrepareSnapshot", "Freeze", "Thaw", "PostSnapshot",
	"Abort", "BackupComplete", "BackupShutdown", "PreRestore", "PostRestore"}

// Events lists every event in order.
var Events = []Event{Identify, PrepareBackup, PrepareSnapshot, Freeze, Thaw, PostSnapshot, Abort,
	BackupComplete, BackupShutdown, PreRestore, PostRestore}

// String returns the VSS name of the event ("PrepareSnapshot").
func (e Event) String() string {
	if e >= 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", int(e))
}

// ParseEvent reads an event name, case-insensitively, with or without
// dashes or underscores ("prepare-snapshot", "PrepareSnapshot").
func ParseEvent(s string) (Event, error) {
	k := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s))
	for i, n := range eventNames {
		if strings.ToLower(n) == k {
			return Event(i), nil
		}
	}
	return 0, fmt.Errorf("unknown writer event %q (one of %s)", s, strings.Join(eventNames[:], ", "))
}

// Request is what a writer is told with an event. Fields that do not apply
// to an event are zero.
type Request struct {
	// SetID is the shadow copy set (zero for Identify and restores).
	SetID uuid.UUID
	// Context is the set's VSS_SNAPSHOT_CONTEXT.
	Context uint32
	// BackupType is the requester's backup type.
	BackupType vssmeta.BackupType
	// Volumes are the mount paths of the set's volumes.
	Volumes []string
	// ShadowPaths maps each volume's mount path to the path where its
	// shadow copy is readable. Filled from PostSnapshot on; in
	// PostSnapshot the shadows are writable so that the writer can finish
	// them (auto-recovery: a backup label, a recovery file).
	ShadowPaths map[string]string
	// Components are this writer's components the requester selected (for
	// a restore: selected for restore, with new targets or a new name).
	// A writer may change them in PrepareBackup, PostSnapshot and
	// BackupComplete (backup stamps, partial files, private metadata);
	// the changes go back into the Backup Components Document.
	Components *vssmeta.WriterComponents
	// Deadline is when the writer must have answered. For Freeze it is
	// also the end of the freeze window: a writer that has not been thawed
	// by then thaws by itself.
	Deadline time.Time
	// RestoreTarget is, for PreRestore and PostRestore, the directory the
	// requester restores into when it is not the original place (restore
	// with move); empty for a restore in place.
	RestoreTarget string
	// Atomic says every shadow of the set is taken at one instant by its
	// provider: an application that recovers from a crash (a database with
	// a write-ahead log) needs no backup mode to be consistent in it.
	Atomic bool
}

// Elsewhere reports whether a restore leaves the live files alone: it goes
// into another directory (RestoreTarget, or a component's new target) or
// under a new name (a component's RestoreName). A writer must then keep
// its application running, and touch only the restored copy.
func (r *Request) Elsewhere() bool {
	if r.RestoreTarget != "" {
		return true
	}
	if r.Components != nil {
		for _, c := range r.Components.Components {
			if c.RestoreName != "" || len(c.NewTargets) > 0 {
				return true
			}
		}
	}
	return false
}

// RestoreName returns the new name the requester gave the component name
// for a restore, or "".
func (r *Request) RestoreName(name string) string {
	if r.Components != nil {
		for _, c := range r.Components.Components {
			if c.Name == name {
				return c.RestoreName
			}
		}
	}
	return ""
}

// Writer is one writer instance as the service drives it. Handle must
// return by ctx's deadline; an error vetoes the event and should carry a
// VSS_E_WRITERERROR_* code (vsserr) — a plain error counts as
// VSS_E_UNEXPECTED_WRITER_ERROR. Abort may come at any point after
// PrepareSnapshot, more than once, and must undo a freeze. A frozen writer
// must thaw by itself when its Freeze deadline passes or when the service
// that froze it goes away.
type Writer interface {
	// Identify returns the Writer Metadata Document. It may be called at
	// any time and must not change the writer's state.
	Identify(ctx context.Context) (*vssmeta.WriterMetadata, error)
	// Handle delivers one event (never Identify).
	Handle(ctx context.Context, ev Event, req *Request) error
}

// Liveness is implemented by writers that can be gone before the registry
// hears of it (an API writer whose stream has just closed): a writer that
// is not alive takes part in no new set.
type Liveness interface {
	Alive() bool
}

// Closer is implemented by writers that hold resources (connections) the
// registry releases when it drops them.
type Closer interface {
	Close() error
}
