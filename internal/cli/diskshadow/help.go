package diskshadow

import (
	"fmt"
	"io"
	"strings"
)

// helpTopic is one command's help: its syntax and what it does on Linux.
type helpTopic struct {
	name    string // the command's words, lower case ("set context")
	summary string // one line for the list
	usage   string
	text    string // what it does here
}

var helpTopics = []helpTopic{
	{"add", "Add volumes to the set, and aliases.", usageAdd,
		`"add" alone lists the volumes and aliases added so far. See add volume, add alias and add exclude.`},
	{"add volume", "Add a volume to the shadow copy set.", usageAddVolume,
		`PATH is a mount point, a btrfs subvolume or (for the copy provider) a directory; it is checked at once
and must exist. alias NAME names the volume's shadow copy ID for later lines (%NAME%); without it, create
calls it VSS_SHADOW_n (n = the volume's position in add volume order). provider forces a provider by short
name (btrfs, reflink, copy) or {ID} (list providers); otherwise set option differential or plex, else the
volume type, chooses. A set has one provider, at most 64 volumes.`},
	{"add alias", "Define an alias now.", usageAddAlias,
		`Defines %NAME% for later lines and exports NAME into the environment (programs run by exec see it).
create defines VSS_SHADOW_n, VSS_SHADOW_SET and the aliases of add volume the same way.`},
	{"add exclude", "Same as writer exclude (not a Windows DiskShadow command).", usageAddExclude,
		`Windows DiskShadow has no "add exclude"; it is accepted here as a synonym of "writer exclude WRITER".`},
	{"begin", "Begin a full backup, or a restore.", usageBegin,
		`begin backup: the next create makes a FULL backup (vssmeta FULL; the writers are told so and get
BackupComplete at end backup); without it, create makes a COPY backup, as on Windows.
begin restore: starts a restore session from the metadata loaded with load metadata: every component of
the saved Backup Components Document (less writer exclude) is selected, and its writers get PreRestore
(they stop and release their files). Put the files back (exec), then end restore.`},
	{"break", "Take a shadow copy set out of the service.", usageBreak,
		`The set's shadow copies become ordinary directories (btrfs subvolumes) beside the shadow storage,
named shadow-{ID}: read-only (the default) or writable. They leave the catalog: the service no longer
lists, deletes or releases them. Exposed shadow copies must be unexposed first; volatile sets cannot be
broken (they die with the session).`},
	{"create", "Make the shadow copy set.", usageCreate,
		`Makes the set of the added volumes with the current context and options: the writers (unless
nowriters) gather their metadata, every selectable component on the volumes is added (less writer exclude),
PrepareForBackup, then DoSnapshotSet (PrepareSnapshot, Freeze, commit, Thaw, PostSnapshot). writer verify
fails the create (nothing is left) when a writer or component does not take part. Afterwards the aliases
VSS_SHADOW_n (or the volumes' own aliases) and VSS_SHADOW_SET hold the IDs, and with set metadata the
metadata file is written. A volatile set lives until reset or exit; after a persistent set, another
create starts a new session.`},
	{"delete shadows", "Delete shadow copies.", usageDelete,
		`all: every shadow copy on the computer (not only this session's). volume PATH: all of a volume's.
oldest PATH: a volume's oldest. set ID / id ID: a set or one shadow copy (IDs with or without braces, or
%ALIAS%). exposed PATH: the shadow copy exposed at PATH (it is unexposed). Protected shadow copies
may be refused by the service.`},
	{"end", "End a full backup, or a restore.", usageEnd,
		`end backup: marks the backed-up components as succeeded, sends BackupComplete to the writers (they
may record a differential base) and writes the metadata file again (set metadata). The shadow copies stay
until reset or exit (volatile) or for good (persistent).
end restore: sends PostRestore (the writers recover and start again) and ends the restore session.`},
	{"exec", "Run a program while the shadow copies exist.", usageExec,
		`Runs PROGRAM (a path, or a name found in PATH; a file that is not executable is run by /bin/sh) with
its arguments, %ALIAS% replaced, and with the aliases in its environment (VSS_SHADOW_1, VSS_SHADOW_SET, …).
Its output is diskshadow's (and goes to the -l log). A non-zero exit status is an error: a script stops
there unless -t. Its standard input is /dev/null.`},
	{"exit", "Leave diskshadow.", usageExit,
		`Ends the session as reset does (volatile shadow copies are deleted; persistent ones and their
exposures stay) and exits. The end of a script, and Ctrl-D at the prompt, do the same.`},
	{"expose", "Make a shadow copy readable at a directory.", usageExpose,
		`A read-only bind mount of the shadow copy on PATH (an empty or new directory), recorded in the
catalog and mounted again when the service restarts. Only persistent shadow copies (set context
persistent or clientaccessible) can be exposed, as on Windows. Windows' drive letters and shares have no
equivalent: give a directory.`},
	{"help", "Show the commands, or one command in detail.", "help [COMMAND]", `help lists the commands; help COMMAND (e.g. help set context) shows one.`},
	{"import", "Not supported on Linux.", usageImport,
		`Windows imports transportable hardware shadow copies from a loaded .cab. Linux providers make no
transportable shadow copies: import always fails with VSS_E_NOT_SUPPORTED.`},
	{"list", "List writers, shadow copies or providers.", usageList, `See list writers, list shadows and list providers.`},
	{"list providers", "List the providers.", "list providers",
		`Each provider with its ID, type, version, short name (for add volume … provider) and method:
btrfs (redirect-on-write snapshot), reflink (copy-on-write clone of every file), copy (complete copy).`},
	{"list shadows", "List shadow copies.", usageListShadows,
		`all: every shadow copy on the computer; set ID: one set; id ID: one shadow copy. IDs with an alias
show it (%VSS_SHADOW_1%).`},
	{"list writers", "List the writers.", usageListWriters,
		`metadata (the default): each writer's identity, restore method and components with their paths and
file specifications (from Identify, in a session that changes nothing). detailed: also the files on disk
that the specifications name (up to 1000 per component), the excluded files, usage and backup schema.
status: each writer's state and last failure code (in this session's set, if one was made).`},
	{"load metadata", "Load a metadata file for a restore.", usageLoadMetadata,
		`Reads a file written by set metadata and checks its documents; begin restore uses it.`},
	{"mask", "Not supported on Linux.", usageMask,
		`Windows removes imported hardware shadow copies with mask. There are none on Linux: mask fails with
VSS_E_NOT_SUPPORTED (delete shadows set ID deletes a set).`},
	{"reset", "Start over.", usageReset,
		`Ends the session (BackupShutdown; volatile shadow copies are deleted) and puts every setting back:
context volatile, no options, no volumes, aliases, writer lists or metadata; the environment variables the
aliases set are restored.`},
	{"resync", "Not supported on Linux.", usageResync,
		`LUN resynchronization of hardware providers; fails with VSS_E_NOT_SUPPORTED. To bring a volume back to
a shadow copy, use revert.`},
	{"revert", "Revert a volume to a shadow copy.", usageRevert,
		`The volume's content becomes the shadow copy's, all or nothing. The service refuses a volume in use
(it names the processes); use vssadmin revert shadow /forcedismount to force it.`},
	{"set", "Show or change the settings.", usageSet, `"set" alone shows the settings. See set context, set option, set verbose and set metadata.`},
	{"set context", "Choose the lifetime of the shadow copies and whether writers take part.", usageSetContext,
		`volatile (the default): deleted at reset and exit (VSS_CTX_BACKUP; with nowriters
VSS_CTX_FILE_SHARE_BACKUP). persistent: kept after exit (VSS_CTX_APP_ROLLBACK; with nowriters
VSS_CTX_NAS_ROLLBACK). clientaccessible: persistent, "previous versions" (VSS_CTX_CLIENT_ACCESSIBLE_WRITERS;
with nowriters VSS_CTX_CLIENT_ACCESSIBLE). nowriters leaves every writer out: the set is crash-consistent.`},
	{"set metadata", "Where to write the metadata file.", usageSetMetadata,
		`After create and again at end backup, FILE receives the Backup Components Document of the session and
the Writer Metadata Documents of its writers, which a later restore needs (load metadata). Windows writes
a .cab; this is one XML file: <DiskShadowMetadata xmlns="urn:linuxvss:diskshadow:metadata" version="1">
with a <BackupComponentsDocument> and one <WriterMetadataDocument name= writerId= instanceId=> per writer,
each holding the document's XML as written by the service (CDATA). Mode 0600.`},
	{"set option", "Choose the kind of shadow copy.", usageSetOption,
		`differential: a copy-on-write provider (btrfs for a btrfs subvolume, reflink for XFS with reflink=1 or
a btrfs directory); plex: a complete copy (the copy provider). transportable: not supported on Linux (an
error; nothing changes). rollbackrecover, txfrecover, noautorecovery (also spelled noautorecover): recorded
and shown by set; the writers decide auto-recovery in PostSnapshot. A new set option replaces the last.`},
	{"set verbose", "Print every step.", usageSetVerbose, `on: create, end backup and the restores print each step and the writers' states.`},
	{"unexpose", "Undo expose.", usageUnexpose, `PATH is where the shadow copy is exposed (or its ID).`},
	{"writer", "Require or leave out a writer or component.", usageWriter,
		`writer verify: create (or begin restore) fails, leaving nothing, if the writer or component does not take
part. writer exclude: leave it out (a writer gets no events; a component is not added to the backup).
A writer is named by its name (spaces allowed: writer exclude SQLite Writer), writer ID or instance ID;
a component as "WRITER-NAME:\LOGICAL-PATH\NAME" (list writers shows them).`},
}

