package coordinator

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
)

// SetInfo is what writers are told about the set being made.
type SetInfo struct {
	ID      uuid.UUID
	Context vss.Context
	Volumes []*volume.Volume
	// ShadowPaths maps a volume path to its shadow's path; it is filled
	// after the commit, for PostSnapshot (a writer may finish the shadow
	// there: auto-recovery).
	ShadowPaths map[string]string
	// FreezeDeadline is the end of the freeze window, set before Freeze: a
	// writer not thawed by then thaws by itself.
	FreezeDeadline time.Time
	// Atomic says every shadow of the set is taken at one instant by its
	// provider (crash-consistent by itself, a btrfs snapshot): a writer
	// whose application recovers from a crash may hold nothing.
	Atomic bool
}

// Writer is an application that takes part in a set: it brings its data to
// a consistent state on Freeze and resumes on Thaw. Every call must honour
// ctx's deadline; an error vetoes the set (classify it with a
// VSS_E_WRITERERROR_* code). Abort may come at any point after
// PrepareSnapshot, more than once, and must undo a freeze.
type Writer interface {
	Name() string
	PrepareSnapshot(ctx context.Context, set *SetInfo) error
	Freeze(ctx context.Context, set *SetInfo) error
	Thaw(ctx context.Context, set *SetInfo) error
	PostSnapshot(ctx context.Context, set *SetInfo) error
	Abort(ctx context.Context, set *SetInfo) error
}
