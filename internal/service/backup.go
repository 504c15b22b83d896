package service

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// backups tracks the live requester sessions.
type backups struct {
	mu   sync.Mutex
	live map[string]*Backup
}

// Backup is a requester session (IVssBackupComponents): one backup or one
// restore. Its methods follow the VSS call sequence; a call out of order
// gets VSS_E_BAD_STATE. It belongs to the connection (Caller.Session) that
// began it and ends with it.
type Backup struct {
	s       *Service
	ID      string
	owner   string
	restore bool

	mu       sync.Mutex
	ended    bool
	context  vss.Context
	bcd      *vssmeta.BackupComponents
	exclude  []string
	gathered map[uuid.UUID]*vssmeta.WriterMetadata
	setID    uuid.UUID
	volumes  []string
	shadows  []uuid.UUID
	provider string
	parts    []*writers.Participant
	prepared bool
	done     *CreateResult // DoSnapshotSet succeeded
	aborted  bool
	complete bool
	restored bool // PreRestore was sent
	target   string
}

// InitializeForBackup begins a backup session, optionally from a saved
// Backup Components Document.
func (s *Service) InitializeForBackup(ctx context.Context, bcdXML string) (*Backup, error) {
	bcd := &vssmeta.BackupComponents{BackupType: vssmeta.BackupFull, SelectComponents: true}
	if bcdXML != "" {
		b, err := vssmeta.ParseBackupComponents([]byte(bcdXML))
		if err != nil {
			return nil, vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "the Backup Components Document")
		}
		bcd = b
	}
	return s.newBackup(ctx, bcd, false), nil
}

// InitializeForRestore begins a restore session from the Backup Components
// Document saved with the backup.
func (s *Service) InitializeForRestore(ctx context.Context, bcdXML string) (*Backup, error) {
	b, err := vssmeta.ParseBackupComponents([]byte(bcdXML))
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "the Backup Components Document")
	}
	return s.newBackup(ctx, b, true), nil
}

func (s *Service) newBackup(ctx context.Context, bcd *vssmeta.BackupComponents, restore bool) *Backup {
	b := &Backup{s: s, ID: uuid.NewString(), owner: CallerOf(ctx).Session, restore: restore, bcd: bcd, context: vss.CtxBackup}
	if bcd.Context != 0 {
		b.context = vss.Context(bcd.Context)
	}
	s.backups.mu.Lock()
	if s.backups.live == nil {
		s.backups.live = map[string]*Backup{}
	}
	s.backups.live[b.ID] = b
	s.backups.mu.Unlock()
	return b
}

// Backup returns a live session of the caller's connection.
func (s *Service) Backup(ctx context.Context, id string) (*Backup, error) {
	s.backups.mu.Lock()
	b := s.backups.live[id]
	s.backups.mu.Unlock()
	if b == nil || b.owner != CallerOf(ctx).Session {
		return nil, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no backup session %q on this connection", id)
	}
	return b, nil
}

// EndBackups ends every session a connection left open.
func (s *Service) EndBackups(ctx context.Context, owner string) {
	s.backups.mu.Lock()
	var mine []*Backup
	for _, b := range s.backups.live {
		if b.owner == owner {
			mine = append(mine, b)
		}
	}
	s.backups.mu.Unlock()
	for _, b := range mine {
		if _, err := b.End(ctx); err != nil {
			s.log.Warn("ending a backup session", "session", b.ID, "err", err)
		}
	}
}

func badState(format string, args ...any) error {
	return vsserr.New(vsserr.VSS_E_BAD_STATE, format, args...)
}

func (b *Backup) check() error {
	if b.ended {
		return badState("the backup session has ended")
	}
	return nil
}

// Document returns the session's Backup Components Document (SaveAsXML).
func (b *Backup) Document() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, err := b.bcd.XML()
	if err != nil {
		return "", vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "writing the Backup Components Document")
	}
	return string(x), nil
}

// SetContext sets the context of the shadows to make.
func (b *Backup) SetContext(c vss.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	if !c.Valid() {
		return vsserr.New(vsserr.VSS_E_UNSUPPORTED_CONTEXT, "context 0x%x cannot be used to create shadow copies", uint32(c))
	}
	if !(b.setID == uuid.Nil) {
		return badState("the context must be set before StartSnapshotSet")
	}
	b.context = c
	b.bcd.Context = uint32(c)
	return nil
}

