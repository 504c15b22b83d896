package catalog

import (
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vss"
)

// Shadow is one shadow copy of one volume. The JSON names are the stable
// field names of `--format json` too.
type Shadow struct {
	ID                 uuid.UUID   `json:"id"`
	SetID              uuid.UUID   `json:"set_id"`
	SetCount           int         `json:"set_count"` // shadows in the set at creation
	VolumeID           uuid.UUID   `json:"original_volume_id"`
	VolumePath         string      `json:"original_volume"`
	VolumeName         string      `json:"original_volume_name"`
	ShadowPath         string      `json:"shadow_volume"`
	StoragePath        string      `json:"storage_path"`
	StorageVolumeID    uuid.UUID   `json:"storage_volume_id"`
	Provider           string      `json:"provider"`
	ProviderID         uuid.UUID   `json:"provider_id"`
	Created            time.Time   `json:"created"`
	Context            vss.Context `json:"context"`
	Attributes         vss.Attr    `json:"attributes"`
	OriginatingMachine string      `json:"originating_machine"`
	ServiceMachine     string      `json:"service_machine"`
	ExposedName        string      `json:"exposed_name,omitempty"`
	ExposedPath        string      `json:"exposed_path,omitempty"`
	// ExposedUid is the user who exposed it (0: root): another user than
	// root may unexpose only its own exposures.
	ExposedUid uint32 `json:"exposed_uid,omitempty"`
	// CrashConsistent says the commit captured the volume at one instant
	// for every application (btrfs, or a copy under a freeze).
	CrashConsistent bool `json:"crash_consistent"`
	// Owner is the session of the requester that owns an auto-release
	// shadow; it is released when that session ends.
	Owner string `json:"owner,omitempty"`
}

// Set is a shadow copy set.
type Set struct {
	ID      uuid.UUID   `json:"id"`
	Created time.Time   `json:"created"`
	Context vss.Context `json:"context"`
	Count   int         `json:"count"`
	Shadows []uuid.UUID `json:"shadows"`
}

// Volume is a volume the service has seen.
type Volume struct {
	ID     uuid.UUID `json:"id"`
	Path   string    `json:"path"`
	FSType string    `json:"fs_type"`
	FSUUID string    `json:"fs_uuid"`
}

// MaxSizeKind says how a storage limit is given.
type MaxSizeKind int

// The kinds of limit.
const (
	Unbounded MaxSizeKind = iota
	Bytes
	Percent
)

// Storage is a shadow storage association: the shadows of volume For live
// on volume On and may use at most MaxSize.
type Storage struct {
	For      uuid.UUID   `json:"for"`
	ForPath  string      `json:"for_path"`
	On       uuid.UUID   `json:"on"`
	OnPath   string      `json:"on_path"`
	Kind     MaxSizeKind `json:"max_kind"`
	MaxValue uint64      `json:"max_value"` // bytes, or a percentage
}

// PendingItem is one volume of a set being created.
type PendingItem struct {
	ShadowID   uuid.UUID `json:"shadow_id"`
	Provider   string    `json:"provider"`
	Path       string    `json:"path"`
	VolumePath string    `json:"volume_path"`
}

// Pending is the journal of a set being created: written before any
// provider makes anything, removed in the transaction that commits the set.
// What a crash leaves here is rolled back at the next start.
type Pending struct {
	SetID   uuid.UUID     `json:"set_id"`
	Started time.Time     `json:"started"`
	Pid     int           `json:"pid"`
	Items   []PendingItem `json:"items"`
}

// Freeze records a filesystem frozen (or about to be) for a hold, so that a
// restarted service thaws it whatever happened.
type Freeze struct {
	Path  string    `json:"path"`
	SetID uuid.UUID `json:"set_id"`
	Pid   int       `json:"pid"`
	Since time.Time `json:"since"`
}

// Revert is the journal of a revert in progress; a restarted service
// completes it (a revert cannot be cancelled or undone).
type Revert struct {
	VolumeID   uuid.UUID `json:"volume_id"`
	VolumePath string    `json:"volume_path"`
	ShadowID   uuid.UUID `json:"shadow_id"`
	ShadowPath string    `json:"shadow_path"`
	Provider   string    `json:"provider"`
	Exclude    []string  `json:"exclude"`
	Started    time.Time `json:"started"`
	Done       int64     `json:"done"`
	Total      int64     `json:"total"`
}
