package apiserver

import (
	"context"

	"github.com/google/uuid"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// requester implements the Requester service: backup and restore sessions
// that live on the caller's connection.
type requester struct {
	vssv1.UnimplementedRequesterServer
	svc *service.Service
}

// writerInfos converts writer states, with their metadata documents.
func writerInfos(sts []writers.Status) []*vssv1.WriterInfo {
	out := make([]*vssv1.WriterInfo, 0, len(sts))
	for _, st := range sts {
		ws := service.WriterStatusOf(st)
		info := &vssv1.WriterInfo{Status: wire.WritersToProto([]service.WriterStatus{ws})[0], Kind: st.Kind, OnError: string(st.Policy)}
		if st.Metadata != nil {
			if x, err := st.Metadata.XML(); err == nil {
				info.MetadataXml = string(x)
			}
		}
		out = append(out, info)
	}
	return out
}

func (r *requester) session(ctx context.Context, id string) (*service.Backup, error) {
	return r.svc.Backup(ctx, id)
}

func (r *requester) reply(b *service.Backup) (*vssv1.SessionReply, error) {
	x, err := b.Document()
	if err != nil {
		return nil, err
	}
	return &vssv1.SessionReply{SessionId: b.ID, BcdXml: x}, nil
}

func (r *requester) writersReply(b *service.Backup, sts []writers.Status, err error) (*vssv1.WritersReply, error) {
	out := &vssv1.WritersReply{Writers: writerInfos(sts)}
	if x, xerr := b.Document(); xerr == nil {
		out.BcdXml = x
	}
	return out, err
}

// writersCall runs a call on a session that answers with the writers'
// states and the document.
func (r *requester) writersCall(ctx context.Context, id string, call func(*service.Backup) ([]writers.Status, error)) (*vssv1.WritersReply, error) {
	b, err := r.session(ctx, id)
	if err != nil {
		return nil, err
	}
	sts, err := call(b)
	return r.writersReply(b, sts, err)
}

// sessionCall runs a call on a session that answers with the document.
func (r *requester) sessionCall(ctx context.Context, id string, call func(*service.Backup) error) (*vssv1.SessionReply, error) {
	b, err := r.session(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := call(b); err != nil {
		return nil, err
	}
	return r.reply(b)
}

func parseID(what, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, vsserr.Wrap(vsserr.E_INVALIDARG, err, "%s %q is not a GUID", what, s)
	}
	return id, nil
}

func (r *requester) InitializeForBackup(ctx context.Context, req *vssv1.InitializeForBackupRequest) (*vssv1.SessionReply, error) {
	b, err := r.svc.InitializeForBackup(ctx, req.GetBcdXml())
	if err != nil {
		return nil, err
	}
	return r.reply(b)
}

func (r *requester) InitializeForRestore(ctx context.Context, req *vssv1.InitializeForRestoreRequest) (*vssv1.SessionReply, error) {
	b, err := r.svc.InitializeForRestore(ctx, req.GetBcdXml())
	if err != nil {
		return nil, err
	}
	return r.reply(b)
}

func (r *requester) GatherWriterMetadata(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.GatherWriterMetadata(ctx) })
}

func (r *requester) SetContext(ctx context.Context, req *vssv1.SetContextRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		return b.SetContext(vss.Context(req.GetContext()))
	})
}

func (r *requester) SetBackupState(ctx context.Context, req *vssv1.SetBackupStateRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		return b.SetBackupState(req.GetSelectComponents(), vssmeta.BackupType(req.GetBackupType()), req.GetPartialFileSupport())
	})
}

func (r *requester) ExcludeWriters(ctx context.Context, req *vssv1.ExcludeWritersRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		return b.ExcludeWriters(req.GetWriters())
	})
}

func (r *requester) AddComponent(ctx context.Context, req *vssv1.ComponentRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		id, err := parseID("writer instance", req.GetWriterInstanceId())
		if err != nil {
			return err
		}
		return b.AddComponent(id, req.GetLogicalPath(), req.GetName())
	})
}

func (r *requester) StartSnapshotSet(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.StartSnapshotSetReply, error) {
	b, err := r.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	id, err := b.StartSnapshotSet()
	if err != nil {
		return nil, err
	}
	return &vssv1.StartSnapshotSetReply{SetId: id.String()}, nil
}

func (r *requester) AddToSnapshotSet(ctx context.Context, req *vssv1.AddToSnapshotSetRequest) (*vssv1.AddToSnapshotSetReply, error) {
	b, err := r.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	id, err := b.AddToSnapshotSet(req.GetVolume(), req.GetProvider())
	if err != nil {
		return nil, err
	}
	return &vssv1.AddToSnapshotSetReply{ShadowId: id.String(), Volume: req.GetVolume()}, nil
}

func (r *requester) PrepareForBackup(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.PrepareForBackup(ctx) })
}

func (r *requester) DoSnapshotSet(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.DoSnapshotSetReply, error) {
	b, err := r.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	res, err := b.DoSnapshotSet(ctx)
	out := &vssv1.DoSnapshotSetReply{Result: wire.CreateResultToProto(res), Writers: writerInfos(b.GatherWriterStatus())}
	if x, xerr := b.Document(); xerr == nil {
		out.BcdXml = x
	}
	return out, err
}

func (r *requester) GatherWriterStatus(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.GatherWriterStatus(), nil })
}

func (r *requester) SetBackupSucceeded(ctx context.Context, req *vssv1.SetBackupSucceededRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		id, err := parseID("writer instance", req.GetWriterInstanceId())
		if err != nil {
			return err
		}
		return b.SetBackupSucceeded(id, req.GetLogicalPath(), req.GetName(), req.GetSucceeded())
	})
}

func (r *requester) BackupComplete(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.BackupComplete(ctx) })
}

func (r *requester) AbortBackup(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.AbortBackup(ctx) })
}

func (r *requester) SaveAsXML(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		return nil
	})
}

func (r *requester) SelectForRestore(ctx context.Context, req *vssv1.SelectForRestoreRequest) (*vssv1.SessionReply, error) {
	return r.sessionCall(ctx, req.GetSessionId(), func(b *service.Backup) error {
		id, err := parseID("writer instance", req.GetWriterInstanceId())
		if err != nil {
			return err
		}
		return b.SelectForRestore(id, req.GetLogicalPath(), req.GetName(), req.GetNewTarget(), req.GetNewName())
	})
}

func (r *requester) PreRestore(ctx context.Context, req *vssv1.RestoreRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.PreRestore(ctx, req.GetRestoreTarget()) })
}

func (r *requester) PostRestore(ctx context.Context, req *vssv1.RestoreRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.PostRestore(ctx) })
}

func (r *requester) EndSession(ctx context.Context, req *vssv1.SessionRequest) (*vssv1.WritersReply, error) {
	return r.writersCall(ctx, req.GetSessionId(), func(b *service.Backup) ([]writers.Status, error) { return b.End(ctx) })
}
