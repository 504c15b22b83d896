package diskshadow

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/requester"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// formatTime renders a time as DiskShadow does: 2/12/2018 1:50:55 PM, local.
func formatTime(t time.Time) string { return t.Local().Format("1/2/2006 3:04:05 PM") }

// Banner is what diskshadow prints first.
func Banner(now time.Time) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("Linux DiskShadow version 1.0\nCopyright (C) 2026 The linux-vss authors.\nOn computer:  %s,  %s\n\n", host, formatTime(now))
}

// dsAttrWords are DiskShadow's words for the attribute bits ("Auto_Release
// Differential"), which differ from vssadmin's.
var dsAttrWords = []struct {
	bit  vss.Attr
	word string
}{
	{vss.AttrPersistent, "Persistent"},
	{vss.AttrNoAutoRecovery, "No_Auto_Recovery"},
	{vss.AttrClientAccessible, "Client_accessible"},
	{vss.AttrNoWriters, "No_Writers"},
	{vss.AttrTransportable, "Transportable"},
	{vss.AttrNotSurfaced, "Not_Surfaced"},
	{vss.AttrNotTransacted, "Not_Transacted"},
	{vss.AttrHardwareAssisted, "Hardware"},
	{vss.AttrDifferential, "Differential"},
	{vss.AttrPlex, "Plex"},
	{vss.AttrImported, "Imported"},
	{vss.AttrExposedLocally, "Exposed_Locally"},
	{vss.AttrExposedRemotely, "Exposed_Remotely"},
	{vss.AttrAutoRecover, "Auto_Recovered"},
	{vss.AttrRollbackRecovery, "Rollback_Recovery"},
	{vss.AttrDelayedPostSnapshot, "Delayed_PostSnapshot"},
	{vss.AttrTxFRecovery, "TxF_Recovery"},
	{vss.AttrFileShare, "FileShare"},
}

