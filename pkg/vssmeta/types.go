// Package vssmeta is the vocabulary writers and requesters share: the
// Writer Metadata Document (what a writer backs up: its components and
// their files, how they are restored), the Backup Components Document (what
// a requester selected and what happened to it), and the VSS enumerations
// they use, with the numeric values of the Windows SDK (vss.h) and the words
// vssadmin prints.
//
// Both documents are XML, close to the layout VSS itself writes, so that a
// person who has read a VSS document can read ours. Parse them with
// ParseWriterMetadata and ParseBackupComponents, which check them; write
// them with their XML methods.
package vssmeta

import "github.com/google/uuid"

// UsageType says what kind of data a writer has (VSS_USAGE_TYPE).
type UsageType int

// The usage types.
const (
	UsageUndefined           UsageType = 0
	UsageBootableSystemState UsageType = 1
	UsageSystemService       UsageType = 2
	UsageUserData            UsageType = 3
	UsageOther               UsageType = 4
)

// SourceType says how a writer's data is kept (VSS_SOURCE_TYPE).
type SourceType int

// The source types.
const (
	SourceUndefined       SourceType = 0
	SourceTransactedDB    SourceType = 1
	SourceNonTransactedDB SourceType = 2
	SourceOther           SourceType = 3
)

// RestoreMethod says how a writer's data is restored (VSS_RESTOREMETHOD_ENUM).
type RestoreMethod int

// The restore methods.
const (
	RestoreUndefined               RestoreMethod = 0
	RestoreIfNotThere              RestoreMethod = 1
	RestoreIfCanReplace            RestoreMethod = 2
	RestoreStopStart               RestoreMethod = 3
	RestoreToAlternateLocation     RestoreMethod = 4
	RestoreAtReboot                RestoreMethod = 5
	RestoreAtRebootIfCannotReplace RestoreMethod = 6
	RestoreCustom                  RestoreMethod = 7
	RestoreStopStartService        RestoreMethod = 8
)

// WriterRestore says whether the writer takes part in restores
// (VSS_WRITERRESTORE_ENUM).
type WriterRestore int

// The writer restore values.
const (
	WriterRestoreUndefined      WriterRestore = 0
	WriterRestoreNever          WriterRestore = 1
	WriterRestoreIfReplaceFails WriterRestore = 2
	WriterRestoreAlways         WriterRestore = 3
)

// ComponentType is the type of a component (VSS_COMPONENT_TYPE).
type ComponentType int

// The component types.
const (
	ComponentUndefined ComponentType = 0
	ComponentDatabase  ComponentType = 1
	ComponentFileGroup ComponentType = 2
)

// ComponentFlags are a component's VSS_COMPONENT_FLAGS bits.
type ComponentFlags uint32

// The component flags.
const (
	FlagBackupRecovery      ComponentFlags = 0x1
	FlagAppRollbackRecovery ComponentFlags = 0x2
	FlagNotSystemState      ComponentFlags = 0x4
)

// BackupSchema are the VSS_BACKUP_SCHEMA bits: what kinds of backup a
// writer supports.
type BackupSchema uint32

// The backup schema bits.
const (
	SchemaDifferential                   BackupSchema = 0x0001
	SchemaIncremental                    BackupSchema = 0x0002
	SchemaExclusiveIncrementalDiff       BackupSchema = 0x0004
	SchemaLog                            BackupSchema = 0x0008
	SchemaCopy                           BackupSchema = 0x0010
	SchemaTimestamped                    BackupSchema = 0x0020
	SchemaLastModify                     BackupSchema = 0x0040
	SchemaLSN                            BackupSchema = 0x0080
	SchemaWriterSupportsNewTarget        BackupSchema = 0x0100
	SchemaWriterSupportsRestoreWithMove  BackupSchema = 0x0200
	SchemaIndependentSystemState         BackupSchema = 0x0400
	SchemaRollForwardRestore             BackupSchema = 0x1000
	SchemaRestoreRename                  BackupSchema = 0x2000
	SchemaAuthoritativeRestore           BackupSchema = 0x4000
	SchemaWriterSupportsParallelRestores BackupSchema = 0x8000
)

// BackupType is the kind of backup a requester makes (VSS_BACKUP_TYPE).
type BackupType int

// The backup types.
const (
	BackupUndefined    BackupType = 0
	BackupFull         BackupType = 1
	BackupIncremental  BackupType = 2
	BackupDifferential BackupType = 3
	BackupLog          BackupType = 4
	BackupCopy         BackupType = 5
	BackupOther        BackupType = 6
)

// WriterState is a writer's state as GatherWriterStatus reports it
// (VSS_WRITER_STATE); vssadmin prints it as "[n] Word".
type WriterState int

// The writer states.
const (
	StateUnknown                  WriterState = 0
	StateStable                   WriterState = 1
	StateWaitingForFreeze         WriterState = 2
	StateWaitingForThaw           WriterState = 3
	StateWaitingForPostSnapshot   WriterState = 4
	StateWaitingForBackupComplete WriterState = 5
	StateFailedAtIdentify         WriterState = 6
	StateFailedAtPrepareBackup    WriterState = 7
	StateFailedAtPrepareSnapshot  WriterState = 8
	StateFailedAtFreeze           WriterState = 9
	StateFailedAtThaw             WriterState = 10
	StateFailedAtPostSnapshot     WriterState = 11
	StateFailedAtBackupComplete   WriterState = 12
	StateFailedAtPreRestore       WriterState = 13
	StateFailedAtPostRestore      WriterState = 14
	StateFailedAtBackupShutdown   WriterState = 15
)

