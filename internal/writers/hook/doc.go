// Package hook implements hook writers: writers described by one TOML file
// each in /etc/vss/writers.d/, whose events run commands. They bring to VSS
// what Linux backup tools do with ad-hoc pre/post scripts: flush a cache,
// stop a process for the length of the freeze, tell an application that a
// backup ended.
//
// # File format
//
// Every *.toml file of the directory is one writer (docs/hook-writers.md
// has the full reference and examples). Unknown keys are errors.
//
//	name = "nginx-cache"        # writer name (required)
//	class_id = "…"              # optional GUID; default: derived from name
//	instance_name = ""          # optional
//	usage = "user-data"         # user-data (default) | system-service |
//	                            # bootable-system-state | other
//	source = "other"            # transacted-db | non-transacted-db | other (default)
//	on_error = "fail"           # fail (default) | continue | crash-consistent
//	user = "root"               # run the commands as this user (default: the service's)
//	timeout = "30s"             # default limit of each command (default 30s)
//
//	[[component]]               # any number; names unique
//	name = "cache"              # required
//	logical_path = ""           # optional, "\"-separated
//	caption = ""                # optional
//	type = "file-group"         # file-group (default) | database
//	files = [ { path = "/srv/cache", filespec = "*", recursive = true } ]
//
//	[events]                    # one command per event; any subset
//	prepare-snapshot = { command = ["/usr/local/bin/flush-cache"], timeout = "20s" }
//	freeze = { command = ["/bin/sh", "-c", "kill -STOP $(cat /run/app.pid)"], timeout = "5s" }
//	thaw   = { command = ["/bin/sh", "-c", "kill -CONT $(cat /run/app.pid)"], timeout = "5s" }
//
// The events are prepare-backup, prepare-snapshot, freeze, thaw,
// post-snapshot, abort, backup-complete, backup-shutdown, pre-restore and
// post-restore (any spelling writers.ParseEvent accepts). Durations are Go
// durations ("500ms", "2m"), more than zero and at most one hour. A command
// is a non-empty list whose first element is the absolute path of the
// program; no shell is involved unless the command names one. File paths
// are absolute; filespec defaults to "*".
//
// The class ID defaults to a name-based UUID (SHA-1) of the name in the
// hook namespace, the instance ID is a name-based UUID of name and
// instance_name in the class ID: both stay the same as long as the file
// does.
//
// # Running commands
//
// A command runs with an empty environment plus VSS_WRITER, VSS_EVENT
// ("freeze"), VSS_SET_ID, VSS_CONTEXT (decimal), VSS_BACKUP_TYPE ("full",
// "copy", …), VSS_VOLUMES (mount paths, ":"-separated), VSS_SHADOW_PATHS
// (lines "volume=shadow"; also each as VSS_SHADOW_0, VSS_SHADOW_1, …),
// VSS_DEADLINE (RFC 3339), VSS_RESTORE_TARGET and
// PATH=/usr/sbin:/usr/bin:/sbin:/bin, in "/", with standard input from
// /dev/null, in a process group of its own. Its output is logged and the
// last 4 KiB of it go into the error. It is killed, with its whole process
// group (SIGKILL), at its timeout or at the event's deadline, whichever
// comes first: VSS_E_WRITERERROR_TIMEOUT. Exit status 0 is success, 75
// (EX_TEMPFAIL) is VSS_E_WRITERERROR_RETRYABLE, anything else
// VSS_E_WRITERERROR_NONRETRYABLE. The writer reports errors; what the set
// does then is the writer's on_error policy (Writer.OnError), which the
// service applies.
//
// # Nothing stays frozen
//
// When a writer has a thaw command, Freeze first starts a guard: the
// service's own executable started again with _VSS_HOOK_GUARD=1 (the init
// function of this package turns such a process into the guard), in a
// session of its own, deaf to SIGINT, SIGTERM and SIGHUP. It receives the
// thaw command, its environment and the freeze deadline on its standard
// input. Thaw (and Abort, and a failed freeze command) has the guard run
// the thaw command and report the result. If the service dies, even by
// SIGKILL, the guard sees the end of its standard input and runs the thaw
// command at once; if the deadline passes without a Thaw, it runs it then
// and Thaw reports VSS_E_WRITERERROR_TIMEOUT. Either way the guard logs
// what it did to its standard error (the service's: the journal under
// systemd) and exits.
package hook