// attrString returns the attributes as DiskShadow prints them: Auto_Release
// or No_Auto_Release first, then the other words in bit order.
func attrString(a vss.Attr) string {
	w := []string{"Auto_Release"}
	if a&vss.AttrNoAutoRelease != 0 {
		w[0] = "No_Auto_Release"
	}
	for _, x := range dsAttrWords {
		if a&x.bit != 0 {
			w = append(w, x.word)
		}
	}
	return strings.Join(w, " ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// printShadows lists shadow copies as DiskShadow does, with the alias of
// each ID that has one.
func (s *Shell) printShadows(shs []catalog.Shadow) {
	w := s.out
	tag := func(id uuid.UUID) string {
		if a := s.aliasOf(id); a != "" {
			return "\t\t%" + a + "%"
		}
		return ""
	}
	for _, sh := range shs {
		fmt.Fprintf(w, "\t* Shadow copy ID = {%s}%s\n", sh.ID, tag(sh.ID))
		fmt.Fprintf(w, "\t\t- Shadow copy set: {%s}%s\n", sh.SetID, tag(sh.SetID))
		fmt.Fprintf(w, "\t\t- Original count of shadow copies = %d\n", sh.SetCount)
		fmt.Fprintf(w, "\t\t- Original volume name: %s [%s]\n", sh.VolumeName, sh.VolumePath)
		fmt.Fprintf(w, "\t\t- Creation time: %s\n", formatTime(sh.Created))
		fmt.Fprintf(w, "\t\t- Shadow copy device name: %s\n", sh.ShadowPath)
		fmt.Fprintf(w, "\t\t- Originating machine: %s\n", sh.OriginatingMachine)
		fmt.Fprintf(w, "\t\t- Service machine: %s\n", sh.ServiceMachine)
		if sh.ExposedPath != "" {
			name := sh.ExposedName
			if name == "" {
				name = sh.ExposedPath
			}
			fmt.Fprintf(w, "\t\t- Exposed name: %s\n", name)
			fmt.Fprintf(w, "\t\t- Exposed path: %s\n", sh.ExposedPath)
		} else {
			fmt.Fprintf(w, "\t\t- Not exposed\n")
		}
		fmt.Fprintf(w, "\t\t- Provider ID: {%s}\n", sh.ProviderID)
		fmt.Fprintf(w, "\t\t- Attributes:  %s\n", attrString(sh.Attributes))
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Number of shadow copies listed: %d\n", len(shs))
}

var providerTypes = map[provider.Type]string{
	provider.TypeSystem:   "VSS_PROV_SYSTEM",
	provider.TypeSoftware: "VSS_PROV_SOFTWARE",
	provider.TypeHardware: "VSS_PROV_HARDWARE",
}

func printProviders(w io.Writer, ps []provider.Info) {
	for _, p := range ps {
		t := providerTypes[p.Type]
		if t == "" {
			t = "VSS_PROV_UNKNOWN"
		}
		fmt.Fprintf(w, "* ProviderID: {%s}\n", p.ID)
		fmt.Fprintf(w, "\tType: [%d] %s\n", int(p.Type), t)
		fmt.Fprintf(w, "\tName: %s\n", p.DisplayName)
		fmt.Fprintf(w, "\tVersion: %s\n", p.Version)
		fmt.Fprintf(w, "\tShort name: %s (add volume PATH provider %s)\n", p.Name, p.Name)
		var words []string
		for _, x := range dsAttrWords {
			if p.Attributes&x.bit != 0 {
				words = append(words, x.word)
			}
		}
		attrs := "none"
		if len(words) > 0 {
			attrs = strings.Join(words, " ")
		}
		fmt.Fprintf(w, "\tMethod: %s; attributes: %s\n", p.Method, attrs)
		if p.Description != "" {
			fmt.Fprintf(w, "\tDescription: %s\n", p.Description)
		}
	}
	fmt.Fprintf(w, "%s registered.\n", plural(len(ps), "provider", "providers"))
}

// stateName returns VSS_WS_… for a writer state number.
func stateName(n int) string { return "VSS_WS_" + vssmeta.WriterState(n).String() }

// printWriterStates prints writers as "list writers status" does.
func printWriterStates(w io.Writer, ws []service.WriterStatus) {
	for _, st := range ws {
		c := vsserr.Code(st.LastHResult)
		fmt.Fprintf(w, "* WRITER %q\n", st.Name)
		fmt.Fprintf(w, "\t- Status: %d (%s)\n", st.State, stateName(st.State))
		fmt.Fprintf(w, "\t- Writer Failure code: %s (%s)\n", c.Hex(), c.Name())
		fmt.Fprintf(w, "\t- Writer ID: {%s}\n", st.ID)
		fmt.Fprintf(w, "\t- Instance ID: {%s}\n", st.InstanceID)
		if st.LastErrorMessage != "" {
			fmt.Fprintf(w, "\t- Last error: %s\n", st.LastErrorMessage)
		}
	}
	fmt.Fprintf(w, "\n%s listed.\n", plural(len(ws), "writer", "writers"))
}

// printWriterStatus prints the writers of a session step.
func printWriterStatus(w io.Writer, ws []requester.WriterInfo) {
	sts := make([]service.WriterStatus, len(ws))
	for i, x := range ws {
		sts[i] = x.Status
	}
	printWriterResults(w, sts)
}

// printWriterResults prints one line per writer: name, state, failure.
func printWriterResults(w io.Writer, ws []service.WriterStatus) {
	for _, st := range ws {
		c := vsserr.Code(st.LastHResult)
		line := fmt.Sprintf("Writer %q: %d (%s), %s (%s)", st.Name, st.State, stateName(st.State), c.Hex(), c.Name())
		if st.LastErrorMessage != "" {
			line += ": " + st.LastErrorMessage
		}
		fmt.Fprintln(w, line)
	}
}

func tf(b bool) string {
	if b {
		return "TRUE"
	}
	return "FALSE"
}

func fileLine(f vssmeta.File) string {
	s := fmt.Sprintf("Path = %s, Filespec = %s, Recursive = %s", f.Path, f.Filespec, tf(f.Recursive))
	if f.AlternatePath != "" {
		s += ", Alternate location = " + f.AlternatePath
	}
	if f.Log {
		s += ", Log"
	}
	return s
}

// printWriterMetadata prints the writers' metadata documents as "list
// writers [metadata|detailed]" does; detailed adds every file
// specification and the writer's excluded files.
func printWriterMetadata(w io.Writer, ws []requester.WriterInfo, detailed bool) {
	for _, x := range ws {
		m := x.Metadata
		fmt.Fprintf(w, "* WRITER %q\n", x.Status.Name)
		fmt.Fprintf(w, "\t- WriterID   = {%s}\n", x.Status.ID)
		fmt.Fprintf(w, "\t- InstanceID = {%s}\n", x.Status.InstanceID)
		if m == nil {
			fmt.Fprintf(w, "\t- (no metadata document: %s)\n", x.Status.StateText)
			continue
		}
		if m.InstanceName != "" {
			fmt.Fprintf(w, "\t- Instance name = %s\n", m.InstanceName)
		}
		fmt.Fprintf(w, "\t- Supports restore events = %s\n", tf(m.Restore.WriterRestore != vssmeta.WriterRestoreNever))
		fmt.Fprintf(w, "\t- Writer restore conditions = VSS_WRE_%s\n", strings.ToUpper(m.Restore.WriterRestore.String()))
		fmt.Fprintf(w, "\t- Restore method = VSS_RME_%s\n", m.Restore.Method)
		if m.Restore.Service != "" {
			fmt.Fprintf(w, "\t- Service to stop and start = %s\n", m.Restore.Service)
		}
		fmt.Fprintf(w, "\t- Requires reboot after restore = %s\n", tf(m.Restore.RebootRequired))
		if detailed {
			fmt.Fprintf(w, "\t- Usage = VSS_UT_%s, source = VSS_ST_%s\n", m.Usage, m.Source)
			fmt.Fprintf(w, "\t- Backup schema = %s\n", m.Schema)
			fmt.Fprintf(w, "\t- Excluded files:\n")
			for _, f := range m.Excludes {
				fmt.Fprintf(w, "\t\t- Exclude: %s\n", fileLine(f))
			}
		}
		for _, c := range m.Components {
			fmt.Fprintf(w, "\t+ Component \"%s:\\%s\"\n", m.Name, c.FullPath())
			fmt.Fprintf(w, "\t\t- Name: %s\n", c.Name)
			fmt.Fprintf(w, "\t\t- LogicalPath: %s\n", c.LogicalPath)
			fmt.Fprintf(w, "\t\t- FullPath: \\%s\n", c.FullPath())
			fmt.Fprintf(w, "\t\t- Caption: %s\n", c.Caption)
			fmt.Fprintf(w, "\t\t- Type: VSS_CT_%s [%d]\n", strings.ToUpper(c.Type.String()), int(c.Type))
			fmt.Fprintf(w, "\t\t- Is selectable: %s\n", tf(c.Selectable))
			fmt.Fprintf(w, "\t\t- Notify on backup complete: %s\n", tf(c.NotifyOnBackupComplete))
			fmt.Fprintf(w, "\t\t- Paths affected by this component:\n")
			seen := map[string]bool{}
			for _, f := range c.Files {
				if !seen[f.Path] {
					seen[f.Path] = true
					fmt.Fprintf(w, "\t\t\t- %s\n", f.Path)
				}
			}
			fmt.Fprintf(w, "\t\t- File List:\n")
			for _, f := range c.Files {
				fmt.Fprintf(w, "\t\t\t- %s\n", fileLine(f))
			}
			if detailed {
				files, more := matchingFiles(c.Files, maxListedFiles)
				fmt.Fprintf(w, "\t\t- Files on disk:\n")
				for _, p := range files {
					fmt.Fprintf(w, "\t\t\t- %s\n", p)
				}
				if more {
					fmt.Fprintf(w, "\t\t\t- … (more than %d files)\n", maxListedFiles)
				}
			}
		}
	}
	fmt.Fprintf(w, "\n%s listed.\n", plural(len(ws), "writer", "writers"))
}

// maxListedFiles bounds the files "list writers detailed" lists per
// component.
const maxListedFiles = 1000

// matchingFiles lists the files on disk that a component's file
// specifications name (at most max; more says there were more).
func matchingFiles(specs []vssmeta.File, max int) (out []string, more bool) {
	seen := map[string]bool{}
	add := func(p string) bool {
		if seen[p] {
			return true
		}
		if len(out) == max {
			more = true
			return false
		}
		seen[p] = true
		out = append(out, p)
		return true
	}
	for _, f := range specs {
		if f.Recursive {
			_ = filepath.WalkDir(f.Path, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || !f.Matches(p) {
					return nil
				}
				if !add(p) {
					return filepath.SkipAll
				}
				return nil
			})
		} else {
			ents, _ := os.ReadDir(f.Path)
			for _, d := range ents {
				p := filepath.Join(f.Path, d.Name())
				if !d.IsDir() && f.Matches(p) && !add(p) {
					break
				}
			}
		}
		if more {
			break
		}
	}
	return out, more
}

// printSettings prints what "set" alone shows.
func (s *Shell) printSettings() {
	w := s.out
	cx := s.Context()
	life := "volatile: its shadow copies are deleted at reset and exit"
	if cx.Persistent() {
		life = "persistent: its shadow copies stay after exit"
	}
	writers := "writers take part"
	if !cx.Writers() {
		writers = "no writers"
	}
	ctxWords := s.ctxWord
	if s.noWriters {
		ctxWords += " nowriters"
	}
	fmt.Fprintf(w, "Context: %s (%s; %s; %s)\n", ctxWords, cx.Name(), life, writers)
	opts := "none"
	if len(s.options) > 0 {
		opts = strings.Join(s.options, " ")
	}
	fmt.Fprintf(w, "Options: %s\n", opts)
	bt := "copy"
	if s.backup {
		bt = "full (begin backup)"
	}
	fmt.Fprintf(w, "Backup type: %s\n", bt)
	v := "off"
	if s.verbose {
		v = "on"
	}
	fmt.Fprintf(w, "Verbose: %s\n", v)
	meta := "none"
	if s.metaFile != "" {
		meta = s.metaFile
	}
	fmt.Fprintf(w, "Metadata file: %s\n", meta)
	if s.loaded != nil {
		fmt.Fprintf(w, "Loaded metadata: shadow copy set {%s}, %d writers\n", s.loaded.BCD.SetID, len(s.loaded.Writers))
	}
	if len(s.verify) > 0 {
		fmt.Fprintf(w, "Writers to verify: %s\n", quoteAll(s.verify))
	}
	if len(s.exclude) > 0 {
		fmt.Fprintf(w, "Writers excluded: %s\n", quoteAll(s.exclude))
	}
	if s.set != nil {
		fmt.Fprintf(w, "Shadow copy set of this session: {%s} (%d shadow copies)\n", s.set.Set.ID, len(s.set.Shadows))
	}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// printAdded prints what "add" alone shows.
func (s *Shell) printAdded() {
	w := s.out
	if len(s.volumes) == 0 {
		fmt.Fprintln(w, "No volumes added.")
	} else {
		fmt.Fprintln(w, "Volumes:")
		for i, v := range s.volumes {
			alias := v.Alias
			if alias == "" {
				alias = fmt.Sprintf("VSS_SHADOW_%d", i+1)
			}
			prov := v.Provider
			if prov == "" {
				prov = "chosen by volume type"
			}
			fmt.Fprintf(w, "\t%s\talias %s\tprovider %s\n", v.Path, alias, prov)
		}
	}
	if len(s.aliases) > 0 {
		fmt.Fprintln(w, "Aliases:")
		for _, a := range s.aliases {
			fmt.Fprintf(w, "\t%%%s%% = %s\n", a.Name, a.Value)
		}
	}
}

// errorText is what diskshadow prints for an error: the VSS name, code and
// sentence for a service error, the message for anything else.
func errorText(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var parts []string
		for _, e := range j.Unwrap() {
			parts = append(parts, errorText(e))
		}
		return strings.Join(parts, "\n")
	}
	var se *SyntaxError
	if errorsAs(err, &se) {
		s := err.Error()
		if se.Usage != "" {
			s += "\n  Usage: " + se.Usage
		}
		return s
	}
	if hasCode(err) {
		return vsserr.Message(err)
	}
	return err.Error()
}
