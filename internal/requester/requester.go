// Package requester is the requester side of the service for our own tools
// (diskshadow, wbadmin): a backup or restore session with the calls of
// IVssBackupComponents, the same whether the service runs in this process
// (embedded mode) or in vssd (over the Requester API).
package requester

import (
	"context"

	"github.com/google/uuid"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiclient"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// WriterInfo is a writer's status with its metadata document.
type WriterInfo struct {
	Status   service.WriterStatus
	Metadata *vssmeta.WriterMetadata
}

// Session is one backup or restore session. Calls out of order fail with
// VSS_E_BAD_STATE, as the service decides.
type Session interface {
	ID() string
	GatherWriterMetadata(ctx context.Context) ([]WriterInfo, error)
	SetContext(ctx context.Context, c vss.Context) error
	SetBackupState(ctx context.Context, selectComponents bool, t vssmeta.BackupType, partialFiles bool) error
	ExcludeWriters(ctx context.Context, names []string) error
	AddComponent(ctx context.Context, instance uuid.UUID, logicalPath, name string) error
	StartSnapshotSet(ctx context.Context) (uuid.UUID, error)
	AddToSnapshotSet(ctx context.Context, volume, provider string) (uuid.UUID, error)
	PrepareForBackup(ctx context.Context) ([]WriterInfo, error)
	DoSnapshotSet(ctx context.Context) (*service.CreateResult, error)
	GatherWriterStatus(ctx context.Context) ([]WriterInfo, error)
	SetBackupSucceeded(ctx context.Context, instance uuid.UUID, logicalPath, name string, ok bool) error
	BackupComplete(ctx context.Context) ([]WriterInfo, error)
	AbortBackup(ctx context.Context) ([]WriterInfo, error)
	// Document returns the Backup Components Document (SaveAsXML).
	Document(ctx context.Context) (string, error)
	SelectForRestore(ctx context.Context, instance uuid.UUID, logicalPath, name, newTarget, newName string) error
	PreRestore(ctx context.Context, target string) ([]WriterInfo, error)
	PostRestore(ctx context.Context) ([]WriterInfo, error)
	// End ends the session (BackupShutdown; auto-release shadows go).
	End(ctx context.Context) ([]WriterInfo, error)
}

// Requester begins sessions.
type Requester interface {
	InitializeForBackup(ctx context.Context, bcdXML string) (Session, error)
	InitializeForRestore(ctx context.Context, bcdXML string) (Session, error)
}

// Embedded returns the requester of a service in this process.
func Embedded(s *service.Service) Requester { return embedded{s} }

type embedded struct{ s *service.Service }

func (e embedded) InitializeForBackup(ctx context.Context, bcd string) (Session, error) {
	b, err := e.s.InitializeForBackup(ctx, bcd)
	if err != nil {
		return nil, err
	}
	return &local{b: b}, nil
}

func (e embedded) InitializeForRestore(ctx context.Context, bcd string) (Session, error) {
	b, err := e.s.InitializeForRestore(ctx, bcd)
	if err != nil {
		return nil, err
	}
	return &local{b: b}, nil
}

// local is a session of the service in this process.
type local struct{ b *service.Backup }

func infos(sts []writers.Status) []WriterInfo {
	out := make([]WriterInfo, 0, len(sts))
	for _, st := range sts {
		out = append(out, WriterInfo{Status: service.WriterStatusOf(st), Metadata: st.Metadata})
	}
	return out
}

func (l *local) ID() string { return l.b.ID }
func (l *local) GatherWriterMetadata(ctx context.Context) ([]WriterInfo, error) {
	sts, err := l.b.GatherWriterMetadata(ctx)
	return infos(sts), err
}
func (l *local) SetContext(ctx context.Context, c vss.Context) error { return l.b.SetContext(c) }
func (l *local) SetBackupState(ctx context.Context, sel bool, t vssmeta.BackupType, partial bool) error {
	return l.b.SetBackupState(sel, t, partial)
}
func (l *local) ExcludeWriters(ctx context.Context, names []string) error {
	return l.b.ExcludeWriters(names)
}
func (l *local) AddComponent(ctx context.Context, instance uuid.UUID, lp, name string) error {
	return l.b.AddComponent(instance, lp, name)
}
func (l *local) StartSnapshotSet(ctx context.Context) (uuid.UUID, error) {
	return l.b.StartSnapshotSet()
}
func (l *local) AddToSnapshotSet(ctx context.Context, volume, provider string) (uuid.UUID, error) {
	return l.b.AddToSnapshotSet(volume, provider)
}
func (l *local) PrepareForBackup(ctx context.Context) ([]WriterInfo, error) {
	sts, err := l.b.PrepareForBackup(ctx)
	return infos(sts), err
}
func (l *local) DoSnapshotSet(ctx context.Context) (*service.CreateResult, error) {
	return l.b.DoSnapshotSet(ctx)
}
func (l *local) GatherWriterStatus(ctx context.Context) ([]WriterInfo, error) {
	return infos(l.b.GatherWriterStatus()), nil
}
func (l *local) SetBackupSucceeded(ctx context.Context, instance uuid.UUID, lp, name string, ok bool) error {
	return l.b.SetBackupSucceeded(instance, lp, name, ok)
}
func (l *local) BackupComplete(ctx context.Context) ([]WriterInfo, error) {
	sts, err := l.b.BackupComplete(ctx)
	return infos(sts), err
}
func (l *local) AbortBackup(ctx context.Context) ([]WriterInfo, error) {
	sts, err := l.b.AbortBackup(ctx)
	return infos(sts), err
}
func (l *local) Document(ctx context.Context) (string, error) { return l.b.Document() }
func (l *local) SelectForRestore(ctx context.Context, instance uuid.UUID, lp, name, target, newName string) error {
	return l.b.SelectForRestore(instance, lp, name, target, newName)
}
func (l *local) PreRestore(ctx context.Context, target string) ([]WriterInfo, error) {
	sts, err := l.b.PreRestore(ctx, target)
	return infos(sts), err
}
func (l *local) PostRestore(ctx context.Context) ([]WriterInfo, error) {
	sts, err := l.b.PostRestore(ctx)
	return infos(sts), err
}
func (l *local) End(ctx context.Context) ([]WriterInfo, error) {
	sts, err := l.b.End(ctx)
	return infos(sts), err
}

// Remote returns the requester of the vssd a client is connected to. Its
// sessions live on that connection.
func Remote(c *apiclient.Client) Requester {
	return remote{api: vssv1.NewRequesterClient(c.Conn())}
}

type remote struct{ api vssv1.RequesterClient }

// fail turns a call's status back into the service's error.
func fail(err error) error {
	if err == nil {
		return nil
	}
	_, e := wire.FromStatus(err, nil)
	return e
}

func (r remote) InitializeForBackup(ctx context.Context, bcd string) (Session, error) {
	rep, err := r.api.InitializeForBackup(ctx, &vssv1.InitializeForBackupRequest{BcdXml: bcd})
	if err != nil {
		return nil, fail(err)
	}
	return &session{api: r.api, id: rep.GetSessionId()}, nil
}

func (r remote) InitializeForRestore(ctx context.Context, bcd string) (Session, error) {
	rep, err := r.api.InitializeForRestore(ctx, &vssv1.InitializeForRestoreRequest{BcdXml: bcd})
	if err != nil {
		return nil, fail(err)
	}
	return &session{api: r.api, id: rep.GetSessionId()}, nil
}

// session is a session in vssd.
type session struct {
	api vssv1.RequesterClient
	id  string
}

func (s *session) req() *vssv1.SessionRequest { return &vssv1.SessionRequest{SessionId: s.id} }

// remoteInfos decodes writer infos; err is the call's error.
func remoteInfos(ws []*vssv1.WriterInfo, err error) ([]WriterInfo, error) {
	out := make([]WriterInfo, 0, len(ws))
	for _, w := range ws {
		st, derr := wire.WritersFromProto([]*vssv1.WriterStatus{w.GetStatus()})
		if derr != nil {
			return out, derr
		}
		info := WriterInfo{Status: st[0]}
		if x := w.GetMetadataXml(); x != "" {
			m, perr := vssmeta.ParseWriterMetadata([]byte(x))
			if perr != nil {
				return out, vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, perr, "writer '%s': metadata document", st[0].Name)
			}
			info.Metadata = m
		}
		out = append(out, info)
	}
	return out, fail(err)
}

