package writers_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// testWriter is an in-process writer that records its events and fails,
// hangs or ignores its context as told.
type testWriter struct {
	meta *vssmeta.WriterMetadata

	mu     sync.Mutex
	events []writers.Event
	fail   map[writers.Event]error
	// stuck makes an event block, ignoring its context, until released.
	stuck   map[writers.Event]chan struct{}
	closed  bool
	reqs    map[writers.Event]*writers.Request
	identN  int
	failIdf error
}

func newTestWriter(name string, dirs ...string) *testWriter {
	m := &vssmeta.WriterMetadata{WriterID: uuid.New(), InstanceID: uuid.New(), Name: name, Usage: vssmeta.UsageUserData,
		Source: vssmeta.SourceOther, Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace}}
	for _, d := range dirs {
		m.Components = append(m.Components, vssmeta.Component{Type: vssmeta.ComponentFileGroup, Name: "c" + d,
			Selectable: true, Files: []vssmeta.File{{Path: d, Filespec: "*", Recursive: true}}})
	}
	return &testWriter{meta: m, fail: map[writers.Event]error{}, stuck: map[writers.Event]chan struct{}{}, reqs: map[writers.Event]*writers.Request{}}
}

func (w *testWriter) Identify(ctx context.Context) (*vssmeta.WriterMetadata, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.identN++
	if w.failIdf != nil {
		return nil, w.failIdf
	}
	return w.meta, nil
}

func (w *testWriter) Handle(ctx context.Context, ev writers.Event, req *writers.Request) error {
	w.mu.Lock()
	w.events = append(w.events, ev)
	w.reqs[ev] = req
	err, stuck := w.fail[ev], w.stuck[ev]
	w.mu.Unlock()
	if stuck != nil {
		<-stuck
	}
	return err
}

func (w *testWriter) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	return nil
}

func (w *testWriter) got() []writers.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]writers.Event(nil), w.events...)
}

