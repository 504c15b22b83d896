// Package vsserr holds the closed set of VSS result codes (HRESULTs) the service
// returns, with the numeric values Windows uses, and the error type that carries
// them. Every other package classifies its failures with this package so that
// the CLIs can print the VSS name, the hexadecimal code and a sentence a person
// can act on.
package vsserr

import "fmt"

// Code is a VSS HRESULT. The values match the Windows SDK headers (vsserror.h),
// so tooling and knowledge transfer from Windows.
type Code uint32

// Generic COM results used by VSS.
const (
	S_OK           Code = 0x00000000
	E_NOTIMPL      Code = 0x80004001
	E_ACCESSDENIED Code = 0x80070005
	E_OUTOFMEMORY  Code = 0x8007000E
	E_INVALIDARG   Code = 0x80070057
	// ERROR_FILE_CORRUPT as an HRESULT: stored data fails its checksum.
	E_FILE_CORRUPT Code = 0x80070570
	// ERROR_DISK_FULL as an HRESULT: a backup target has no space left.
	E_DISK_FULL Code = 0x80070070
	// ERROR_SHARING_VIOLATION as an HRESULT: a backup target is in use by
	// another backup.
	E_SHARING_VIOLATION Code = 0x80070020
)

// VSS results (vsserror.h).
const (
	VSS_E_BAD_STATE                             Code = 0x80042301
	VSS_E_UNEXPECTED                            Code = 0x80042302
	VSS_E_PROVIDER_ALREADY_REGISTERED           Code = 0x80042303
	VSS_E_PROVIDER_NOT_REGISTERED               Code = 0x80042304
	VSS_E_PROVIDER_VETO                         Code = 0x80042306
	VSS_E_PROVIDER_IN_USE                       Code = 0x80042307
	VSS_E_OBJECT_NOT_FOUND                      Code = 0x80042308
	VSS_E_VOLUME_NOT_SUPPORTED                  Code = 0x8004230C
	VSS_E_OBJECT_ALREADY_EXISTS                 Code = 0x8004230D
	VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER      Code = 0x8004230E
	VSS_E_UNEXPECTED_PROVIDER_ERROR             Code = 0x8004230F
	VSS_E_CORRUPT_XML_DOCUMENT                  Code = 0x80042310
	VSS_E_INVALID_XML_DOCUMENT                  Code = 0x80042311
	VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED     Code = 0x80042312
	VSS_E_FLUSH_WRITES_TIMEOUT                  Code = 0x80042313
	VSS_E_HOLD_WRITES_TIMEOUT                   Code = 0x80042314
	VSS_E_UNEXPECTED_WRITER_ERROR               Code = 0x80042315
	VSS_E_SNAPSHOT_SET_IN_PROGRESS              Code = 0x80042316
	VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED   Code = 0x80042317
	VSS_E_WRITER_INFRASTRUCTURE                 Code = 0x80042318
	VSS_E_WRITER_NOT_RESPONDING                 Code = 0x80042319
	VSS_E_WRITER_ALREADY_SUBSCRIBED             Code = 0x8004231A
	VSS_E_UNSUPPORTED_CONTEXT                   Code = 0x8004231B
	VSS_E_VOLUME_IN_USE                         Code = 0x8004231D
	VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED Code = 0x8004231E
	VSS_E_INSUFFICIENT_STORAGE                  Code = 0x8004231F
	VSS_E_NO_SNAPSHOTS_IMPORTED                 Code = 0x80042320
	VSS_E_SOME_SNAPSHOTS_NOT_IMPORTED           Code = 0x80042321
	VSS_E_REVERT_IN_PROGRESS                    Code = 0x80042325
	VSS_E_REVERT_VOLUME_LOST                    Code = 0x80042326
	VSS_E_REBOOT_REQUIRED                       Code = 0x80042327
	VSS_E_UNSELECTED_VOLUME                     Code = 0x8004232A
	VSS_E_SNAPSHOT_NOT_IN_SET                   Code = 0x8004232B
	VSS_E_NESTED_VOLUME_LIMIT                   Code = 0x8004232C
	VSS_E_VOLUME_NOT_LOCAL                      Code = 0x8004232D
	VSS_E_NOT_SUPPORTED                         Code = 0x8004232F
	VSS_E_WRITERERROR_PARTIAL_FAILURE           Code = 0x80042336
	VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT      Code = 0x800423F0
	VSS_E_WRITERERROR_OUTOFRESOURCES            Code = 0x800423F1
	VSS_E_WRITERERROR_TIMEOUT                   Code = 0x800423F2
	VSS_E_WRITERERROR_RETRYABLE                 Code = 0x800423F3
	VSS_E_WRITERERROR_NONRETRYABLE              Code = 0x800423F4
	VSS_E_WRITERERROR_RECOVERY_FAILED           Code = 0x800423F5
	VSS_E_AUTORECOVERY_FAILED                   Code = 0x800423FB
	VSS_E_WRITER_STATUS_NOT_AVAILABLE           Code = 0x80042409
)

