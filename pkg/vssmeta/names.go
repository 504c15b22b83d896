package vssmeta

import (
	"fmt"
	"strings"
)

// The words of the enumerations are those VSS writes in its XML documents
// (vs_wmxml: "USER_DATA", "TRANSACTION_DB", "RESTORE_IF_CAN_BE_REPLACED",
// "ifReplaceFails", "filegroup"); String returns them and the XML encoding
// uses them. A value outside the enumeration prints as "Type(n)".

var usageWords = []string{
	UsageUndefined:           "UNDEFINED",
	UsageBootableSystemState: "BOOTABLE_SYSTEM_STATE",
	UsageSystemService:       "SYSTEM_SERVICE",
	UsageUserData:            "USER_DATA",
	UsageOther:               "OTHER",
}

var sourceWords = []string{
	SourceUndefined:       "UNDEFINED",
	SourceTransactedDB:    "TRANSACTION_DB",
	SourceNonTransactedDB: "NONTRANSACTIONAL_DB",
	SourceOther:           "OTHER",
}

var restoreMethodWords = []string{
	RestoreUndefined:               "UNDEFINED",
	RestoreIfNotThere:              "RESTORE_IF_NONE_THERE",
	RestoreIfCanReplace:            "RESTORE_IF_CAN_BE_REPLACED",
	RestoreStopStart:               "STOP_RESTART_SERVICE",
	RestoreToAlternateLocation:     "RESTORE_TO_ALTERNATE_LOCATION",
	RestoreAtReboot:                "REPLACE_AT_REBOOT",
	RestoreAtRebootIfCannotReplace: "REPLACE_AT_REBOOT_IF_CANNOT_REPLACE",
	RestoreCustom:                  "CUSTOM",
	RestoreStopStartService:        "RESTORE_STOP_START",
}

var writerRestoreWords = []string{
	WriterRestoreUndefined:      "undefined",
	WriterRestoreNever:          "never",
	WriterRestoreIfReplaceFails: "ifReplaceFails",
	WriterRestoreAlways:         "always",
}

var componentTypeWords = []string{
	ComponentUndefined: "undefined",
	ComponentDatabase:  "database",
	ComponentFileGroup: "filegroup",
}

var backupTypeWords = []string{
	BackupUndefined:    "UNDEFINED",
	BackupFull:         "FULL",
	BackupIncremental:  "INCREMENTAL",
	BackupDifferential: "DIFFERENTIAL",
	BackupLog:          "LOG",
	BackupCopy:         "COPY",
	BackupOther:        "OTHER",
}

var writerStateWords = []string{
	StateUnknown:                  "UNKNOWN",
	StateStable:                   "STABLE",
	StateWaitingForFreeze:         "WAITING_FOR_FREEZE",
	StateWaitingForThaw:           "WAITING_FOR_THAW",
	StateWaitingForPostSnapshot:   "WAITING_FOR_POST_SNAPSHOT",
	StateWaitingForBackupComplete: "WAITING_FOR_BACKUP_COMPLETE",
	StateFailedAtIdentify:         "FAILED_AT_IDENTIFY",
	StateFailedAtPrepareBackup:    "FAILED_AT_PREPARE_BACKUP",
	StateFailedAtPrepareSnapshot:  "FAILED_AT_PREPARE_SNAPSHOT",
	StateFailedAtFreeze:           "FAILED_AT_FREEZE",
	StateFailedAtThaw:             "FAILED_AT_THAW",
	StateFailedAtPostSnapshot:     "FAILED_AT_POST_SNAPSHOT",
	StateFailedAtBackupComplete:   "FAILED_AT_BACKUP_COMPLETE",
	StateFailedAtPreRestore:       "FAILED_AT_PRE_RESTORE",
	StateFailedAtPostRestore:      "FAILED_AT_POST_RESTORE",
	StateFailedAtBackupShutdown:   "FAILED_AT_BACKUPSHUTDOWN",
}