func add(t *testing.T, r *writers.Registry, w *testWriter, p writers.Policy) {
	t.Helper()
	remove, err := r.Add(context.Background(), writers.Registration{Writer: w, Kind: writers.KindBuiltIn, Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
}

func state(r *writers.Registry, name string) (vssmeta.WriterState, vsserr.Code) {
	for _, st := range r.List() {
		if st.Name == name {
			return st.State, st.LastError
		}
	}
	return -1, 0
}

// TestStates walks a writer through a whole backup and checks the state
// vssadmin would show after every event.
func TestStates(t *testing.T) {
	r := writers.New(writers.Options{})
	w := newTestWriter("W", "/srv/a")
	add(t, r, w, "")
	ps := r.Select([]string{"/srv"}, writers.Set{BackupType: vssmeta.BackupFull})
	if len(ps) != 1 {
		t.Fatalf("%d participants, want 1", len(ps))
	}
	p := ps[0]
	info := &coordinator.SetInfo{ID: uuid.New(), FreezeDeadline: time.Now().Add(time.Minute), ShadowPaths: map[string]string{"/srv": "/srv/.vss/x"}}
	steps := []struct {
		ev   writers.Event
		want vssmeta.WriterState
	}{
		{writers.PrepareBackup, vssmeta.StateStable},
		{writers.PrepareSnapshot, vssmeta.StateWaitingForFreeze},
		{writers.Freeze, vssmeta.StateWaitingForThaw},
		{writers.Thaw, vssmeta.StateWaitingForPostSnapshot},
		{writers.PostSnapshot, vssmeta.StateWaitingForBackupComplete},
		{writers.BackupComplete, vssmeta.StateStable},
		{writers.BackupShutdown, vssmeta.StateStable},
	}
	for _, s := range steps {
		if err := p.Send(context.Background(), s.ev, info); err != nil {
			t.Fatalf("%v: %v", s.ev, err)
		}
		if st, _ := state(r, "W"); st != s.want {
			t.Errorf("after %v: state %v, want %v", s.ev, st.Format(), s.want.Format())
		}
	}
	if d := w.reqs[writers.Freeze].Deadline; !d.Equal(info.FreezeDeadline) {
		t.Errorf("Freeze deadline %v, want the freeze window's end %v", d, info.FreezeDeadline)
	}
	if w.reqs[writers.PostSnapshot].ShadowPaths["/srv"] != "/srv/.vss/x" {
		t.Errorf("PostSnapshot got shadow paths %v", w.reqs[writers.PostSnapshot].ShadowPaths)
	}
	if w.reqs[writers.Freeze].ShadowPaths != nil {
		t.Error("Freeze got shadow paths")
	}
}

// TestFailures: every failing event leaves the matching failed state and
// last error; a writer that ignores its context is cut off at the limit.
func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		ev        writers.Event
		err       error
		stuck     bool
		wantState vssmeta.WriterState
		wantCode  vsserr.Code
	}{
		{writers.PrepareBackup, vsserr.New(vsserr.VSS_E_WRITERERROR_RETRYABLE, "x"), false, vssmeta.StateFailedAtPrepareBackup, vsserr.VSS_E_WRITERERROR_RETRYABLE},
		{writers.PrepareSnapshot, errors.New("plain"), false, vssmeta.StateFailedAtPrepareSnapshot, vsserr.VSS_E_UNEXPECTED_WRITER_ERROR},
		{writers.Freeze, nil, true, vssmeta.StateFailedAtFreeze, vsserr.VSS_E_WRITERERROR_TIMEOUT},
		{writers.Thaw, nil, true, vssmeta.StateFailedAtThaw, vsserr.VSS_E_WRITERERROR_TIMEOUT},
		{writers.PostSnapshot, nil, true, vssmeta.StateFailedAtPostSnapshot, vsserr.VSS_E_WRITER_NOT_RESPONDING},
		{writers.BackupComplete, vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "x"), false, vssmeta.StateFailedAtBackupComplete, vsserr.VSS_E_WRITERERROR_NONRETRYABLE},
		{writers.BackupShutdown, vsserr.New(vsserr.VSS_E_WRITERERROR_OUTOFRESOURCES, "x"), false, vssmeta.StateFailedAtBackupShutdown, vsserr.VSS_E_WRITERERROR_OUTOFRESOURCES},
		{writers.PreRestore, vsserr.New(vsserr.VSS_E_WRITERERROR_RETRYABLE, "in use"), false, vssmeta.StateFailedAtPreRestore, vsserr.VSS_E_WRITERERROR_RETRYABLE},
		{writers.PostRestore, vsserr.New(vsserr.VSS_E_WRITERERROR_RECOVERY_FAILED, "x"), false, vssmeta.StateFailedAtPostRestore, vsserr.VSS_E_WRITERERROR_RECOVERY_FAILED},
	} {
		t.Run(tc.ev.String(), func(t *testing.T) {
			timeouts := map[writers.Event]time.Duration{}
			for _, ev := range writers.Events {
				timeouts[ev] = 200 * time.Millisecond
			}
			r := writers.New(writers.Options{Timeouts: timeouts})
			w := newTestWriter("W", "/srv/a")
			w.fail[tc.ev] = tc.err
			if tc.stuck {
				release := make(chan struct{})
				w.stuck[tc.ev] = release
				t.Cleanup(func() { close(release) })
			}
			add(t, r, w, "")
			p := r.Select([]string{"/srv"}, writers.Set{})[0]
			start := time.Now()
			err := p.Send(context.Background(), tc.ev, &coordinator.SetInfo{ID: uuid.New()})
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("the event returned after %v; its limit is 200ms", took)
			}
			if vsserr.CodeOf(err) != tc.wantCode {
				t.Errorf("error %v, want %v", err, tc.wantCode)
			}
			st, code := state(r, "W")
			if st != tc.wantState || code != tc.wantCode {
				t.Errorf("state %s, last error %v; want %s, %v", st.Format(), code, tc.wantState.Format(), tc.wantCode)
			}
			if st.Text() != "Failed" {
				t.Errorf("state text %q, want Failed", st.Text())
			}
		})
	}
}