// SetBackupState declares the kind of backup.
func (b *Backup) SetBackupState(selectComponents bool, t vssmeta.BackupType, partialFiles bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	if t < vssmeta.BackupFull || t > vssmeta.BackupOther {
		return vsserr.New(vsserr.E_INVALIDARG, "backup type %d is not one of full (1) … other (6)", int(t))
	}
	if b.prepared {
		return badState("the backup state must be set before PrepareForBackup")
	}
	b.bcd.SelectComponents, b.bcd.BackupType, b.bcd.PartialFileSupport = selectComponents, t, partialFiles
	return nil
}

// ExcludeWriters leaves writers out of the set, by name, class ID or
// instance ID.
func (b *Backup) ExcludeWriters(names []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	if b.prepared {
		return badState("writers must be excluded before PrepareForBackup")
	}
	b.exclude = append(b.exclude, names...)
	return nil
}

func (b *Backup) excluded(st writers.Status) bool {
	for _, n := range b.exclude {
		n = strings.Trim(strings.TrimSpace(n), "{}")
		if strings.EqualFold(n, st.Name) || strings.EqualFold(n, st.WriterID.String()) || strings.EqualFold(n, st.InstanceID.String()) {
			return true
		}
	}
	return false
}

// GatherWriterMetadata sends Identify to every writer and returns their
// status and documents. Excluded writers are left out.
func (b *Backup) GatherWriterMetadata(ctx context.Context) ([]writers.Status, error) {
	b.mu.Lock()
	if err := b.check(); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	b.mu.Unlock()
	b.s.retryConfigured(ctx)
	all := b.s.writers.Gather(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gathered = map[uuid.UUID]*vssmeta.WriterMetadata{}
	var out []writers.Status
	for _, st := range all {
		if b.excluded(st) || st.State == vssmeta.StateFailedAtIdentify {
			continue
		}
		b.gathered[st.InstanceID] = st.Metadata
		out = append(out, st)
	}
	return out, nil
}

// AddComponent selects a writer's component for the backup.
func (b *Backup) AddComponent(instance uuid.UUID, logicalPath, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	if b.restore {
		return badState("AddComponent is for backups; use SelectForRestore")
	}
	if !(b.setID == uuid.Nil) {
		return badState("components must be added before StartSnapshotSet")
	}
	if b.gathered == nil {
		return badState("call GatherWriterMetadata before AddComponent")
	}
	meta := b.gathered[instance]
	if meta == nil {
		return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no writer instance %s", instance)
	}
	if err := b.bcd.AddComponent(meta, logicalPath, name); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "writer '%s'", meta.Name)
	}
	return nil
}

// StartSnapshotSet begins the set and returns its ID.
func (b *Backup) StartSnapshotSet() (uuid.UUID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return uuid.Nil, err
	}
	if b.restore {
		return uuid.Nil, badState("a restore session makes no shadow copies")
	}
	if !(b.setID == uuid.Nil) {
		return uuid.Nil, badState("the set %s is already started", b.setID)
	}
	b.setID = uuid.New()
	b.bcd.SetID = b.setID
	return b.setID, nil
}

// AddToSnapshotSet adds a volume to the set and returns its shadow's ID.
func (b *Backup) AddToSnapshotSet(path, provider string) (uuid.UUID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return uuid.Nil, err
	}
	if b.setID == uuid.Nil {
		return uuid.Nil, badState("call StartSnapshotSet before AddToSnapshotSet")
	}
	if b.done != nil || b.prepared {
		return uuid.Nil, badState("volumes must be added before PrepareForBackup")
	}
	if len(b.volumes) >= MaxVolumesPerSet {
		return uuid.Nil, vsserr.New(vsserr.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, "a set holds at most %d volumes", MaxVolumesPerSet)
	}
	if provider != "" && b.provider != "" && provider != b.provider {
		return uuid.Nil, vsserr.New(vsserr.E_INVALIDARG, "one provider per set: %s, not %s", b.provider, provider)
	}
	if provider != "" {
		if _, err := b.s.providerByName(provider); err != nil {
			return uuid.Nil, err
		}
		b.provider = provider
	}
	v, err := resolveVolume(path)
	if err != nil {
		return uuid.Nil, err
	}
	if slices.Contains(b.volumes, v) {
		return uuid.Nil, vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "volume %s is already in the set", v)
	}
	id := uuid.New()
	b.volumes = append(b.volumes, v)
	b.shadows = append(b.shadows, id)
	return id, nil
}

// participants chooses the writers of the set (once).
func (b *Backup) participants() []*writers.Participant {
	if b.parts == nil {
		b.parts = b.s.writers.Select(b.volumes, b.writerSet())
		if b.parts == nil {
			b.parts = []*writers.Participant{}
		}
	}
	return b.parts
}