// WriterMetadata is a Writer Metadata Document: who the writer is, what it
// backs up and how it is restored. A writer returns it from Identify.
type WriterMetadata struct {
	// WriterID is the writer class ID: the same for every instance of
	// one kind of writer (every PostgreSQL writer).
	WriterID uuid.UUID
	// InstanceID identifies this instance (one cluster's writer).
	InstanceID uuid.UUID
	// Name is the writer name vssadmin prints ("PostgreSQL Writer").
	Name string
	// InstanceName tells instances of one class apart ("main", a port).
	InstanceName string
	Usage        UsageType
	Source       SourceType
	// Schema is what kinds of backup the writer supports.
	Schema  BackupSchema
	Restore RestoreMethodInfo
	// Components are what can be backed up.
	Components []Component
	// Excludes are files the writer says must not be backed up.
	Excludes []File
}

// RestoreMethodInfo says how the writer's data is restored.
type RestoreMethodInfo struct {
	Method RestoreMethod
	// Service is the service to stop and start (RestoreStopStart...).
	Service        string
	WriterRestore  WriterRestore
	RebootRequired bool
}

// Component is one unit of backup and restore: a database, a group of
// files.
type Component struct {
	Type ComponentType
	// LogicalPath places the component in the writer's tree; with Name it
	// identifies the component ("\" separated, may be empty).
	LogicalPath string
	Name        string
	Caption     string
	Flags       ComponentFlags
	// Selectable: the requester may pick the component by itself.
	Selectable bool
	// SelectableForRestore: the requester may restore it by itself.
	SelectableForRestore bool
	// NotifyOnBackupComplete: the writer wants BackupComplete.
	NotifyOnBackupComplete bool
	// Files are the component's files: data files, then logs.
	Files []File
}

// File is a file specification of a component (or of an exclude).
type File struct {
	// Path is an absolute directory.
	Path string
	// Filespec is a glob of names in Path ("*", "*.db").
	Filespec string
	// Recursive: also match in Path's subdirectories.
	Recursive bool
	// AlternatePath is where to restore the files when Path cannot be used.
	AlternatePath string
	// Log: a log file of a database (VSS DATABASE_LOGFILES).
	Log bool
}

// BackupComponents is a Backup Components Document: what a requester
// selected from which writers, for what kind of backup, and what happened.
// The requester builds it; writers may add to their components in
// PrepareBackup and PostSnapshot; it is saved with a backup and loaded for
// its restore.
type BackupComponents struct {
	// SetID is the shadow copy set of the backup (zero until one is
	// started).
	SetID      uuid.UUID
	BackupType BackupType
	// SelectComponents: only the selected components are backed up
	// (component mode); otherwise whole volumes.
	SelectComponents bool
	// PartialFileSupport: the requester can back up byte ranges.
	PartialFileSupport bool
	Context            uint32
	// Writers are the writers that take part, with their components.
	Writers []WriterComponents
	// Snapshots are the shadow copies of the set: volume → shadow.
	Snapshots []SnapshotInfo
}

// WriterComponents are a writer's components in a Backup Components
// Document.
type WriterComponents struct {
	WriterID   uuid.UUID
	InstanceID uuid.UUID
	Name       string
	Components []ComponentState
}

// ComponentState is one selected component and what happened to it.
type ComponentState struct {
	LogicalPath string
	Name        string
	Type        ComponentType
	// BackupSucceeded is set by the requester after the copy.
	BackupSucceeded bool
	// BackupStamp is the writer's mark for a later differential backup.
	BackupStamp string
	// PreviousBackupStamp is the stamp of the base of this backup.
	PreviousBackupStamp string
	// PrivateMetadata is the writer's own data (base64 or text).
	PrivateMetadata string
	// PartialFiles are byte ranges of files to back up (writer-reported).
	PartialFiles []PartialFile
	// DifferencedFiles are files changed since a time (writer-reported).
	DifferencedFiles []DifferencedFile
	// NewTargets redirect a restore (restore with move).
	NewTargets []NewTarget
	// RestoreName is the new name of a database restored under another
	// name (VSS: AddNewTarget with rename / SetRestoreName).
	RestoreName string
	// SelectedForRestore: this component is restored.
	SelectedForRestore bool
	// Failure is the writer's or requester's error for this component.
	Failure string
}

// PartialFile is a byte range list of one file.
type PartialFile struct {
	Path     string
	Filename string
	// Ranges are "offset:length" pairs separated by commas, as VSS writes
	// them, or a path of a file listing them.
	Ranges   string
	Metadata string
}

// DifferencedFile is a file changed since LastModify.
type DifferencedFile struct {
	Path       string
	Filespec   string
	Recursive  bool
	LastModify string // RFC 3339
}

// NewTarget maps a file specification to a new directory for a restore.
type NewTarget struct {
	Path          string
	Filespec      string
	Recursive     bool
	AlternatePath string
}

// SnapshotInfo is one shadow copy of a backup's set.
type SnapshotInfo struct {
	ID     uuid.UUID
	Volume string
	// Path is where the shadow copy is readable.
	Path string
}
