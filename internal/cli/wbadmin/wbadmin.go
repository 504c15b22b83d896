package wbadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/linuxvss/vss/internal/backupfmt"
	"github.com/linuxvss/vss/internal/cli/clisvc"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// Usage is what wbadmin /? prints.
const Usage = `Commands:
  wbadmin start backup -backupTarget:DIR [-include:PATH[,PATH…]] [-component:WRITER\COMPONENT[,…]]
                       [-vssFull|-vssCopy] [-full|-incremental|-differential] [-quiet]
  wbadmin get versions -backupTarget:DIR
  wbadmin get items -backupTarget:DIR -version:ID
  wbadmin start recovery -backupTarget:DIR -version:ID -itemType:File|Component -items:PATH|WRITER\COMPONENT[,…]
                       [-recoveryTarget:DIR] [-overwrite:Overwrite|CreateCopy|Skip] [-newName:NAME]
  wbadmin verify -backupTarget:DIR -version:ID

Options of every command: --format text|json, --socket PATH (vssd), --embedded,
--state-dir DIR, --config FILE, --verbose. Options are written -name:value,
/name:value, --name value or --name=value.

A backup is read from a shadow copy set, never from the live volumes; the
first backup to a target is full (or copy), later ones incremental unless
-full or -differential says otherwise. -vssFull tells the writers the
backup is complete (BackupComplete); the default -vssCopy does not.
See docs/backup-format.md for the format of a backup target.
`

// Env is the process environment of a run.
type Env struct {
	Args           []string
	Stdout, Stderr io.Writer
}

// Main runs wbadmin and returns its exit status: 0, 1 on failure, 2 for a
// command line that does not parse.
func Main(ctx context.Context, env Env) int {
	if len(env.Args) == 1 && (env.Args[0] == "/?" || env.Args[0] == "-?" || env.Args[0] == "--help" || env.Args[0] == "help") {
		fmt.Fprint(env.Stdout, Usage)
		return 0
	}
	c, err := Parse(env.Args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ERROR - %s\n", vsserr.Message(err))
		if len(env.Args) == 0 {
			fmt.Fprint(env.Stderr, "\n"+Usage)
		}
		return 2
	}
	a := &app{c: c, out: env.Stdout}
	if c.Format == "text" {
		fmt.Fprintln(env.Stdout, "wbadmin 1.0 - Backup command-line tool (Linux shadow copy service)")
		fmt.Fprintln(env.Stdout)
	}
	if err := a.run(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "ERROR - %s\n", vsserr.Message(err))
		return 1
	}
	return 0
}

type app struct {
	c   *Command
	out io.Writer
}

func (a *app) run(ctx context.Context) error {
	switch a.c.Verb {
	case VerbStartBackup:
		return a.startBackup(ctx)
	case VerbGetVersions:
		return a.getVersions()
	case VerbGetItems:
		return a.getItems()
	case VerbStartRecovery:
		return a.startRecovery(ctx)
	case VerbVerify:
		return a.verify(ctx)
	}
	return fmt.Errorf("unknown command %q", a.c.Verb)
}

// open opens the service: vssd, or the embedded one.
func (a *app) open(ctx context.Context) (clisvc.Service, error) {
	c := a.c
	return clisvc.Open(ctx, &clisvc.Globals{StateDir: c.StateDir, Socket: c.Socket, Config: c.Config, Embedded: c.Embedded, Verbose: c.Verbose}, "wbadmin")
}

// overwriteModes maps -overwrite's words to restore modes.
var overwriteModes = map[string]backupfmt.OverwriteMode{"Overwrite": backupfmt.Overwrite, "CreateCopy": backupfmt.CreateCopy, "Skip": backupfmt.Skip}

// target returns the backup target of a command that reads one.
func (a *app) target() (*backupfmt.Target, error) {
	dir := a.c.BackupTarget
	if dir == "" {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "give the backup target with -backupTarget:DIR")
	}
	t, err := backupfmt.Open(dir)
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "backup target %s", dir)
	}
	return t, nil
}

