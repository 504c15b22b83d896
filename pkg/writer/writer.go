// Package writer is the Go SDK for VSS writers: a program that implements
// Handler (and any of the optional event interfaces) and calls Run takes
// part in every shadow copy set of the volumes its components live on.
//
//	type app struct{ writer.Base }
//	func (a *app) Metadata() *vssmeta.WriterMetadata { … components and files … }
//	func (a *app) Freeze(ctx context.Context, e *writer.Event) error { … hold writes … }
//	func (a *app) Thaw(ctx context.Context, e *writer.Event) error { … resume … }
//	…
//	err := writer.Run(ctx, &app{}, writer.Options{})
//
// The SDK keeps the promise the service makes to applications: a frozen
// writer is thawed (its Thaw, or Abort when it implements Aborter, is
// called) when the Freeze deadline passes without a Thaw, and at once when
// the connection to the service breaks — a killed vssd never leaves the
// application frozen. The deadline holds from the moment Freeze is handed
// to the handler until Thaw returns: a Freeze handler that froze the
// application and then hangs, or a Thaw that hangs, do not keep it frozen
// either. That self-thaw then runs while the hung handler still runs, so
// Abort (or Thaw) must be safe to call concurrently with Freeze and Thaw.
//
// A handler fails an event by returning an error; wrap it with Retryable,
// NonRetryable, OutOfResources or Inconsistent to tell the requester what
// kind of failure it is (VSS_E_WRITERERROR_*). A plain error counts as
// non-retryable.
package writer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// DefaultSocket is where vssd listens unless VSS_SOCKET says otherwise.
const DefaultSocket = "/run/vss/vssd.sock"

// Event is one VSS event as the writer receives it.
type Event struct {
	// Name is the event: PrepareBackup, PrepareSnapshot, Freeze, Thaw,
	// PostSnapshot, Abort, BackupComplete, BackupShutdown, PreRestore,
	// PostRestore.
	Name string
	// SetID is the shadow copy set ("" outside a set).
	SetID string
	// Context is the set's VSS_SNAPSHOT_CONTEXT.
	Context    uint32
	BackupType vssmeta.BackupType
	// Volumes are the mount paths of the set's volumes.
	Volumes []string
	// ShadowPaths maps each volume to where its shadow copy is, from
	// PostSnapshot on (writable during PostSnapshot).
	ShadowPaths map[string]string
	// Components are this writer's selected components; changes made in
	// PrepareBackup, PostSnapshot and BackupComplete go back to the
	// requester's Backup Components Document.
	Components *vssmeta.WriterComponents
	// Deadline is when the writer must have answered; for Freeze, the end
	// of the freeze window.
	Deadline time.Time
	// RestoreTarget is, for restores, the directory restored into when it
	// is not the original place.
	RestoreTarget string
	// Atomic says every shadow of the set is taken at one instant by its
	// provider (a btrfs snapshot): an application that recovers from a
	// crash needs to hold nothing.
	Atomic bool
}

// Handler is what every writer implements: its metadata document and the
// three events VSS requires (OnPrepareSnapshot, OnFreeze, OnThaw).
type Handler interface {
	// Metadata returns the Writer Metadata Document (Identify). It must
	// not change the writer's state.
	Metadata() *vssmeta.WriterMetadata
	PrepareSnapshot(ctx context.Context, e *Event) error
	Freeze(ctx context.Context, e *Event) error
	Thaw(ctx context.Context, e *Event) error
}

// The optional events: a Handler that implements one of these gets the
// event; the others are answered with success.
type (
	// PrepareBackuper handles PrepareBackup.
	PrepareBackuper interface {
		PrepareBackup(ctx context.Context, e *Event) error
	}
	// PostSnapshotter handles PostSnapshot.
	PostSnapshotter interface {
		PostSnapshot(ctx context.Context, e *Event) error
	}
	// Aborter handles Abort (it may come several times, and must undo a
	// freeze). As the self-thaw, it may be called while Freeze or Thaw is
	// still running (they outlived the freeze deadline), or before a late
	// Freeze has frozen anything (it is then called again when that Freeze
	// returns).
	Aborter interface {
		Abort(ctx context.Context, e *Event) error
	}
	// BackupCompleter handles BackupComplete.
	BackupCompleter interface {
		BackupComplete(ctx context.Context, e *Event) error
	}
	// BackupShutdowner handles BackupShutdown.
	BackupShutdowner interface {
		BackupShutdown(ctx context.Context, e *Event) error
	}
	// PreRestorer handles PreRestore.
	PreRestorer interface {
		PreRestore(ctx context.Context, e *Event) error
	}
	// PostRestorer handles PostRestore.
	PostRestorer interface {
		PostRestore(ctx context.Context, e *Event) error
	}
)

