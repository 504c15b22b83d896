package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// registerTimeout bounds the wait for a new stream's Register message.
const registerTimeout = 10 * time.Second

// writerHub implements the Writers service: each Connect stream is one
// registered writer.
type writerHub struct {
	vssv1.UnimplementedWritersServer
	svc *service.Service
	log *slog.Logger
}

func (h *writerHub) Connect(stream vssv1.Writers_ConnectServer) error {
	ctx := stream.Context()
	caller := service.CallerOf(ctx)
	first, err := recvTimeout(stream, registerTimeout)
	if err != nil {
		return wire.ToStatus(vsserr.Wrap(vsserr.E_INVALIDARG, err, "waiting for the writer's Register message"), nil)
	}
	reg := first.GetRegister()
	if reg == nil {
		return wire.ToStatus(vsserr.New(vsserr.E_INVALIDARG, "the first message of a writer stream must be Register"), nil)
	}
	meta, err := vssmeta.ParseWriterMetadata([]byte(reg.GetMetadataXml()))
	if err != nil {
		return wire.ToStatus(vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "the writer's metadata document"), nil)
	}
	policy, err := writers.ParsePolicy(reg.GetOnError())
	if err != nil {
		return wire.ToStatus(vsserr.Wrap(vsserr.E_INVALIDARG, err, "writer '%s'", meta.Name), nil)
	}
	sw := &streamWriter{stream: stream, name: meta.Name, pending: map[uint64]chan *vssv1.EventResult{}, dead: make(chan struct{})}
	go sw.receive()
	remove, err := h.svc.Writers().Add(ctx, writers.Registration{Writer: sw, Kind: writers.KindAPI, Policy: policy, Owner: caller.Uid})
	h.svc.Audit(ctx, "register-writer", map[string]any{"writer": meta.Name, "instance": meta.InstanceID}, err)
	if err != nil {
		return wire.ToStatus(err, nil)
	}
	defer remove()
	if err := sw.send(&vssv1.ServiceMessage{Msg: &vssv1.ServiceMessage_Registered{Registered: &vssv1.Registered{
		WriterId: meta.WriterID.String(), InstanceId: meta.InstanceID.String(),
	}}}); err != nil {
		return err
	}
	select {
	case <-sw.dead:
	case <-ctx.Done():
	}
	h.log.Info("writer stream ended", "writer", meta.Name, "err", sw.err())
	return nil
}

// recvTimeout receives one message or gives up after d.
func recvTimeout(stream vssv1.Writers_ConnectServer, d time.Duration) (*vssv1.WriterMessage, error) {
	type res struct {
		m   *vssv1.WriterMessage
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := stream.Recv()
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("no message within %v", d)
	}
}

// streamWriter is a writer on the other end of a Connect stream.
type streamWriter struct {
	stream vssv1.Writers_ConnectServer
	name   string

	sendMu sync.Mutex
	mu     sync.Mutex
	seq    uint64
	// pending are the events waiting for their result.
	pending map[uint64]chan *vssv1.EventResult
	dead    chan struct{}
	recvErr error
}

func (w *streamWriter) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.recvErr
}

func (w *streamWriter) send(m *vssv1.ServiceMessage) error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	return w.stream.Send(m)
}

// receive hands results to the events waiting for them until the stream
// ends.
func (w *streamWriter) receive() {
	for {
		m, err := w.stream.Recv()
		if err != nil {
			w.mu.Lock()
			w.recvErr = err
			w.mu.Unlock()
			close(w.dead)
			return
		}
		r := m.GetResult()
		if r == nil {
			continue // a second Register is ignored
		}
		w.mu.Lock()
		ch := w.pending[r.GetSeq()]
		delete(w.pending, r.GetSeq())
		w.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// call sends an event and waits for its result.
func (w *streamWriter) call(ctx context.Context, ev *vssv1.WriterEvent) (*vssv1.EventResult, error) {
	ch := make(chan *vssv1.EventResult, 1)
	w.mu.Lock()
	w.seq++
	ev.Seq = w.seq
	w.pending[ev.Seq] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, ev.Seq)
		w.mu.Unlock()
	}()
	if d, ok := ctx.Deadline(); ok && ev.Deadline == nil {
		ev.Deadline = timestamppb.New(d)
	}
	if err := w.send(&vssv1.ServiceMessage{Msg: &vssv1.ServiceMessage_Event{Event: ev}}); err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITER_NOT_RESPONDING, err, "writer '%s': its stream is closed", w.name)
	}
	select {
	case r := <-ch:
		if r.GetHresult() != 0 {
			return r, vsserr.New(vsserr.Code(r.GetHresult()), "%s", r.GetMessage())
		}
		return r, nil
	case <-w.dead:
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITER_NOT_RESPONDING, errors.New("the writer's stream ended"), "writer '%s' went away during %s", w.name, ev.GetEvent())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Alive reports whether the writer's stream is still open.
func (w *streamWriter) Alive() bool {
	select {
	case <-w.dead:
		return false
	default:
		return true
	}
}

// Identify asks the writer for its metadata document.
func (w *streamWriter) Identify(ctx context.Context) (*vssmeta.WriterMetadata, error) {
	r, err := w.call(ctx, &vssv1.WriterEvent{Event: writers.Identify.String()})
	if err != nil {
		return nil, err
	}
	return vssmeta.ParseWriterMetadata([]byte(r.GetMetadataXml()))
}

// Handle sends one event; the writer's changes to its components come back
// into the Backup Components Document.
func (w *streamWriter) Handle(ctx context.Context, ev writers.Event, req *writers.Request) error {
	m := &vssv1.WriterEvent{
		Event: ev.String(), Context: req.Context, BackupType: int32(req.BackupType),
		Volumes: req.Volumes, ShadowPaths: req.ShadowPaths, RestoreTarget: req.RestoreTarget, Atomic: req.Atomic,
	}
	if req.SetID != [16]byte{} {
		m.SetId = req.SetID.String()
	}
	if !req.Deadline.IsZero() {
		m.Deadline = timestamppb.New(req.Deadline)
	}
	if req.Components != nil {
		x, err := (&vssmeta.BackupComponents{BackupType: req.BackupType, Writers: []vssmeta.WriterComponents{*req.Components}}).XML()
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "encoding the writer's components")
		}
		m.ComponentsXml = string(x)
	}
	r, err := w.call(ctx, m)
	if err != nil {
		return err
	}
	if x := r.GetComponentsXml(); x != "" && req.Components != nil {
		b, err := vssmeta.ParseBackupComponents([]byte(x))
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "writer '%s' returned bad components", w.name)
		}
		if len(b.Writers) == 1 {
			req.Components.Components = b.Writers[0].Components
		}
	}
	return nil
}