type codeInfo struct {
	name string
	text string // what the tools print, close to Windows' own wording
}

var codes = map[Code]codeInfo{
	S_OK:                {"S_OK", "The operation completed successfully."},
	E_NOTIMPL:           {"E_NOTIMPL", "The operation is not implemented by this provider."},
	E_ACCESSDENIED:      {"E_ACCESSDENIED", "Access is denied. You don't have the correct permissions to run this command."},
	E_OUTOFMEMORY:       {"E_OUTOFMEMORY", "Not enough memory or resources to complete the operation."},
	E_INVALIDARG:        {"E_INVALIDARG", "One of the parameters is invalid."},
	E_FILE_CORRUPT:      {"E_FILE_CORRUPT", "The file or directory is corrupted and unreadable."},
	E_DISK_FULL:         {"E_DISK_FULL", "There is not enough space on the disk."},
	E_SHARING_VIOLATION: {"E_SHARING_VIOLATION", "The process cannot access the file because it is being used by another process."},

	VSS_E_BAD_STATE:                             {"VSS_E_BAD_STATE", "A function call was made when the object was in an incorrect state for that function."},
	VSS_E_UNEXPECTED:                            {"VSS_E_UNEXPECTED", "An unexpected error occurred in the shadow copy service. Check the service log."},
	VSS_E_PROVIDER_ALREADY_REGISTERED:           {"VSS_E_PROVIDER_ALREADY_REGISTERED", "The shadow copy provider is already registered."},
	VSS_E_PROVIDER_NOT_REGISTERED:               {"VSS_E_PROVIDER_NOT_REGISTERED", "The specified shadow copy provider is not registered. 'vssadmin list providers' shows the registered ones."},
	VSS_E_PROVIDER_VETO:                         {"VSS_E_PROVIDER_VETO", "The shadow copy provider had an error. Check the service log; the operation may succeed if retried later."},
	VSS_E_PROVIDER_IN_USE:                       {"VSS_E_PROVIDER_IN_USE", "The shadow copy provider is currently in use."},
	VSS_E_OBJECT_NOT_FOUND:                      {"VSS_E_OBJECT_NOT_FOUND", "The specified object was not found."},
	VSS_E_VOLUME_NOT_SUPPORTED:                  {"VSS_E_VOLUME_NOT_SUPPORTED", "Shadow copying the specified volume is not supported."},
	VSS_E_OBJECT_ALREADY_EXISTS:                 {"VSS_E_OBJECT_ALREADY_EXISTS", "The object already exists."},
	VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER:      {"VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER", "The shadow copy provider does not support the specified volume."},
	VSS_E_UNEXPECTED_PROVIDER_ERROR:             {"VSS_E_UNEXPECTED_PROVIDER_ERROR", "The shadow copy provider had an unexpected error while trying to process the specified operation."},
	VSS_E_CORRUPT_XML_DOCUMENT:                  {"VSS_E_CORRUPT_XML_DOCUMENT", "The given XML document is corrupt."},
	VSS_E_INVALID_XML_DOCUMENT:                  {"VSS_E_INVALID_XML_DOCUMENT", "The given XML document is not valid."},
	VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED:     {"VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED", "The maximum number of volumes (64) has been added to the shadow copy set."},
	VSS_E_FLUSH_WRITES_TIMEOUT:                  {"VSS_E_FLUSH_WRITES_TIMEOUT", "The shadow copy provider timed out while flushing data to the volume being shadow copied. This is probably due to excessive activity on the volume. Try again later when the volume is not being used so heavily."},
	VSS_E_HOLD_WRITES_TIMEOUT:                   {"VSS_E_HOLD_WRITES_TIMEOUT", "The shadow copy provider timed out while holding writes to the volume being shadow copied. This is probably due to excessive activity on the volume by an application or a system service. Try again later when activity on the volume is reduced."},
	VSS_E_UNEXPECTED_WRITER_ERROR:               {"VSS_E_UNEXPECTED_WRITER_ERROR", "A writer returned an unexpected error."},
	VSS_E_SNAPSHOT_SET_IN_PROGRESS:              {"VSS_E_SNAPSHOT_SET_IN_PROGRESS", "Another shadow copy creation is already in progress. Please wait a few moments and try again."},
	VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED:   {"VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED", "The volume has reached its maximum number of shadow copies and none of them can be deleted to make room."},
	VSS_E_WRITER_INFRASTRUCTURE:                 {"VSS_E_WRITER_INFRASTRUCTURE", "An error was detected in the writer infrastructure."},
	VSS_E_WRITER_NOT_RESPONDING:                 {"VSS_E_WRITER_NOT_RESPONDING", "A writer did not respond."},
	VSS_E_WRITER_ALREADY_SUBSCRIBED:             {"VSS_E_WRITER_ALREADY_SUBSCRIBED", "The writer has already subscribed."},
	VSS_E_UNSUPPORTED_CONTEXT:                   {"VSS_E_UNSUPPORTED_CONTEXT", "The shadow copy context is not supported for this operation."},
	VSS_E_VOLUME_IN_USE:                         {"VSS_E_VOLUME_IN_USE", "The volume is in use by other processes. Close them, or use /forcedismount."},
	VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED: {"VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED", "The maximum number of shadow copy storage associations has been reached."},
	VSS_E_INSUFFICIENT_STORAGE:                  {"VSS_E_INSUFFICIENT_STORAGE", "Insufficient storage available to create either the shadow copy storage file or other shadow copy data. Enlarge the shadow copy storage (vssadmin resize shadowstorage) or delete older shadow copies."},
	VSS_E_NO_SNAPSHOTS_IMPORTED:                 {"VSS_E_NO_SNAPSHOTS_IMPORTED", "No shadow copies were imported."},
	VSS_E_SOME_SNAPSHOTS_NOT_IMPORTED:           {"VSS_E_SOME_SNAPSHOTS_NOT_IMPORTED", "Some shadow copies were not imported."},
	VSS_E_REVERT_IN_PROGRESS:                    {"VSS_E_REVERT_IN_PROGRESS", "A revert is already in progress for the volume."},
	VSS_E_REVERT_VOLUME_LOST:                    {"VSS_E_REVERT_VOLUME_LOST", "The volume being reverted was lost during the revert."},
	VSS_E_REBOOT_REQUIRED:                       {"VSS_E_REBOOT_REQUIRED", "A reboot is required to complete the operation."},
	VSS_E_UNSELECTED_VOLUME:                     {"VSS_E_UNSELECTED_VOLUME", "The volume is not part of the shadow copy set."},
	VSS_E_SNAPSHOT_NOT_IN_SET:                   {"VSS_E_SNAPSHOT_NOT_IN_SET", "The shadow copy is not in the shadow copy set."},
	VSS_E_NESTED_VOLUME_LIMIT:                   {"VSS_E_NESTED_VOLUME_LIMIT", "A volume of the set is nested in another volume of the same set."},
	VSS_E_VOLUME_NOT_LOCAL:                      {"VSS_E_VOLUME_NOT_LOCAL", "The volume is not a local volume."},
	VSS_E_NOT_SUPPORTED:                         {"VSS_E_NOT_SUPPORTED", "The operation is not supported."},
	VSS_E_WRITERERROR_PARTIAL_FAILURE:           {"VSS_E_WRITERERROR_PARTIAL_FAILURE", "A writer reported errors for some of its components."},
	VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT:      {"VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT", "The shadow copy set contains only a subset of the volumes a writer needs. Add the missing volumes and retry."},
	VSS_E_WRITERERROR_OUTOFRESOURCES:            {"VSS_E_WRITERERROR_OUTOFRESOURCES", "A writer ran out of resources. Wait ten minutes and repeat the operation, up to three times."},
	VSS_E_WRITERERROR_TIMEOUT:                   {"VSS_E_WRITERERROR_TIMEOUT", "A writer timed out between the Freeze and Thaw events. Reduce the load and retry."},
	VSS_E_WRITERERROR_RETRYABLE:                 {"VSS_E_WRITERERROR_RETRYABLE", "A writer reported a transient error. Retry the operation."},
	VSS_E_WRITERERROR_NONRETRYABLE:              {"VSS_E_WRITERERROR_NONRETRYABLE", "A writer reported an error that is likely to happen again."},
	VSS_E_WRITERERROR_RECOVERY_FAILED:           {"VSS_E_WRITERERROR_RECOVERY_FAILED", "A writer could not recover the shadow copy (auto-recovery failed)."},
	VSS_E_AUTORECOVERY_FAILED:                   {"VSS_E_AUTORECOVERY_FAILED", "Auto-recovery of the shadow copy failed."},
	VSS_E_WRITER_STATUS_NOT_AVAILABLE:           {"VSS_E_WRITER_STATUS_NOT_AVAILABLE", "The writer status is not available."},
}

// Name returns the symbolic name of the code, e.g. "VSS_E_BAD_STATE".
func (c Code) Name() string {
	if i, ok := codes[c]; ok {
		return i.name
	}
	return fmt.Sprintf("HRESULT_%08X", uint32(c))
}

// Text returns the sentence the tools print for the code.
func (c Code) Text() string {
	if i, ok := codes[c]; ok {
		return i.text
	}
	return "Unknown error."
}

// Hex returns the code as the tools print it, e.g. "0x80042301".
func (c Code) Hex() string { return fmt.Sprintf("0x%08X", uint32(c)) }

// String returns "NAME (0xHEX)".
func (c Code) String() string { return c.Name() + " (" + c.Hex() + ")" }

// Known reports whether c is one of the codes of this package.
func (c Code) Known() bool { _, ok := codes[c]; return ok }

// Failed reports whether the code is a failure (its severity bit is set).
func (c Code) Failed() bool { return c&0x80000000 != 0 }

// ByName returns the code with the given symbolic name.
func ByName(name string) (Code, bool) {
	for c, i := range codes {
		if i.name == name {
			return c, true
		}
	}
	return 0, false
}