// TestPolicyContinue: a failing writer under the continue policy is
// dropped, gets Abort, and gets no further events; the set goes on.
func TestPolicyContinue(t *testing.T) {
	r := writers.New(writers.Options{})
	w := newTestWriter("W", "/srv/a")
	w.fail[writers.Freeze] = errors.New("cannot freeze")
	add(t, r, w, writers.PolicyContinue)
	p := r.Select([]string{"/srv"}, writers.Set{})[0]
	info := &coordinator.SetInfo{ID: uuid.New()}
	for _, ev := range []writers.Event{writers.PrepareSnapshot, writers.Freeze, writers.Thaw, writers.PostSnapshot} {
		if err := p.Send(context.Background(), ev, info); err != nil {
			t.Fatalf("%v: %v (the continue policy must not fail the set)", ev, err)
		}
	}
	if !p.Dropped() {
		t.Error("the failed writer is not marked dropped")
	}
	want := []writers.Event{writers.PrepareSnapshot, writers.Freeze, writers.Abort}
	if d := cmp.Diff(want, w.got()); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if st, code := state(r, "W"); st != vssmeta.StateFailedAtFreeze || code != vsserr.VSS_E_UNEXPECTED_WRITER_ERROR {
		t.Errorf("state %s, %v", st.Format(), code)
	}
}

// TestSelection: only writers with a component on the set's volumes take
// part, unless excluded; one whose files are only partly on them fails
// PrepareSnapshot with VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT.
func TestSelection(t *testing.T) {
	r := writers.New(writers.Options{})
	on := newTestWriter("On", "/vol/a/db")
	off := newTestWriter("Off", "/other/db")
	torn := newTestWriter("Torn", "/vol/a/data", "/other/wal")
	excl := newTestWriter("Excluded", "/vol/a/x")
	for _, w := range []*testWriter{on, off, torn, excl} {
		add(t, r, w, "")
	}
	ps := r.Select([]string{"/vol/a"}, writers.Set{Exclude: func(st writers.Status) bool { return st.Name == "Excluded" }})
	var names []string
	for _, p := range ps {
		names = append(names, p.Name())
	}
	if d := cmp.Diff([]string{"On", "Torn"}, names); d != "" {
		t.Errorf("participants (-want +got):\n%s", d)
	}
	err := ps[1].Send(context.Background(), writers.PrepareSnapshot, &coordinator.SetInfo{ID: uuid.New()})
	if vsserr.CodeOf(err) != vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT {
		t.Errorf("torn writer: %v, want VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT", err)
	}
	if len(torn.got()) != 0 {
		t.Errorf("the torn writer got %v; it must not be asked", torn.got())
	}
	if _, le := state(r, "Torn"); le != vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT {
		t.Errorf("torn writer's last error %v", le)
	}
}

// TestRegistration: duplicates are refused, a writer whose Identify fails
// is not registered, Gather marks a writer that stops answering, removal
// closes the writer.
func TestRegistration(t *testing.T) {
	r := writers.New(writers.Options{})
	w := newTestWriter("W", "/srv/a")
	remove, err := r.Add(context.Background(), writers.Registration{Writer: w})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(context.Background(), writers.Registration{Writer: w}); vsserr.CodeOf(err) != vsserr.VSS_E_WRITER_ALREADY_SUBSCRIBED {
		t.Errorf("duplicate: %v", err)
	}
	bad := newTestWriter("Bad", "relative")
	if _, err := r.Add(context.Background(), writers.Registration{Writer: bad}); vsserr.CodeOf(err) != vsserr.VSS_E_WRITER_INFRASTRUCTURE {
		t.Errorf("bad metadata: %v", err)
	}
	w.mu.Lock()
	w.failIdf = errors.New("gone")
	w.mu.Unlock()
	sts := r.Gather(context.Background())
	if len(sts) != 1 || sts[0].State != vssmeta.StateFailedAtIdentify {
		t.Errorf("after a failed Identify: %+v", sts)
	}
	remove()
	if !w.closed || len(r.List()) != 0 {
		t.Errorf("after removal: closed %v, %d listed", w.closed, len(r.List()))
	}
}

// TestConfigKnowsEvents: every event's limit can be configured by its
// name, as the service reads it.
func TestConfigKnowsEvents(t *testing.T) {
	for _, ev := range writers.Events {
		name := strings.ToLower(ev.String())
		c := config.Default()
		if err := config.Parse([]byte("[writers.timeouts]\n"+name+" = \"5s\"\n"), &c); err != nil {
			t.Errorf("event %s: %v", ev, err)
		}
		if got, err := writers.ParseEvent(name); err != nil || got != ev {
			t.Errorf("ParseEvent(%q) = %v, %v", name, got, err)
		}
	}
}