// Base implements PrepareSnapshot, Freeze and Thaw as no-ops; embed it and
// override what the application needs.
type Base struct{}

// PrepareSnapshot does nothing.
func (Base) PrepareSnapshot(context.Context, *Event) error { return nil }

// Freeze does nothing.
func (Base) Freeze(context.Context, *Event) error { return nil }

// Thaw does nothing.
func (Base) Thaw(context.Context, *Event) error { return nil }

// The VSS_E_WRITERERROR_* codes a handler's error may carry.
const (
	CodeInconsistentSnapshot uint32 = 0x800423F0
	CodeOutOfResources       uint32 = 0x800423F1
	CodeTimeout              uint32 = 0x800423F2
	CodeRetryable            uint32 = 0x800423F3
	CodeNonRetryable         uint32 = 0x800423F4
)

// Failure is a handler's error with its VSS code.
type Failure struct {
	Code uint32
	Err  error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Retryable marks err as transient: the requester may retry the backup.
func Retryable(err error) error { return &Failure{Code: CodeRetryable, Err: err} }

// NonRetryable marks err as one that will happen again.
func NonRetryable(err error) error { return &Failure{Code: CodeNonRetryable, Err: err} }

// OutOfResources marks err as a lack of memory or other resources.
func OutOfResources(err error) error { return &Failure{Code: CodeOutOfResources, Err: err} }

// Inconsistent says the set lacks a volume the writer's data is on.
func Inconsistent(err error) error { return &Failure{Code: CodeInconsistentSnapshot, Err: err} }

// codeOf returns the VSS code of a handler's error.
func codeOf(err error) uint32 {
	var f *Failure
	if errors.As(err, &f) && f.Code != 0 {
		return f.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return CodeTimeout
	}
	return CodeNonRetryable
}

// ErrorCode returns the VSS code an error carries: a Failure's, or the
// one of the service's refusal (0 when there is none).
func ErrorCode(err error) uint32 {
	var f *Failure
	if errors.As(err, &f) {
		return f.Code
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if v, ok := d.(*vssv1.VssError); ok {
				return v.GetHresult()
			}
		}
	}
	return 0
}

// Options configure Run.
type Options struct {
	// Socket is vssd's socket; "" means $VSS_SOCKET or DefaultSocket.
	Socket string
	// OnError is what a set does when this writer fails: "fail" (the
	// default), "continue" or "crash-consistent".
	OnError string
	// Log receives the SDK's log; nil means slog.Default().
	Log *slog.Logger
	// Registered, when set, is called once the service has registered
	// the writer.
	Registered func()
}

// ErrRejected wraps the service's refusal of a registration.
var ErrRejected = errors.New("the service refused the writer")

// Run registers h with the service and handles its events until ctx is
// done or the connection ends. It returns nil when ctx is done, and the
// error that ended the connection otherwise; a frozen writer is thawed
// before Run returns.
func Run(ctx context.Context, h Handler, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	socket := o.Socket
	if socket == "" {
		socket = os.Getenv("VSS_SOCKET")
	}
	if socket == "" {
		socket = DefaultSocket
	}
	meta := h.Metadata()
	if meta == nil {
		return errors.New("writer: Metadata returned nil")
	}
	x, err := meta.XML()
	if err != nil {
		return fmt.Errorf("writer: metadata document: %w", err)
	}
	conn, err := grpc.NewClient("passthrough:///vssd",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return fmt.Errorf("writer: %w", err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := vssv1.NewWritersClient(conn).Connect(sctx)
	if err != nil {
		return fmt.Errorf("writer: connecting to %s: %w", socket, err)
	}
	if err := stream.Send(&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Register{Register: &vssv1.Register{
		MetadataXml: string(x), OnError: o.OnError,
	}}}); err != nil {
		if errors.Is(err, io.EOF) {
			// The service ended the stream (a refusal): its status comes
			// with the next receive.
			if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
				return fmt.Errorf("%w: %w", ErrRejected, rerr)
			}
		}
		return fmt.Errorf("writer: registering: %w", err)
	}
	r := &runner{h: h, o: o, stream: stream, log: o.Log.With("writer", meta.Name)}
	err = r.loop(sctx)
	r.thawIfFrozen("the connection to the service ended")
	r.wg.Wait()
	r.thawIfFrozen("the connection to the service ended")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// runner serves one connection.
type runner struct {
	h      Handler
	o      Options
	stream vssv1.Writers_ConnectClient
	log    *slog.Logger
	sendMu sync.Mutex
	// evMu serialises the events (Identify excepted).
	evMu sync.Mutex
	wg   sync.WaitGroup

	mu     sync.Mutex
	frozen *Event // the Freeze in force
	timer  *time.Timer
	// selfThawed: the writer thawed by itself since the last Freeze.
	selfThawed bool
}

func (r *runner) loop(ctx context.Context) error {
	registered := false
	for {
		m, err := r.stream.Recv()
		if err != nil {
			if !registered {
				return fmt.Errorf("%w: %w", ErrRejected, err)
			}
			return fmt.Errorf("writer: connection to the service: %w", err)
		}
		if m.GetRegistered() != nil {
			registered = true
			r.log.Info("writer registered", "instance", m.GetRegistered().GetInstanceId())
			if r.o.Registered != nil {
				r.o.Registered()
			}
			continue
		}
		ev := m.GetEvent()
		if ev == nil {
			continue
		}
		if ev.GetEvent() == "Identify" {
			r.identify(ev)
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.evMu.Lock()
			defer r.evMu.Unlock()
			r.handle(ctx, ev)
		}()
	}
}

func (r *runner) reply(res *vssv1.EventResult) {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if err := r.stream.Send(&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Result{Result: res}}); err != nil {
		r.log.Warn("answering the service", "err", err)
	}
}