// formatKind chooses the version's kind and the VSS backup type.
func formatKind(c *Command, versions []backupfmt.Version) (backupfmt.Kind, vssmeta.BackupType) {
	k := c.Kind
	if k == KindAuto {
		k = KindFull
		for _, v := range versions {
			if v.CanRecover {
				k = KindIncremental
			}
		}
	}
	switch k {
	case KindIncremental:
		if c.VSSFull {
			return backupfmt.Incremental, vssmeta.BackupIncremental
		}
		return backupfmt.Incremental, vssmeta.BackupCopy
	case KindDifferential:
		if c.VSSFull {
			return backupfmt.Differential, vssmeta.BackupDifferential
		}
		return backupfmt.Differential, vssmeta.BackupCopy
	}
	if c.VSSFull {
		return backupfmt.Full, vssmeta.BackupFull
	}
	// A copy backup is complete but is no base for a later differential.
	return backupfmt.Copy, vssmeta.BackupCopy
}

// previousStamps returns a Backup Components Document that carries, for
// the components of the base version's document the specs name, their
// backup stamps as PreviousBackupStamp (what a writer compares with for a
// differential or incremental backup); "" when there are none.
func previousStamps(t *backupfmt.Target, base string, specs []string) string {
	if t == nil || base == "" || len(specs) == 0 {
		return ""
	}
	b, err := t.Metadata(base, "bcd.xml")
	if err != nil {
		return ""
	}
	old, err := vssmeta.ParseBackupComponents(b)
	if err != nil {
		return ""
	}
	doc := &vssmeta.BackupComponents{BackupType: vssmeta.BackupFull, SelectComponents: true}
	for _, w := range old.Writers {
		wc := vssmeta.WriterComponents{WriterID: w.WriterID, InstanceID: w.InstanceID, Name: w.Name}
		for _, c := range w.Components {
			if c.BackupStamp == "" {
				continue
			}
			for _, spec := range specs {
				wn, cn, _ := strings.Cut(spec, `\`)
				if writerMatches(wn, w.Name, "", w.InstanceID, w.WriterID) && componentMatches(cn, c.FullPath(), c.Name) {
					wc.Components = append(wc.Components, vssmeta.ComponentState{LogicalPath: c.LogicalPath, Name: c.Name, Type: c.Type, PreviousBackupStamp: c.BackupStamp})
					break
				}
			}
		}
		if len(wc.Components) > 0 {
			doc.Writers = append(doc.Writers, wc)
		}
	}
	if len(doc.Writers) == 0 {
		return ""
	}
	x, err := doc.XML()
	if err != nil {
		return ""
	}
	return string(x)
}

// startBackup makes a shadow copy set of the volumes of the included
// paths and selected components, copies them from the shadows (never from
// the live volumes) into a new version, stores the writers' documents with
// it, and sends BackupComplete for -vssFull backups only.
func (a *app) startBackup(ctx context.Context) (err error) {
	c := a.c
	var versions []backupfmt.Version
	var tgt *backupfmt.Target
	if t, err := backupfmt.Open(c.BackupTarget); err == nil {
		tgt = t
		if versions, err = t.Versions(); err != nil {
			return err
		}
	}
	kind, vssType := formatKind(c, versions)
	b, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	base := backupfmt.BaseOf(kind, versions)
	s, err := b.Requester().InitializeForBackup(ctx, previousStamps(tgt, base, c.Components))
	if err != nil {
		return err
	}
	defer func() {
		if _, eerr := s.End(context.WithoutCancel(ctx)); eerr != nil && err == nil {
			err = eerr
		}
	}()
	ws, err := s.GatherWriterMetadata(ctx)
	if err != nil {
		return err
	}
	var metas []*vssmeta.WriterMetadata
	for _, wi := range ws {
		if wi.Metadata != nil {
			metas = append(metas, wi.Metadata)
		}
	}
	sel := &selection{trees: c.Include}
	for _, m := range metas {
		sel.excludes = append(sel.excludes, m.Excludes...)
	}
	var comps []selected
	for _, spec := range c.Components {
		cs, err := findComponent(metas, spec)
		if err != nil {
			return err
		}
		if !cs.comp.Selectable {
			return vsserr.New(vsserr.E_INVALIDARG, "component %s is not selectable for backup", cs.label())
		}
		if err := s.AddComponent(ctx, cs.writer.InstanceID, cs.comp.LogicalPath, cs.comp.Name); err != nil {
			return err
		}
		comps = append(comps, cs)
		sel.specs = append(sel.specs, cs.comp.Files...)
	}
	if err := s.SetBackupState(ctx, true, vssType, true); err != nil {
		return err
	}
	// The volumes of the selection, each once, with who needs it.
	roots := sel.roots()
	var vols []string
	volOf := map[string]string{}
	neededBy := map[string][]string{}
	for _, p := range roots {
		v, err := volume.Containing(p)
		if err != nil {
			return err
		}
		volOf[p] = v.Path
		if !slices.Contains(vols, v.Path) {
			vols = append(vols, v.Path)
		}
	}
	for _, cs := range comps {
		for _, f := range cs.comp.Files {
			for _, r := range roots {
				if under(filepath.Clean(f.Path), r) && !slices.Contains(neededBy[volOf[r]], cs.label()) {
					neededBy[volOf[r]] = append(neededBy[volOf[r]], cs.label())
				}
			}
		}
	}
	if _, err := s.StartSnapshotSet(ctx); err != nil {
		return err
	}
	for _, v := range vols {
		if _, err := s.AddToSnapshotSet(ctx, v, ""); err != nil {
			if who := neededBy[v]; len(who) > 0 {
				// A component without all its volumes would be torn.
				return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, err,
					"%s has files on %s, which cannot be in the shadow copy set: a backup without it would be torn", strings.Join(who, ", "), v)
			}
			return err
		}
	}
	if _, err := s.PrepareForBackup(ctx); err != nil {
		return err
	}
	a.say("Creating a shadow copy of the volumes specified for backup...")
	res, err := s.DoSnapshotSet(ctx)
	if err != nil {
		return err
	}
	shadowOf := map[string]string{}
	for _, sh := range res.Shadows {
		shadowOf[sh.VolumePath] = sh.ShadowPath
	}
	w, err := backupfmt.Create(c.BackupTarget, backupfmt.Options{Kind: kind, Base: base, SetID: res.Set.ID.String(),
		Keep: func(p string, dir bool) bool { return sel.keep("/"+p, dir) }})
	if err != nil {
		return targetErr(err, "backup target %s", c.BackupTarget)
	}
	committed := false
	defer func() {
		if !committed {
			_ = w.Abort()
		}
	}()
	// The byte ranges the writers report for their files (partial files)
	// bound what an incremental or differential version reads of them.
	if kind == backupfmt.Incremental || kind == backupfmt.Differential {
		doc, err := s.Document(ctx)
		if err != nil {
			return err
		}
		bcd, err := vssmeta.ParseBackupComponents([]byte(doc))
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "the Backup Components Document")
		}
		for _, wc := range bcd.Writers {
			for _, cs := range wc.Components {
				for _, pf := range cs.PartialFiles {
					ranges, err := vssmeta.ParseRanges(pf.Ranges)
					if err != nil {
						return vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "writer %s: partial file %s", wc.Name, pf.Filename)
					}
					rel := strings.TrimPrefix(filepath.Join(pf.Path, pf.Filename), "/")
					if err := w.AddFileRanges(rel, ranges); err != nil {
						return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "writer %s", wc.Name)
					}
				}
			}
		}
	}
	start := time.Now()
	rep := a.newReporter("backup")
	defer rep.done()
	for _, p := range roots {
		v := volOf[p]
		rel, err := filepath.Rel(v, p)
		if err != nil {
			return err
		}
		src := filepath.Join(shadowOf[v], rel)
		if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) && !slices.Contains(c.Include, p) {
			continue // a component's directory that does not exist
		}
		a.say("Backing up %s (from its shadow copy)...", p)
		if err := w.AddTree(ctx, src, strings.TrimPrefix(p, "/"), rep.update); err != nil {
			return targetErr(err, "backing up %s to %s", p, c.BackupTarget)
		}
	}
	for _, cs := range comps {
		if err := s.SetBackupSucceeded(ctx, cs.writer.InstanceID, cs.comp.LogicalPath, cs.comp.Name, true); err != nil {
			return err
		}
	}
	doc, err := s.Document(ctx)
	if err != nil {
		return err
	}
	if err := w.AddMetadata("bcd.xml", []byte(doc)); err != nil {
		return err
	}
	for _, m := range metas {
		x, err := m.XML()
		if err != nil {
			return err
		}
		if err := w.AddMetadata("writers/"+m.InstanceID.String()+".xml", x); err != nil {
			return err
		}
	}
	if err := w.Commit(); err != nil {
		return targetErr(err, "committing the backup to %s", c.BackupTarget)
	}
	committed = true
	if c.VSSFull {
		if _, err := s.BackupComplete(ctx); err != nil {
			return err
		}
	}
	st := w.Stats()
	if c.Format == "json" {
		return json.NewEncoder(a.out).Encode(map[string]any{
			"event": "done", "version": w.ID(), "kind": kind, "set_id": res.Set.ID, "files": st.Files,
			"bytes_read": st.BytesRead, "bytes_stored": st.BytesStored, "bytes_reused": st.BytesReused,
			"seconds": time.Since(start).Seconds(),
		})
	}
	a.say("The backup operation successfully completed.")
	a.say("Version identifier: %s (%s; %d files, %d bytes read, %d stored, %d reused from older versions)",
		w.ID(), kind, st.Files, st.BytesRead, st.BytesStored, st.BytesReused)
	return nil
}

// targetErr classifies an error of writing a version: a full target, a
// target another backup writes to, a cancelled run, or anything else.
func targetErr(err error, format string, args ...any) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return vsserr.Wrap(vsserr.E_DISK_FULL, err, "the backup target is full: "+format, args...)
	case errors.Is(err, backupfmt.ErrTargetBusy):
		return vsserr.Wrap(vsserr.E_SHARING_VIOLATION, err, format, args...)
	case errors.Is(err, context.Canceled):
		return err
	}
	return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, format, args...)
}

func (a *app) say(format string, args ...any) {
	if a.c.Format == "text" && !a.c.Quiet {
		fmt.Fprintf(a.out, format+"\n", args...)
	}
}

// getVersions lists the complete versions of the target, as Windows
// prints them.
func (a *app) getVersions() error {
	t, err := a.target()
	if err != nil {
		return err
	}
	vs, err := t.Versions()
	if err != nil {
		return err
	}
	if a.c.Format == "json" {
		return json.NewEncoder(a.out).Encode(vs)
	}
	for _, v := range vs {
		can := "File(s), Application(s)"
		if !v.CanRecover {
			can = "No (" + v.Problem + ")"
		}
		fmt.Fprintf(a.out, "Backup time: %s\nBackup target: %s\nVersion identifier: %s\nKind: %s\nCan recover: %s\n\n",
			v.Time.Local().Format("1/2/2006 3:04 PM"), t.Dir(), v.ID, v.Kind, can)
	}
	return nil
}

// getItems lists what a version holds.
func (a *app) getItems() error {
	t, err := a.target()
	if err != nil {
		return err
	}
	m, err := t.Manifest(a.c.Version)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "version %s", a.c.Version)
	}
	var comps []map[string]string
	if x, err := t.Metadata(a.c.Version, "bcd.xml"); err == nil {
		if bcd, err := vssmeta.ParseBackupComponents(x); err == nil {
			for _, w := range bcd.Writers {
				for _, c := range w.Components {
					if c.BackupSucceeded {
						comps = append(comps, map[string]string{"writer": w.Name, "instance_id": w.InstanceID.String(),
							"component": c.FullPath(), "item": w.Name + `\` + c.FullPath()})
					}
				}
			}
		}
	}
	if a.c.Format == "json" {
		return json.NewEncoder(a.out).Encode(map[string]any{"components": comps, "files": m.Files})
	}
	for _, c := range comps {
		fmt.Fprintf(a.out, "Application: %s (%s)\nComponent: %s\nItem: %s\n\n", c["writer"], c["instance_id"], c["component"], c["item"])
	}
	for _, f := range m.Files {
		fmt.Fprintf(a.out, "/%s\n", f.Path)
	}
	return nil
}

// startRecovery restores files of a version, in place or under
// -recoveryTarget.
func (a *app) startRecovery(ctx context.Context) error {
	t, err := a.target()
	if err != nil {
		return err
	}
	if a.c.ItemType == "Component" {
		return a.recoverComponents(ctx, t)
	}
	mode := overwriteModes[a.c.Overwrite]
	dst := a.c.RecoveryTarget
	if dst == "" {
		dst = "/"
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "recovery target")
	}
	rep := a.newReporter("recovery")
	err = t.Restore(ctx, a.c.Version, a.c.Items, dst, backupfmt.RestoreOptions{Overwrite: mode, Progress: rep.update})
	rep.done()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "recovery of version %s", a.c.Version)
	}
	a.say("The recovery operation completed successfully.")
	return nil
}

// recoverComponents restores whole components of a version through their
// writers: the saved Backup Components Document begins a restore session,
// the writers get PreRestore (a server restored in place is stopped; one
// restored elsewhere or under a new name keeps running), the files are
// restored (a component's directories in place hold exactly the backup's
// files afterwards), then PostRestore (the writer recovers and reopens).
func (a *app) recoverComponents(ctx context.Context, t *backupfmt.Target) (err error) {
	c := a.c
	m, err := t.Manifest(c.Version)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "version %s", c.Version)
	}
	bcdXML, err := t.Metadata(c.Version, "bcd.xml")
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "version %s has no Backup Components Document", c.Version)
	}
	bcd, err := vssmeta.ParseBackupComponents(bcdXML)
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "version %s: the Backup Components Document", c.Version)
	}
	// The writers' documents saved with the version, for the components'
	// files.
	var metas []*vssmeta.WriterMetadata
	for _, mf := range m.Metadata {
		if !strings.HasPrefix(mf.Name, "writers/") {
			continue
		}
		x, err := t.Metadata(c.Version, mf.Name)
		if err != nil {
			return vsserr.Wrap(vsserr.E_FILE_CORRUPT, err, "version %s: %s", c.Version, mf.Name)
		}
		wm, err := vssmeta.ParseWriterMetadata(x)
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "version %s: %s", c.Version, mf.Name)
		}
		if wc := bcd.Writer(wm.InstanceID); wc != nil {
			// Only what this backup holds can be recovered.
			kept := wm.Components[:0:0]
			for _, comp := range wm.Components {
				if st := wc.Component(comp.LogicalPath, comp.Name); st != nil && st.BackupSucceeded {
					kept = append(kept, comp)
				}
			}
			wm.Components = kept
			metas = append(metas, wm)
		}
	}
	var comps []selected
	for _, spec := range c.Items {
		cs, err := findComponent(metas, spec)
		if err != nil {
			return err
		}
		if !cs.comp.SelectableForRestore {
			return vsserr.New(vsserr.E_INVALIDARG, "component %s cannot be restored by itself", cs.label())
		}
		comps = append(comps, cs)
	}
	if c.NewName != "" && len(comps) != 1 {
		return vsserr.New(vsserr.E_INVALIDARG, "-newName renames one component; %d are given", len(comps))
	}
	if c.NewName != "" && comps[0].writer.Schema&vssmeta.SchemaRestoreRename == 0 {
		return vsserr.New(vsserr.E_INVALIDARG, "writer '%s' does not support a restore under a new name (its schema lacks RestoreRename): restore with -recoveryTarget instead", comps[0].writer.Name)
	}
	var files []string
	for _, f := range m.Files {
		files = append(files, f.Path)
	}
	var items []string
	for _, cs := range comps {
		its := componentItems(files, cs.comp)
		if len(its) == 0 {
			return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "version %s holds no file of %s", c.Version, cs.label())
		}
		items = append(items, its...)
	}
	// Check every stored byte before the writers are told: a damaged
	// backup is reported, not restored, and the application keeps running.
	vrep := a.newReporter("verify")
	probs, err := t.VerifyProgress(ctx, c.Version, vrep.update)
	vrep.done()
	if err != nil {
		return err
	}
	for _, p := range probs {
		for _, it := range items {
			if under(p.Path, it) {
				return vsserr.New(vsserr.E_FILE_CORRUPT, "version %s is damaged: %s; nothing was restored", c.Version, p.String())
			}
		}
	}

	b, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	s, err := b.Requester().InitializeForRestore(ctx, string(bcdXML))
	if err != nil {
		return err
	}
	defer func() {
		if _, eerr := s.End(context.WithoutCancel(ctx)); eerr != nil && err == nil {
			err = eerr
		}
	}()
	for _, cs := range comps {
		if err := s.SelectForRestore(ctx, cs.writer.InstanceID, cs.comp.LogicalPath, cs.comp.Name, c.RecoveryTarget, c.NewName); err != nil {
			return err
		}
	}
	if _, err := s.PreRestore(ctx, c.RecoveryTarget); err != nil {
		return err
	}
	dst := c.RecoveryTarget
	if dst == "" {
		dst = "/"
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "recovery target")
	}
	o := backupfmt.RestoreOptions{Overwrite: overwriteModes[c.Overwrite]}
	if c.NewName != "" {
		o.Rename = renamer(comps[0].comp, c.NewName)
	}
	if o.Overwrite == backupfmt.Overwrite {
		var mirrors []func(string) bool
		for _, cs := range comps {
			mirrors = append(mirrors, mirrored(cs.comp))
		}
		o.Mirror = func(p string) bool {
			return slices.ContainsFunc(mirrors, func(f func(string) bool) bool { return f(p) })
		}
	}
	for _, cs := range comps {
		a.say("Restoring %s...", cs.label())
	}
	rep := a.newReporter("recovery")
	o.Progress = rep.update
	err = t.Restore(ctx, c.Version, items, dst, o)
	rep.done()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err,
			"recovery of version %s (the writers got no PostRestore: an application stopped for the restore stays stopped)", c.Version)
	}
	if _, err := s.PostRestore(ctx); err != nil {
		return err
	}
	a.say("The recovery operation completed successfully.")
	return nil
}

// verify checks every stored byte of a version.
func (a *app) verify(ctx context.Context) error {
	t, err := a.target()
	if err != nil {
		return err
	}
	rep := a.newReporter("verify")
	probs, err := t.VerifyProgress(ctx, a.c.Version, rep.update)
	rep.done()
	if err != nil {
		return err
	}
	if a.c.Format == "json" {
		if err := json.NewEncoder(a.out).Encode(map[string]any{"version": a.c.Version, "problems": probs}); err != nil {
			return err
		}
	} else {
		for _, p := range probs {
			fmt.Fprintln(a.out, p.String())
		}
	}
	if len(probs) > 0 {
		return vsserr.New(vsserr.E_FILE_CORRUPT, "version %s is damaged: %d file(s) fail their checksums", a.c.Version, len(probs))
	}
	a.say("Version %s verified: every stored byte matches its checksum.", a.c.Version)
	return nil
}
