package writer_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// fakeService is the writer side of vssd: it registers one writer and lets
// the test send it events.
type fakeService struct {
	vssv1.UnimplementedWritersServer
	streams chan grpc.BidiStreamingServer[vssv1.WriterMessage, vssv1.ServiceMessage]
	results chan *vssv1.EventResult
	done    chan struct{}
}

func (f *fakeService) Connect(s grpc.BidiStreamingServer[vssv1.WriterMessage, vssv1.ServiceMessage]) error {
	if _, err := s.Recv(); err != nil { // Register
		return err
	}
	if err := s.Send(&vssv1.ServiceMessage{Msg: &vssv1.ServiceMessage_Registered{Registered: &vssv1.Registered{}}}); err != nil {
		return err
	}
	f.streams <- s
	for {
		m, err := s.Recv()
		if err != nil {
			return nil
		}
		if r := m.GetResult(); r != nil {
			f.results <- r
		}
	}
}

// startFake serves a fakeService on a unix socket and returns it with the
// socket's path.
func startFake(t *testing.T) (*fakeService, string) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "vssd.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeService{streams: make(chan grpc.BidiStreamingServer[vssv1.WriterMessage, vssv1.ServiceMessage], 1), results: make(chan *vssv1.EventResult, 16)}
	srv := grpc.NewServer()
	vssv1.RegisterWritersServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f, socket
}

// stuck is an application whose Freeze or Thaw handler freezes or keeps it
// frozen, then hangs (until release is closed).
type stuck struct {
	writer.Base
	hangIn  string // "Freeze" or "Thaw"
	release chan struct{}

	mu      sync.Mutex
	frozen  bool
	aborted chan time.Time
}

func (s *stuck) Metadata() *vssmeta.WriterMetadata {
	class := uuid.MustParse("9d1b6c1e-0a7e-4f3b-8a55-2c6e1f0d4b21")
	return &vssmeta.WriterMetadata{
		WriterID: class, InstanceID: uuid.NewSHA1(class, []byte("x")), Name: "Stuck Writer",
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther,
		Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
	}
}

func (s *stuck) isFrozen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen
}

func (s *stuck) Freeze(ctx context.Context, e *writer.Event) error {
	s.mu.Lock()
	s.frozen = true
	s.mu.Unlock()
	if s.hangIn == "Freeze" {
		<-s.release // ignores its context, as a stuck handler does
	}
	return nil
}

func (s *stuck) Thaw(ctx context.Context, e *writer.Event) error {
	if s.hangIn == "Thaw" {
		<-s.release
	}
	s.mu.Lock()
	s.frozen = false
	s.mu.Unlock()
	return nil
}

func (s *stuck) Abort(ctx context.Context, e *writer.Event) error {
	s.mu.Lock()
	was := s.frozen
	s.frozen = false
	s.mu.Unlock()
	if was {
		select {
		case s.aborted <- time.Now():
		default:
		}
	}
	return nil
}

func event(name string, seq uint64, deadline time.Time) *vssv1.ServiceMessage {
	return &vssv1.ServiceMessage{Msg: &vssv1.ServiceMessage_Event{Event: &vssv1.WriterEvent{
		Event: name, Seq: seq, SetId: "set", Deadline: timestamppb.New(deadline),
	}}}
}

// TestSelfThawWhenAHandlerHangs: a Freeze handler that froze the
// application and hangs, or a Thaw handler that hangs, does not keep the
// application frozen past the freeze deadline: the SDK aborts it then,
// while the handler still runs, and says so when the handler returns.
func TestSelfThawWhenAHandlerHangs(t *testing.T) {
	for _, hangIn := range []string{"Freeze", "Thaw"} {
		t.Run(hangIn, func(t *testing.T) {
			f, socket := startFake(t)
			app := &stuck{hangIn: hangIn, release: make(chan struct{}), aborted: make(chan time.Time, 1)}
			var once sync.Once
			unstick := func() { once.Do(func() { close(app.release) }) }
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- writer.Run(ctx, app, writer.Options{Socket: socket}) }()
			defer func() {
				unstick() // Run waits for its handlers
				cancel()
				<-ran
			}()
			var stream grpc.BidiStreamingServer[vssv1.WriterMessage, vssv1.ServiceMessage]
			select {
			case stream = <-f.streams:
			case <-time.After(10 * time.Second):
				t.Fatal("the writer did not connect")
			}
			deadline := time.Now().Add(500 * time.Millisecond)
			if err := stream.Send(event("Freeze", 1, deadline)); err != nil {
				t.Fatal(err)
			}
			if hangIn == "Thaw" {
				if r := <-f.results; r.GetHresult() != 0 {
					t.Fatalf("Freeze: %v", r)
				}
				if err := stream.Send(event("Thaw", 2, deadline)); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case at := <-app.aborted:
				if late := at.Sub(deadline); late > 300*time.Millisecond || late < 0 {
					t.Errorf("thawed %v after the deadline", late)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the application is still frozen (frozen=%v) well after its deadline", app.isFrozen())
			}
			unstick()
			select {
			case r := <-f.results:
				if r.GetHresult() != writer.CodeTimeout {
					t.Errorf("%s answered %#x %q, want the timeout code", hangIn, r.GetHresult(), r.GetMessage())
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s never answered", hangIn)
			}
			if app.isFrozen() {
				t.Error("the application is frozen after the late handler returned")
			}
		})
	}
}

// TestFreezePastItsDeadline: a Freeze that waited behind another event
// until its deadline had passed is not handed to the application.
func TestFreezePastItsDeadline(t *testing.T) {
	f, socket := startFake(t)
	app := &stuck{release: make(chan struct{}), aborted: make(chan time.Time, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- writer.Run(ctx, app, writer.Options{Socket: socket}) }()
	defer func() {
		cancel()
		<-ran
	}()
	stream := <-f.streams
	if err := stream.Send(event("Freeze", 1, time.Now().Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	if r := <-f.results; r.GetHresult() != writer.CodeTimeout {
		t.Errorf("a late Freeze answered %#x %q", r.GetHresult(), r.GetMessage())
	}
	if app.isFrozen() {
		t.Error("a Freeze past its deadline froze the application")
	}
}