// word returns words[v], or typ(v) when v is outside words.
func word[T ~int](words []string, typ string, v T) string {
	if v >= 0 && int(v) < len(words) {
		return words[v]
	}
	return fmt.Sprintf("%s(%d)", typ, int(v))
}

// inRange reports whether v is a value of the enumeration words names.
func inRange[T ~int](words []string, v T) bool {
	return v >= 0 && int(v) < len(words)
}

// lookup finds s among words, ignoring case.
func lookup[T ~int](words []string, s string) (T, bool) {
	for i, w := range words {
		if strings.EqualFold(w, s) {
			return T(i), true
		}
	}
	return 0, false
}

// allowed lists words for an error message: "a, b or c".
func allowed(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// String returns the VSS word of the usage type ("USER_DATA").
func (u UsageType) String() string { return word(usageWords, "UsageType", u) }

// String returns the VSS word of the source type ("TRANSACTION_DB").
func (s SourceType) String() string { return word(sourceWords, "SourceType", s) }

// String returns the VSS word of the restore method
// ("RESTORE_IF_CAN_BE_REPLACED").
func (r RestoreMethod) String() string { return word(restoreMethodWords, "RestoreMethod", r) }

// String returns the VSS word of the writer restore value ("never",
// "ifReplaceFails", "always").
func (w WriterRestore) String() string { return word(writerRestoreWords, "WriterRestore", w) }

// String returns the VSS word of the component type ("database",
// "filegroup").
func (c ComponentType) String() string { return word(componentTypeWords, "ComponentType", c) }

// String returns the VSS word of the backup type ("FULL").
func (b BackupType) String() string { return word(backupTypeWords, "BackupType", b) }

// String returns the name of the writer state without its VSS_WS_ prefix
// ("FAILED_AT_FREEZE"); unlike Text, it tells the failed states apart.
func (s WriterState) String() string { return word(writerStateWords, "WriterState", s) }

// ParseBackupType parses a backup type as a user types it: full,
// incremental, differential, log, copy or other, in any case.
func ParseBackupType(s string) (BackupType, error) {
	if !strings.EqualFold(s, "undefined") {
		if t, ok := lookup[BackupType](backupTypeWords, s); ok {
			return t, nil
		}
	}
	return BackupUndefined, fmt.Errorf("unknown backup type %s (want full, incremental, differential, log, copy or other)", quote(s))
}

// bitNames names the bits of a flag set, in bit order.
type bitName struct {
	bit  uint32
	name string
}

var componentFlagNames = []bitName{
	{uint32(FlagBackupRecovery), "BACKUP_RECOVERY"},
	{uint32(FlagAppRollbackRecovery), "APP_ROLLBACK_RECOVERY"},
	{uint32(FlagNotSystemState), "NOT_SYSTEM_STATE"},
}

var backupSchemaNames = []bitName{
	{uint32(SchemaDifferential), "DIFFERENTIAL"},
	{uint32(SchemaIncremental), "INCREMENTAL"},
	{uint32(SchemaExclusiveIncrementalDiff), "EXCLUSIVE_INCREMENTAL_DIFFERENTIAL"},
	{uint32(SchemaLog), "LOG"},
	{uint32(SchemaCopy), "COPY"},
	{uint32(SchemaTimestamped), "TIMESTAMPED"},
	{uint32(SchemaLastModify), "LAST_MODIFY"},
	{uint32(SchemaLSN), "LSN"},
	{uint32(SchemaWriterSupportsNewTarget), "WRITER_SUPPORTS_NEW_TARGET"},
	{uint32(SchemaWriterSupportsRestoreWithMove), "WRITER_SUPPORTS_RESTORE_WITH_MOVE"},
	{uint32(SchemaIndependentSystemState), "INDEPENDENT_SYSTEM_STATE"},
	{uint32(SchemaRollForwardRestore), "ROLLFORWARD_RESTORE"},
	{uint32(SchemaRestoreRename), "RESTORE_RENAME"},
	{uint32(SchemaAuthoritativeRestore), "AUTHORITATIVE_RESTORE"},
	{uint32(SchemaWriterSupportsParallelRestores), "WRITER_SUPPORTS_PARALLEL_RESTORES"},
}

// mask is the union of the named bits.
func mask(names []bitName) uint32 {
	var m uint32
	for _, n := range names {
		m |= n.bit
	}
	return m
}

// bits joins the names of the set bits of v with ", ", then the unnamed
// rest in hexadecimal; zero gives none.
func bits(names []bitName, v uint32, none string) string {
	if v == 0 {
		return none
	}
	var out []string
	for _, n := range names {
		if v&n.bit != 0 {
			out = append(out, n.name)
			v &^= n.bit
		}
	}
	if v != 0 {
		out = append(out, fmt.Sprintf("0x%x", v))
	}
	return strings.Join(out, ", ")
}

// String lists the names of the set flags joined with ", "
// ("BACKUP_RECOVERY, NOT_SYSTEM_STATE"), without their VSS_CF_ prefix;
// no flag gives "NONE", bits VSS does not define print in hexadecimal.
func (f ComponentFlags) String() string {
	return bits(componentFlagNames, uint32(f), "NONE")
}

// String lists the names of the set bits joined with ", "
// ("DIFFERENTIAL, INCREMENTAL"), without their VSS_BS_ prefix; no bit
// gives "UNDEFINED" (VSS_BS_UNDEFINED), bits VSS does not define print in
// hexadecimal.
func (s BackupSchema) String() string {
	return bits(backupSchemaNames, uint32(s), "UNDEFINED")
}

// Text returns what vssadmin prints after "State: [n] ": "Stable",
// "Waiting for completion", "Failed" for every failed state (6–15) and
// "Unknown" for 0 and for values outside the enumeration.
func (s WriterState) Text() string {
	switch {
	case s == StateStable:
		return "Stable"
	case s == StateWaitingForFreeze:
		return "Waiting for freeze"
	case s == StateWaitingForThaw:
		return "Waiting for thaw"
	case s == StateWaitingForPostSnapshot:
		return "Waiting for post snapshot"
	case s == StateWaitingForBackupComplete:
		return "Waiting for completion"
	case s.Failed():
		return "Failed"
	}
	return "Unknown"
}

// Failed reports whether s is one of the VSS_WS_FAILED_AT_* states.
func (s WriterState) Failed() bool {
	return s >= StateFailedAtIdentify && s <= StateFailedAtBackupShutdown
}

// Format returns the state as vssadmin prints it: "[5] Waiting for
// completion".
func (s WriterState) Format() string {
	return fmt.Sprintf("[%d] %s", int(s), s.Text())
}

// LastErrorText returns what vssadmin prints after "Last error: " for a
// writer's failure HRESULT: "No error" for S_OK, the words of the
// VSS_E_WRITERERROR_* codes, VSS_E_WRITER_NOT_RESPONDING and
// VSS_E_UNEXPECTED_WRITER_ERROR, and "Unexpected error" for anything else.
func LastErrorText(hresult uint32) string {
	switch hresult {
	case 0x00000000: // S_OK
		return "No error"
	case 0x800423F0: // VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT
		return "Inconsistent shadow copy"
	case 0x800423F1: // VSS_E_WRITERERROR_OUTOFRESOURCES
		return "Out of resources"
	case 0x800423F2: // VSS_E_WRITERERROR_TIMEOUT
		return "Timed out"
	case 0x800423F3: // VSS_E_WRITERERROR_RETRYABLE
		return "Retryable error"
	case 0x800423F4: // VSS_E_WRITERERROR_NONRETRYABLE
		return "Non-retryable error"
	case 0x800423F5: // VSS_E_WRITERERROR_RECOVERY_FAILED
		return "Recovery failed"
	case 0x80042336: // VSS_E_WRITERERROR_PARTIAL_FAILURE
		return "Partial failure"
	case 0x80042319: // VSS_E_WRITER_NOT_RESPONDING
		return "Not responding"
	}
	return "Unexpected error" // VSS_E_UNEXPECTED_WRITER_ERROR and the rest
}