// Options is the command line, shown by "diskshadow -h" and "help".
const optionsHelp = `Command line:
  diskshadow [-s SCRIPT] [-l LOGFILE] [-t] [--state-dir DIR] [--socket PATH] [--config FILE] [--embedded] [--verbose]
  -s, /s SCRIPT   run the script (every line is checked first; a line that does not parse runs nothing)
  -l, /l LOGFILE  also write everything diskshadow prints to LOGFILE (appended)
  -t, /t          error-tolerant script: go on after a command fails (the exit status is still 1)
  Without -s, diskshadow reads commands at the DISKSHADOW> prompt (line editing; history in
  ~/.diskshadow_history). It uses vssd when it answers on the socket, else runs the service itself.
Scripts: one command a line; # begins a comment; "…" quotes a word; %NAME% is an alias or environment
variable. A script stops at the first failing line ("line N: …") with exit status 1 unless -t.
`

// printHelp prints the list of commands, or one command's help.
func printHelp(w io.Writer, topic string) error {
	topic = strings.Join(strings.Fields(strings.ToLower(topic)), " ")
	if topic == "" {
		fmt.Fprintln(w, "Linux DiskShadow commands (keywords are case-insensitive; help COMMAND shows more):")
		fmt.Fprintln(w)
		for _, t := range helpTopics {
			fmt.Fprintf(w, "  %-16s %s\n", strings.ToUpper(t.name), t.summary)
		}
		fmt.Fprintln(w)
		fmt.Fprint(w, optionsHelp)
		return nil
	}
	// The longest topic the words name: "set context persistent" → set context.
	for words := strings.Fields(topic); len(words) > 0; words = words[:len(words)-1] {
		name := strings.Join(words, " ")
		if name == "?" {
			name = "help"
		}
		for _, t := range helpTopics {
			if t.name == name {
				fmt.Fprintf(w, "%s - %s\n\nUsage: %s\n\n%s\n", strings.ToUpper(t.name), t.summary, t.usage, t.text)
				return nil
			}
		}
	}
	return &SyntaxError{Msg: fmt.Sprintf("no help for %q: type HELP for the list of commands", topic)}
}
