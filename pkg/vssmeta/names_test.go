package vssmeta

import (
	"strings"
	"testing"
)

func TestWriterStateNames(t *testing.T) {
	tests := []struct {
		state  WriterState
		str    string
		text   string
		failed bool
	}{
		{StateUnknown, "UNKNOWN", "Unknown", false},
		{StateStable, "STABLE", "Stable", false},
		{StateWaitingForFreeze, "WAITING_FOR_FREEZE", "Waiting for freeze", false},
		{StateWaitingForThaw, "WAITING_FOR_THAW", "Waiting for thaw", false},
		{StateWaitingForPostSnapshot, "WAITING_FOR_POST_SNAPSHOT", "Waiting for post snapshot", false},
		{StateWaitingForBackupComplete, "WAITING_FOR_BACKUP_COMPLETE", "Waiting for completion", false},
		{StateFailedAtIdentify, "FAILED_AT_IDENTIFY", "Failed", true},
		{StateFailedAtPrepareBackup, "FAILED_AT_PREPARE_BACKUP", "Failed", true},
		{StateFailedAtPrepareSnapshot, "FAILED_AT_PREPARE_SNAPSHOT", "Failed", true},
		{StateFailedAtFreeze, "FAILED_AT_FREEZE", "Failed", true},
		{StateFailedAtThaw, "FAILED_AT_THAW", "Failed", true},
		{StateFailedAtPostSnapshot, "FAILED_AT_POST_SNAPSHOT", "Failed", true},
		{StateFailedAtBackupComplete, "FAILED_AT_BACKUP_COMPLETE", "Failed", true},
		{StateFailedAtPreRestore, "FAILED_AT_PRE_RESTORE", "Failed", true},
		{StateFailedAtPostRestore, "FAILED_AT_POST_RESTORE", "Failed", true},
		{StateFailedAtBackupShutdown, "FAILED_AT_BACKUPSHUTDOWN", "Failed", true},
		{16, "WriterState(16)", "Unknown", false},
		{-1, "WriterState(-1)", "Unknown", false},
	}
	if len(tests) != 18 {
		t.Fatal("the table must hold the 16 states and 2 out of range")
	}
	for i, tt := range tests {
		if i < 16 && int(tt.state) != i {
			t.Errorf("state %s has value %d, want %d", tt.str, int(tt.state), i)
		}
		if got := tt.state.String(); got != tt.str {
			t.Errorf("WriterState(%d).String() = %q, want %q", int(tt.state), got, tt.str)
		}
		if got := tt.state.Text(); got != tt.text {
			t.Errorf("WriterState(%d).Text() = %q, want %q", int(tt.state), got, tt.text)
		}
		if got := tt.state.Failed(); got != tt.failed {
			t.Errorf("WriterState(%d).Failed() = %v, want %v", int(tt.state), got, tt.failed)
		}
	}
	for state, want := range map[WriterState]string{
		StateUnknown:                  "[0] Unknown",
		StateStable:                   "[1] Stable",
		StateWaitingForBackupComplete: "[5] Waiting for completion",
		StateFailedAtFreeze:           "[9] Failed",
		StateFailedAtBackupShutdown:   "[15] Failed",
	} {
		if got := state.Format(); got != want {
			t.Errorf("WriterState(%d).Format() = %q, want %q", int(state), got, want)
		}
	}
}

func TestLastErrorText(t *testing.T) {
	for hr, want := range map[uint32]string{
		0:          "No error",
		0x800423F0: "Inconsistent shadow copy",
		0x800423F1: "Out of resources",
		0x800423F2: "Timed out",
		0x800423F3: "Retryable error",
		0x800423F4: "Non-retryable error",
		0x800423F5: "Recovery failed",
		0x80042336: "Partial failure",
		0x80042319: "Not responding",
		0x80042315: "Unexpected error",
		0x80042409: "Unexpected error",
		0x80004005: "Unexpected error",
		1:          "Unexpected error",
	} {
		if got := LastErrorText(hr); got != want {
			t.Errorf("LastErrorText(%#x) = %q, want %q", hr, got, want)
		}
	}
}

func TestEnumNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{UsageUndefined.String(), "UNDEFINED"},
		{UsageBootableSystemState.String(), "BOOTABLE_SYSTEM_STATE"},
		{UsageSystemService.String(), "SYSTEM_SERVICE"},
		{UsageUserData.String(), "USER_DATA"},
		{UsageOther.String(), "OTHER"},
		{UsageType(5).String(), "UsageType(5)"},

		{SourceUndefined.String(), "UNDEFINED"},
		{SourceTransactedDB.String(), "TRANSACTION_DB"},
		{SourceNonTransactedDB.String(), "NONTRANSACTIONAL_DB"},
		{SourceOther.String(), "OTHER"},
		{SourceType(-2).String(), "SourceType(-2)"},

		{RestoreUndefined.String(), "UNDEFINED"},
		{RestoreIfNotThere.String(), "RESTORE_IF_NONE_THERE"},
		{RestoreIfCanReplace.String(), "RESTORE_IF_CAN_BE_REPLACED"},
		{RestoreStopStart.String(), "STOP_RESTART_SERVICE"},
		{RestoreToAlternateLocation.String(), "RESTORE_TO_ALTERNATE_LOCATION"},
		{RestoreAtReboot.String(), "REPLACE_AT_REBOOT"},
		{RestoreAtRebootIfCannotReplace.String(), "REPLACE_AT_REBOOT_IF_CANNOT_REPLACE"},
		{RestoreCustom.String(), "CUSTOM"},
		{RestoreStopStartService.String(), "RESTORE_STOP_START"},
		{RestoreMethod(9).String(), "RestoreMethod(9)"},

		{WriterRestoreUndefined.String(), "undefined"},
		{WriterRestoreNever.String(), "never"},
		{WriterRestoreIfReplaceFails.String(), "ifReplaceFails"},
		{WriterRestoreAlways.String(), "always"},
		{WriterRestore(4).String(), "WriterRestore(4)"},

		{ComponentUndefined.String(), "undefined"},
		{ComponentDatabase.String(), "database"},
		{ComponentFileGroup.String(), "filegroup"},
		{ComponentType(3).String(), "ComponentType(3)"},

		{BackupUndefined.String(), "UNDEFINED"},
		{BackupFull.String(), "FULL"},
		{BackupIncremental.String(), "INCREMENTAL"},
		{BackupDifferential.String(), "DIFFERENTIAL"},
		{BackupLog.String(), "LOG"},
		{BackupCopy.String(), "COPY"},
		{BackupOther.String(), "OTHER"},
		{BackupType(7).String(), "BackupType(7)"},

		{ComponentFlags(0).String(), "NONE"},
		{FlagBackupRecovery.String(), "BACKUP_RECOVERY"},
		{FlagAppRollbackRecovery.String(), "APP_ROLLBACK_RECOVERY"},
		{FlagNotSystemState.String(), "NOT_SYSTEM_STATE"},
		{(FlagBackupRecovery | FlagNotSystemState).String(), "BACKUP_RECOVERY, NOT_SYSTEM_STATE"},
		{ComponentFlags(0x19).String(), "BACKUP_RECOVERY, 0x18"},

		{BackupSchema(0).String(), "UNDEFINED"},
		{SchemaDifferential.String(), "DIFFERENTIAL"},
		{SchemaIncremental.String(), "INCREMENTAL"},
		{SchemaExclusiveIncrementalDiff.String(), "EXCLUSIVE_INCREMENTAL_DIFFERENTIAL"},
		{SchemaLog.String(), "LOG"},
		{SchemaCopy.String(), "COPY"},
		{SchemaTimestamped.String(), "TIMESTAMPED"},
		{SchemaLastModify.String(), "LAST_MODIFY"},
		{SchemaLSN.String(), "LSN"},
		{SchemaWriterSupportsNewTarget.String(), "WRITER_SUPPORTS_NEW_TARGET"},
		{SchemaWriterSupportsRestoreWithMove.String(), "WRITER_SUPPORTS_RESTORE_WITH_MOVE"},
		{SchemaIndependentSystemState.String(), "INDEPENDENT_SYSTEM_STATE"},
		{SchemaRollForwardRestore.String(), "ROLLFORWARD_RESTORE"},
		{SchemaRestoreRename.String(), "RESTORE_RENAME"},
		{SchemaAuthoritativeRestore.String(), "AUTHORITATIVE_RESTORE"},
		{SchemaWriterSupportsParallelRestores.String(), "WRITER_SUPPORTS_PARALLEL_RESTORES"},
		{(SchemaDifferential | SchemaIncremental | SchemaCopy).String(), "DIFFERENTIAL, INCREMENTAL, COPY"},
		{(SchemaLog | 0x800).String(), "LOG, 0x800"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseBackupType(t *testing.T) {
	for in, want := range map[string]BackupType{
		"full":         BackupFull,
		"FULL":         BackupFull,
		"Incremental":  BackupIncremental,
		"differential": BackupDifferential,
		"log":          BackupLog,
		"copy":         BackupCopy,
		"other":        BackupOther,
	} {
		got, err := ParseBackupType(in)
		if err != nil || got != want {
			t.Errorf("ParseBackupType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "undefined", "fulll", "7", " full"} {
		_, err := ParseBackupType(in)
		if err == nil {
			t.Errorf("ParseBackupType(%q) succeeded", in)
			continue
		}
		for _, want := range []string{quote(in), "full, incremental, differential, log, copy or other"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseBackupType(%q) error %q lacks %q", in, err, want)
			}
		}
	}
}