func (r *runner) identify(ev *vssv1.WriterEvent) {
	res := &vssv1.EventResult{Seq: ev.GetSeq()}
	x, err := r.h.Metadata().XML()
	if err != nil {
		res.Hresult, res.Message = CodeNonRetryable, err.Error()
	} else {
		res.MetadataXml = string(x)
	}
	r.reply(res)
}

// decode turns the wire event into an Event.
func decode(ev *vssv1.WriterEvent) (*Event, error) {
	e := &Event{
		Name: ev.GetEvent(), SetID: ev.GetSetId(), Context: ev.GetContext(), BackupType: vssmeta.BackupType(ev.GetBackupType()),
		Volumes: ev.GetVolumes(), ShadowPaths: ev.GetShadowPaths(), RestoreTarget: ev.GetRestoreTarget(), Atomic: ev.GetAtomic(),
	}
	if ev.GetDeadline() != nil {
		e.Deadline = ev.GetDeadline().AsTime()
	}
	if x := ev.GetComponentsXml(); x != "" {
		b, err := vssmeta.ParseBackupComponents([]byte(x))
		if err != nil {
			return nil, err
		}
		if len(b.Writers) == 1 {
			e.Components = &b.Writers[0]
		}
	}
	return e, nil
}

// dispatch calls the handler of an event.
func (r *runner) dispatch(ctx context.Context, e *Event) error {
	switch e.Name {
	case "PrepareSnapshot":
		return r.h.PrepareSnapshot(ctx, e)
	case "Freeze":
		return r.h.Freeze(ctx, e)
	case "Thaw":
		return r.h.Thaw(ctx, e)
	case "PrepareBackup":
		if h, ok := r.h.(PrepareBackuper); ok {
			return h.PrepareBackup(ctx, e)
		}
	case "PostSnapshot":
		if h, ok := r.h.(PostSnapshotter); ok {
			return h.PostSnapshot(ctx, e)
		}
	case "Abort":
		if h, ok := r.h.(Aborter); ok {
			return h.Abort(ctx, e)
		}
	case "BackupComplete":
		if h, ok := r.h.(BackupCompleter); ok {
			return h.BackupComplete(ctx, e)
		}
	case "BackupShutdown":
		if h, ok := r.h.(BackupShutdowner); ok {
			return h.BackupShutdown(ctx, e)
		}
	case "PreRestore":
		if h, ok := r.h.(PreRestorer); ok {
			return h.PreRestore(ctx, e)
		}
	case "PostRestore":
		if h, ok := r.h.(PostRestorer); ok {
			return h.PostRestore(ctx, e)
		}
	default:
		return NonRetryable(fmt.Errorf("unknown event %q", e.Name))
	}
	return nil
}