func (b *Backup) writerSet() writers.Set {
	return writers.Set{BackupType: b.bcd.BackupType, Components: b.bcd, Exclude: b.excluded}
}

// send delivers an event to every participant and returns the first error.
func (b *Backup) send(ctx context.Context, ev writers.Event, info *coordinator.SetInfo) error {
	var first error
	for _, p := range b.parts {
		if err := p.Send(ctx, ev, info); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (b *Backup) setInfo() *coordinator.SetInfo {
	info := &coordinator.SetInfo{ID: b.setID, Context: b.context, ShadowPaths: map[string]string{}}
	if b.done != nil {
		for _, sh := range b.done.Shadows {
			info.ShadowPaths[sh.VolumePath] = sh.ShadowPath
		}
	}
	return info
}

// PrepareForBackup sends PrepareBackup to the set's writers.
func (b *Backup) PrepareForBackup(ctx context.Context) ([]writers.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return nil, err
	}
	if len(b.volumes) == 0 {
		return nil, badState("add volumes to the set before PrepareForBackup")
	}
	if b.prepared {
		return nil, badState("PrepareForBackup was already called")
	}
	b.prepared = true
	var err error
	if b.context.Writers() {
		b.participants()
		err = b.send(ctx, writers.PrepareBackup, b.setInfo())
	} else {
		b.parts = []*writers.Participant{}
	}
	b.s.auditf(ctx, "prepare-for-backup", map[string]any{"session": b.ID, "set": b.setID}, err)
	return participantStatus(b.parts), err
}

// DoSnapshotSet makes the set: PrepareSnapshot, Freeze, the commit, Thaw,
// PostSnapshot. On failure the writers got Abort and nothing is left.
func (b *Backup) DoSnapshotSet(ctx context.Context) (*CreateResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return nil, err
	}
	if len(b.volumes) == 0 {
		return nil, badState("the set has no volume")
	}
	if b.done != nil {
		return nil, badState("DoSnapshotSet was already called for set %s", b.setID)
	}
	if b.aborted {
		return nil, badState("the backup was aborted")
	}
	req := CreateRequest{Volumes: b.volumes, Provider: b.provider, Context: b.context, SetID: b.setID, ShadowIDs: b.shadows, Writers: b.writerSet()}
	if b.context.Writers() {
		req.Participants = b.participants()
	} else {
		req.Participants = []*writers.Participant{}
	}
	res, err := b.s.CreateShadowSet(ctx, req)
	if err != nil {
		b.aborted = true
		return res, err
	}
	b.done = res
	b.bcd.Snapshots = nil
	for _, sh := range res.Shadows {
		b.bcd.Snapshots = append(b.bcd.Snapshots, vssmeta.SnapshotInfo{ID: sh.ID, Volume: sh.VolumePath, Path: sh.ShadowPath})
	}
	return res, nil
}

// GatherWriterStatus returns the state of the session's writers (of all
// writers before any was chosen).
func (b *Backup) GatherWriterStatus() []writers.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.parts == nil {
		return b.s.writers.List()
	}
	return participantStatus(b.parts)
}

// SetBackupSucceeded records whether a component's copy succeeded.
func (b *Backup) SetBackupSucceeded(instance uuid.UUID, logicalPath, name string, ok bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	if b.done == nil {
		return badState("SetBackupSucceeded comes after DoSnapshotSet")
	}
	w := b.bcd.Writer(instance)
	var c *vssmeta.ComponentState
	if w != nil {
		c = w.Component(logicalPath, name)
	}
	if c == nil {
		return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "component %q %q of writer %s is not in the backup", logicalPath, name, instance)
	}
	c.BackupSucceeded = ok
	return nil
}

// BackupComplete tells the writers the backup is complete (they may mark
// their differential base).
func (b *Backup) BackupComplete(ctx context.Context) ([]writers.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return nil, err
	}
	if b.done == nil {
		return nil, badState("BackupComplete comes after a successful DoSnapshotSet")
	}
	if b.complete {
		return nil, badState("BackupComplete was already sent")
	}
	b.complete = true
	err := b.send(ctx, writers.BackupComplete, b.setInfo())
	b.s.auditf(ctx, "backup-complete", map[string]any{"session": b.ID, "set": b.setID}, err)
	return participantStatus(b.parts), err
}

