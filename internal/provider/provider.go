// Package provider is the contract between the coordinator and the providers
// that turn a volume into a point-in-time shadow copy, following the VSS
// provider life cycle:
//
//	Prepare (BeginPrepareSnapshot) → Snapshot.EndPrepare (EndPrepareSnapshots:
//	all slow work) → Snapshot.PreCommit → hold → Snapshot.Commit → release →
//	Snapshot.PostCommit; Snapshot.Abort at any point before the catalog commit.
//
// and, for shadows that exist, Delete, Revert and Usage. Every provider lives
// in a package of its own and passes the one conformance suite in
// providertest.
//
// # Vocabulary
//
// The volume is what is shadowed. The storage is the directory that holds a
// volume's shadows ("<on>/.vss", the diff area); a shadow's path is
// Storage/<shadow GUID>. The hold is the window in which the coordinator has
// frozen what may be frozen and calls Commit on every volume of the set.
package provider

import (
	"context"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
)

// Method is how a provider makes a shadow copy.
type Method int

// The methods.
const (
	RedirectOnWrite Method = iota + 1 // btrfs: new writes go to new extents
	CopyOnWrite                       // reflink: files share extents until written
	CompleteCopy                      // copy: a full, independent copy ("split mirror")
)

// String names the method.
func (m Method) String() string {
	switch m {
	case RedirectOnWrite:
		return "redirect-on-write"
	case CopyOnWrite:
		return "copy-on-write"
	case CompleteCopy:
		return "complete copy"
	}
	return "unknown"
}

// Type is a VSS_PROVIDER_TYPE.
type Type int

// The provider types.
const (
	TypeSystem   Type = 1
	TypeSoftware Type = 2
	TypeHardware Type = 3
)

// String returns the word vssadmin prints.
func (t Type) String() string {
	switch t {
	case TypeSystem:
		return "System"
	case TypeSoftware:
		return "Software"
	case TypeHardware:
		return "Hardware"
	}
	return "Unknown"
}

// Info describes a provider.
type Info struct {
	Name        string    // short name, used by /provider=
	DisplayName string    // what vssadmin prints in "Provider name:"
	ID          uuid.UUID // fixed forever
	Type        Type
	Version     string
	Method      Method
	// CrashConsistent says the commit captures the whole volume at one
	// instant, also for applications that are not writers.
	CrashConsistent bool
	// Attributes are added to the attributes of every shadow it makes
	// (Differential or Plex).
	Attributes vss.Attr
	// Description is one sentence for "list providers".
	Description string
}

// Request asks for one volume's shadow.
type Request struct {
	Volume   *volume.Volume
	ShadowID uuid.UUID
	// Storage is the directory that holds the volume's shadows; it exists
	// (InitStorage made it).
	Storage string
	// StorageVolume is the volume Storage lies on.
	StorageVolume *volume.Volume
	// Exclude lists absolute paths inside the volume that are not part of
	// it (the storage directories); file-level providers leave them out.
	Exclude []string
}

// Path returns where the shadow goes: Storage/<ShadowID>.
func (r *Request) Path() string { return filepath.Join(r.Storage, r.ShadowID.String()) }

// RevertOptions tunes Revert.
type RevertOptions struct {
	// Exclude lists absolute paths inside the volume that revert must leave
	// alone (the storage directories).
	Exclude []string
	// Progress, when set, is told how many entries are done of how many.
	Progress func(done, total int64)
}

// Provider makes, deletes and reverts shadows.
type Provider interface {
	// Info describes the provider.
	Info() Info
	// Supports returns nil when the provider can shadow v with its storage
	// on sv, else an error classified VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER
	// that says why.
	Supports(ctx context.Context, v, sv *volume.Volume) error
	// InitStorage makes the storage directory dir (a subvolume for btrfs) if
	// it does not exist.
	InitStorage(ctx context.Context, dir string) error
	// Prepare begins a shadow (BeginPrepareSnapshot). It must be quick.
	Prepare(ctx context.Context, req Request) (Snapshot, error)
	// Delete removes the shadow at path. A path that does not exist is not
	// an error, so Delete can finish an interrupted deletion.
	Delete(ctx context.Context, path string) error
	// Revert makes the volume v identical to the shadow at path. It is
	// idempotent: running it again after an interruption completes it.
	Revert(ctx context.Context, path string, v *volume.Volume, o RevertOptions) error
	// Usage returns the bytes of storage that the shadows at paths (all of
	// volume v) hold, as the filesystem reports them.
	Usage(ctx context.Context, v *volume.Volume, paths []string) (int64, error)
}

// Snapshot is one volume's shadow in the making.
type Snapshot interface {
	// EndPrepare does the slow preparation (a pre-copy) before writers
	// freeze.
	EndPrepare(ctx context.Context) error
	// FreezeTarget is the mount point whose filesystem the coordinator
	// should freeze during the hold so the commit is crash-consistent, or
	// "" when the provider needs no freeze (or must not have one).
	FreezeTarget() string
	// Writes lists paths this snapshot writes to during Commit: the
	// coordinator never freezes their filesystems.
	Writes() []string
	// PreCommit runs just before the hold.
	PreCommit(ctx context.Context) error
	// Commit makes the shadow, inside the hold. It must be fast.
	Commit(ctx context.Context) error
	// PostCommit runs after the release: the shadow is made final here.
	PostCommit(ctx context.Context) error
	// Abort removes whatever was made; it may be called at any point,
	// also after PostCommit (when a later step of the set fails), and more
	// than once.
	Abort(ctx context.Context) error
	// Stats reports what the commit did, for the benchmarks and the log.
	Stats() Stats
}

// Stats counts the work of one shadow.
type Stats struct {
	PreparedBytes int64 // bytes copied before the hold
	CommitBytes   int64 // bytes copied or cloned inside the hold
	CommitEntries int64 // entries looked at inside the hold
	Frozen        bool  // the coordinator held the filesystem frozen for the commit
}

// Recoverable is implemented by snapshots whose shadow is read-only once
// made: the coordinator makes it writable for the writers' PostSnapshot
// (VSS auto-recovery: a writer finishes the shadow, e.g. writes a backup
// label into it) and read-only again afterwards. Shadows of providers that
// do not implement it are plain directories the service may write.
type Recoverable interface {
	SetWritable(ctx context.Context, writable bool) error
}

// HeldSetter is implemented by snapshots that want to know whether their
// FreezeTarget was frozen for the commit (it decides whether the shadow is
// crash-consistent).
type HeldSetter interface {
	SetHeld(frozen bool)
}