func (s *session) writers(rep *vssv1.WritersReply, err error) ([]WriterInfo, error) {
	return remoteInfos(rep.GetWriters(), err)
}

func (s *session) ID() string { return s.id }
func (s *session) GatherWriterMetadata(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.GatherWriterMetadata(ctx, s.req()))
}
func (s *session) SetContext(ctx context.Context, c vss.Context) error {
	_, err := s.api.SetContext(ctx, &vssv1.SetContextRequest{SessionId: s.id, Context: uint32(c)})
	return fail(err)
}
func (s *session) SetBackupState(ctx context.Context, sel bool, t vssmeta.BackupType, partial bool) error {
	_, err := s.api.SetBackupState(ctx, &vssv1.SetBackupStateRequest{SessionId: s.id, SelectComponents: sel, BackupType: int32(t), PartialFileSupport: partial})
	return fail(err)
}
func (s *session) ExcludeWriters(ctx context.Context, names []string) error {
	_, err := s.api.ExcludeWriters(ctx, &vssv1.ExcludeWritersRequest{SessionId: s.id, Writers: names})
	return fail(err)
}
func (s *session) AddComponent(ctx context.Context, instance uuid.UUID, lp, name string) error {
	_, err := s.api.AddComponent(ctx, &vssv1.ComponentRequest{SessionId: s.id, WriterInstanceId: instance.String(), LogicalPath: lp, Name: name})
	return fail(err)
}
func (s *session) StartSnapshotSet(ctx context.Context) (uuid.UUID, error) {
	rep, err := s.api.StartSnapshotSet(ctx, s.req())
	if err != nil {
		return uuid.Nil, fail(err)
	}
	return wire.IDFromProto("set_id", rep.GetSetId())
}
func (s *session) AddToSnapshotSet(ctx context.Context, volume, provider string) (uuid.UUID, error) {
	rep, err := s.api.AddToSnapshotSet(ctx, &vssv1.AddToSnapshotSetRequest{SessionId: s.id, Volume: volume, Provider: provider})
	if err != nil {
		return uuid.Nil, fail(err)
	}
	return wire.IDFromProto("shadow_id", rep.GetShadowId())
}
func (s *session) PrepareForBackup(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.PrepareForBackup(ctx, s.req()))
}
func (s *session) DoSnapshotSet(ctx context.Context) (*service.CreateResult, error) {
	rep, err := s.api.DoSnapshotSet(ctx, s.req())
	if err != nil {
		partial := &vssv1.DoSnapshotSetReply{}
		has, e := wire.FromStatus(err, partial)
		if !has || partial.GetResult() == nil {
			return nil, e
		}
		res, _ := wire.CreateResultFromProto(partial.GetResult())
		return res, e
	}
	return wire.CreateResultFromProto(rep.GetResult())
}
func (s *session) GatherWriterStatus(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.GatherWriterStatus(ctx, s.req()))
}
func (s *session) SetBackupSucceeded(ctx context.Context, instance uuid.UUID, lp, name string, ok bool) error {
	_, err := s.api.SetBackupSucceeded(ctx, &vssv1.SetBackupSucceededRequest{SessionId: s.id, WriterInstanceId: instance.String(), LogicalPath: lp, Name: name, Succeeded: ok})
	return fail(err)
}
func (s *session) BackupComplete(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.BackupComplete(ctx, s.req()))
}
func (s *session) AbortBackup(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.AbortBackup(ctx, s.req()))
}
func (s *session) Document(ctx context.Context) (string, error) {
	rep, err := s.api.SaveAsXML(ctx, s.req())
	if err != nil {
		return "", fail(err)
	}
	return rep.GetBcdXml(), nil
}
func (s *session) SelectForRestore(ctx context.Context, instance uuid.UUID, lp, name, target, newName string) error {
	_, err := s.api.SelectForRestore(ctx, &vssv1.SelectForRestoreRequest{SessionId: s.id, WriterInstanceId: instance.String(), LogicalPath: lp, Name: name, NewTarget: target, NewName: newName})
	return fail(err)
}
func (s *session) PreRestore(ctx context.Context, target string) ([]WriterInfo, error) {
	return s.writers(s.api.PreRestore(ctx, &vssv1.RestoreRequest{SessionId: s.id, RestoreTarget: target}))
}
func (s *session) PostRestore(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.PostRestore(ctx, &vssv1.RestoreRequest{SessionId: s.id}))
}
func (s *session) End(ctx context.Context) ([]WriterInfo, error) {
	return s.writers(s.api.EndSession(ctx, s.req()))
}