// AbortBackup aborts the backup: the writers get Abort.
func (b *Backup) AbortBackup(ctx context.Context) ([]writers.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return nil, err
	}
	b.aborted = true
	err := b.send(ctx, writers.Abort, b.setInfo())
	b.s.auditf(ctx, "abort-backup", map[string]any{"session": b.ID, "set": b.setID}, err)
	return participantStatus(b.parts), err
}

// SelectForRestore marks a component of the saved document for restore,
// optionally to a new directory (restore with move) or under a new name.
func (b *Backup) SelectForRestore(instance uuid.UUID, logicalPath, name, newTarget, newName string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	if !b.restore {
		return badState("SelectForRestore is for restore sessions")
	}
	if b.restored {
		return badState("components must be selected before PreRestore")
	}
	w := b.bcd.Writer(instance)
	var c *vssmeta.ComponentState
	if w != nil {
		c = w.Component(logicalPath, name)
	}
	if c == nil {
		return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "component %q %q of writer %s is not in the backup document", logicalPath, name, instance)
	}
	if newTarget != "" && !strings.HasPrefix(newTarget, "/") {
		return vsserr.New(vsserr.E_INVALIDARG, "the new target %q is not an absolute path", newTarget)
	}
	c.SelectedForRestore = true
	if newTarget != "" {
		c.NewTargets = append(c.NewTargets, vssmeta.NewTarget{Path: "/", Filespec: "*", Recursive: true, AlternatePath: newTarget})
	}
	c.RestoreName = newName
	return nil
}

// restoreParticipants are the registered writers of the components
// selected for restore.
func (b *Backup) restoreParticipants() []*writers.Participant {
	var ids []uuid.UUID
	for _, w := range b.bcd.Writers {
		for _, c := range w.Components {
			if c.SelectedForRestore {
				ids = append(ids, w.InstanceID)
				break
			}
		}
	}
	return b.s.writers.ForRestore(ids, b.bcd)
}

// PreRestore tells the writers of the selected components that their files
// are about to be replaced (in place, or in target).
func (b *Backup) PreRestore(ctx context.Context, target string) ([]writers.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return nil, err
	}
	if !b.restore {
		return nil, badState("PreRestore is for restore sessions")
	}
	if b.restored {
		return nil, badState("PreRestore was already sent")
	}
	if target != "" && !strings.HasPrefix(target, "/") {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "the restore target %q is not an absolute path", target)
	}
	b.restored, b.target = true, target
	b.parts = b.restoreParticipants()
	for _, p := range b.parts {
		p.SetRestoreTarget(target)
	}
	err := b.send(ctx, writers.PreRestore, nil)
	b.s.auditf(ctx, "pre-restore", map[string]any{"session": b.ID, "target": target}, err)
	return participantStatus(b.parts), err
}

// PostRestore tells the writers their files are in place (they recover and
// reopen).
func (b *Backup) PostRestore(ctx context.Context) ([]writers.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(); err != nil {
		return nil, err
	}
	if !b.restored {
		return nil, badState("PostRestore comes after PreRestore")
	}
	err := b.send(ctx, writers.PostRestore, nil)
	b.s.auditf(ctx, "post-restore", map[string]any{"session": b.ID, "target": b.target}, err)
	return participantStatus(b.parts), err
}

// End ends the session: writers get Abort if the backup did not finish,
// then BackupShutdown; the set's auto-release shadows are deleted.
func (b *Backup) End(ctx context.Context) ([]writers.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return nil, nil
	}
	b.ended = true
	b.s.backups.mu.Lock()
	delete(b.s.backups.live, b.ID)
	b.s.backups.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	if b.prepared && b.done == nil && !b.aborted {
		_ = b.send(ctx, writers.Abort, b.setInfo())
	}
	var err error
	if !b.restore {
		err = b.send(ctx, writers.BackupShutdown, b.setInfo())
	}
	if b.done != nil && b.context.AutoRelease() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		b.s.mu.Lock()
		// Some may have been deleted during the session already.
		var left []catalog.Shadow
		for _, sh := range b.done.Shadows {
			if _, err := b.s.cat.Shadow(sh.ID); err == nil {
				left = append(left, sh)
			}
		}
		derr := b.s.deleteShadows(sctx, left, "auto-release")
		b.s.mu.Unlock()
		b.s.auditf(ctx, "auto-release", map[string]any{"session": b.ID, "set": b.setID}, derr)
		if err == nil {
			err = derr
		}
	}
	return participantStatus(b.parts), err
}

// resolveVolume returns the mount path of the volume that path names.
func resolveVolume(path string) (string, error) {
	v, err := volume.Resolve(path)
	if err != nil {
		return "", err
	}
	return v.Path, nil
}