func (r *runner) handle(ctx context.Context, ev *vssv1.WriterEvent) {
	res := &vssv1.EventResult{Seq: ev.GetSeq()}
	e, err := decode(ev)
	if err != nil {
		res.Hresult, res.Message = CodeNonRetryable, "bad event: "+err.Error()
		r.reply(res)
		return
	}
	hctx := ctx
	if !e.Deadline.IsZero() {
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(ctx, e.Deadline)
		defer cancel()
	}
	switch e.Name {
	case "Freeze":
		if !e.Deadline.IsZero() && !time.Now().Before(e.Deadline) {
			// It waited behind another event past its deadline: the
			// service has given up on it; freezing now would only stop
			// the application for nothing.
			res.Hresult, res.Message = CodeTimeout, "the freeze deadline had passed before the writer could freeze"
			r.reply(res)
			return
		}
		// The self-thaw is armed before the handler runs: a handler that
		// froze the application and then hangs does not keep it frozen
		// past the deadline.
		r.arm(e)
	case "Thaw":
		if r.selfThawedAlready() {
			// Already thawed by itself (deadline passed): the shadow may
			// not be consistent; say so.
			res.Hresult, res.Message = CodeTimeout, "the freeze deadline had passed: the writer thawed by itself"
			r.reply(res)
			return
		}
		// The self-thaw stays armed while Thaw runs: a Thaw that hangs
		// does not keep the application frozen either.
	case "Abort":
		if self := r.unfreeze(); self {
			r.reply(res) // nothing left to abort
			return
		}
	}
	err = r.dispatch(hctx, e)
	switch e.Name {
	case "Freeze":
		if late := r.freezeDone(e, err); late && err == nil {
			// The deadline passed while the handler ran: the self-thaw
			// may have come before the application froze; thaw it now.
			r.thaw(e, "the Freeze handler returned after the freeze deadline")
			err = &Failure{Code: CodeTimeout, Err: errors.New("the Freeze handler returned after the freeze deadline: the writer thawed by itself")}
		}
	case "Thaw":
		if self := r.unfreeze(); self && err == nil {
			err = &Failure{Code: CodeTimeout, Err: errors.New("the freeze deadline passed during Thaw: the writer thawed by itself")}
		}
	}
	if err != nil {
		res.Hresult, res.Message = codeOf(err), err.Error()
	}
	if e.Components != nil && (e.Name == "PrepareBackup" || e.Name == "PostSnapshot" || e.Name == "BackupComplete") {
		if x, xerr := (&vssmeta.BackupComponents{BackupType: e.BackupType, Writers: []vssmeta.WriterComponents{*e.Components}}).XML(); xerr == nil {
			res.ComponentsXml = string(x)
		}
	}
	r.reply(res)
}

// arm arms the self-thaw at the Freeze deadline; from here on the writer
// counts as frozen until Thaw or Abort returns, or it thaws by itself.
func (r *runner) arm(e *Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.frozen = e
	r.selfThawed = false
	if e.Deadline.IsZero() {
		return
	}
	r.timer = time.AfterFunc(time.Until(e.Deadline), func() {
		r.thawIfFrozen("the freeze deadline passed without a Thaw")
	})
}

// freezeDone records the end of the Freeze handler: a failed Freeze has
// undone itself (nothing stays armed). It reports whether the writer
// thawed by itself while the handler ran.
func (r *runner) freezeDone(e *Event, err error) (selfThawed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && r.frozen == e {
		if r.timer != nil {
			r.timer.Stop()
			r.timer = nil
		}
		r.frozen = nil
	}
	return r.selfThawed
}

// selfThawedAlready reports (and forgets) that the writer thawed by itself
// since its Freeze, when nothing is frozen any more.
func (r *runner) selfThawedAlready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen != nil || !r.selfThawed {
		return false
	}
	r.selfThawed = false
	return true
}

// unfreeze disarms the self-thaw; it reports whether the writer had
// already thawed by itself.
func (r *runner) unfreeze() (selfThawed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.frozen = nil
	self := r.selfThawed
	r.selfThawed = false
	return self
}

// thawIfFrozen thaws a frozen writer by itself (Abort if it has one, else
// Thaw). It may run while the writer's Freeze or Thaw handler still runs
// (when that handler is still running at the deadline).
func (r *runner) thawIfFrozen(why string) {
	r.mu.Lock()
	e := r.frozen
	r.frozen = nil
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if e != nil {
		r.selfThawed = true
	}
	r.mu.Unlock()
	if e == nil {
		return
	}
	r.thaw(e, why)
}

// thaw calls the handler's Abort (or Thaw, when it has no Abort) for the
// freeze e, as a self-thaw.
func (r *runner) thaw(e *Event, why string) {
	r.log.Warn("thawing by itself", "reason", why)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	te := *e
	var err error
	if h, ok := r.h.(Aborter); ok {
		te.Name = "Abort"
		err = h.Abort(ctx, &te)
	} else {
		te.Name = "Thaw"
		err = r.h.Thaw(ctx, &te)
	}
	if err != nil {
		r.log.Error("self-thaw failed", "err", err)
	}
}
