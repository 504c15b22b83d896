package wbadmin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/linuxvss/vss/internal/backupfmt"
	"github.com/linuxvss/vss/internal/cli/clisvc"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// Env is the process environment of a run.
type Env struct {
	Args           []string
	Stdout, Stderr io.Writer
}

// Main runs wbadmin and returns its exit status: 0, 1 on failure, 2 for a
// command line that does not parse.
func Main(ctx context.Context, env Env) int {
	c, err := Parse(env.Args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ERROR - %s\n", vsserr.Message(err))
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

// startBackup makes a shadow copy set of the volumes of the included
// paths, copies the paths from the shadows (never from the live volumes)
// into a new version, stores the writers' documents with it, and sends
// BackupComplete for -vssFull backups only.
func (a *app) startBackup(ctx context.Context) (err error) {
	c := a.c
	if len(c.Components) > 0 {
		return vsserr.New(vsserr.E_NOTIMPL, "-component backups are not available yet: back up the component's paths with -include")
	}
	var versions []backupfmt.Version
	if t, err := backupfmt.Open(c.BackupTarget); err == nil {
		if versions, err = t.Versions(); err != nil {
			return err
		}
	}
	kind, vssType := formatKind(c, versions)
	b, err := clisvc.Open(ctx, &clisvc.Globals{StateDir: c.StateDir, Socket: c.Socket, Config: c.Config, Embedded: c.Embedded, Verbose: c.Verbose}, "wbadmin")
	if err != nil {
		return err
	}
	defer b.Close()
	s, err := b.Requester().InitializeForBackup(ctx, "")
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
	if err := s.SetBackupState(ctx, true, vssType, true); err != nil {
		return err
	}
	// The volumes of the included paths, each once.
	volOf := map[string]string{}
	var vols []string
	for _, p := range c.Include {
		v, err := volume.Containing(p)
		if err != nil {
			return err
		}
		volOf[p] = v.Path
		if _, ok := volOf["\x00"+v.Path]; !ok {
			volOf["\x00"+v.Path] = ""
			vols = append(vols, v.Path)
		}
	}
	if _, err := s.StartSnapshotSet(ctx); err != nil {
		return err
	}
	for _, v := range vols {
		if _, err := s.AddToSnapshotSet(ctx, v, ""); err != nil {
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
	w, err := backupfmt.Create(c.BackupTarget, backupfmt.Options{Kind: kind, SetID: res.Set.ID.String()})
	if err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, err, "backup target %s", c.BackupTarget)
	}
	committed := false
	defer func() {
		if !committed {
			_ = w.Abort()
		}
	}()
	start := time.Now()
	rep := a.newReporter("backup")
	defer rep.done()
	for _, p := range c.Include {
		v := volOf[p]
		rel, err := filepath.Rel(v, p)
		if err != nil {
			return err
		}
		src := filepath.Join(shadowOf[v], rel)
		a.say("Backing up %s (from its shadow copy)...", p)
		if err := w.AddTree(ctx, src, strings.TrimPrefix(p, "/"), rep.update); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "backing up %s", p)
		}
	}
	doc, err := s.Document(ctx)
	if err != nil {
		return err
	}
	if err := w.AddMetadata("bcd.xml", []byte(doc)); err != nil {
		return err
	}
	for _, wi := range ws {
		if wi.Metadata == nil {
			continue
		}
		x, err := wi.Metadata.XML()
		if err != nil {
			return err
		}
		if err := w.AddMetadata("writers/"+wi.Metadata.InstanceID.String()+".xml", x); err != nil {
			return err
		}
	}
	if err := w.Commit(); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "committing the backup")
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
	if a.c.Format == "json" {
		return json.NewEncoder(a.out).Encode(m.Files)
	}
	for _, f := range m.Files {
		fmt.Fprintf(a.out, "/%s\n", f.Path)
	}
	return nil
}

// startRecovery restores files of a version, in place or under
// -recoveryTarget.
func (a *app) startRecovery(ctx context.Context) error {
	if a.c.ItemType != "File" {
		return vsserr.New(vsserr.E_NOTIMPL, "-itemType:Component recoveries are not available yet")
	}
	t, err := a.target()
	if err != nil {
		return err
	}
	mode := map[string]backupfmt.OverwriteMode{"Overwrite": backupfmt.Overwrite, "CreateCopy": backupfmt.CreateCopy, "Skip": backupfmt.Skip}[a.c.Overwrite]
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

// verify checks every stored byte of a version.
func (a *app) verify(ctx context.Context) error {
	t, err := a.target()
	if err != nil {
		return err
	}
	probs, err := t.Verify(ctx, a.c.Version)
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
