package apiserver_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// sdkWriter is an SDK writer for tests: it records its events and does
// what its fields say in them.
type sdkWriter struct {
	meta *vssmeta.WriterMetadata

	mu     sync.Mutex
	events []string
	// fail makes an event fail with the error.
	fail map[string]error
	// hang makes an event block until the context is done (or forever,
	// when hangHard).
	hang     map[string]bool
	hangHard bool
	// recover writes a file into each shadow in PostSnapshot.
	recover bool
	seen    map[string]*writer.Event
	// onAbort runs at the first Abort.
	onAbort func()
	// crash makes the process exit in Freeze.
	crash bool
}

func newSDKWriter(name string, dirs ...string) *sdkWriter {
	m := &vssmeta.WriterMetadata{
		WriterID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("test-writer")), InstanceID: uuid.New(), Name: name,
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther, Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
	}
	for i, d := range dirs {
		m.Components = append(m.Components, vssmeta.Component{
			Type: vssmeta.ComponentFileGroup, Name: fmt.Sprintf("data%d", i), Selectable: true, NotifyOnBackupComplete: true,
			Files: []vssmeta.File{{Path: d, Filespec: "*", Recursive: true}},
		})
	}
	return &sdkWriter{meta: m, fail: map[string]error{}, hang: map[string]bool{}, seen: map[string]*writer.Event{}}
}

func (w *sdkWriter) Metadata() *vssmeta.WriterMetadata { return w.meta }

func (w *sdkWriter) on(ctx context.Context, e *writer.Event) error {
	w.mu.Lock()
	w.events = append(w.events, e.Name)
	w.seen[e.Name] = e
	err, hang := w.fail[e.Name], w.hang[e.Name]
	w.mu.Unlock()
	if hang {
		if w.hangHard {
			select {}
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (w *sdkWriter) PrepareSnapshot(ctx context.Context, e *writer.Event) error { return w.on(ctx, e) }
func (w *sdkWriter) Freeze(ctx context.Context, e *writer.Event) error {
	if w.crash {
		os.Exit(3)
	}
	return w.on(ctx, e)
}
func (w *sdkWriter) Thaw(ctx context.Context, e *writer.Event) error { return w.on(ctx, e) }
func (w *sdkWriter) Abort(ctx context.Context, e *writer.Event) error {
	w.mu.Lock()
	f := w.onAbort
	w.onAbort = nil
	w.mu.Unlock()
	if f != nil {
		f()
	}
	return w.on(ctx, e)
}
func (w *sdkWriter) PrepareBackup(ctx context.Context, e *writer.Event) error  { return w.on(ctx, e) }
func (w *sdkWriter) BackupShutdown(ctx context.Context, e *writer.Event) error { return w.on(ctx, e) }
func (w *sdkWriter) BackupComplete(ctx context.Context, e *writer.Event) error {
	if e.Components != nil && len(e.Components.Components) > 0 {
		e.Components.Components[0].BackupStamp = "stamp-" + e.SetID
	}
	return w.on(ctx, e)
}

func (w *sdkWriter) PostSnapshot(ctx context.Context, e *writer.Event) error {
	if w.recover {
		for vol, sh := range e.ShadowPaths {
			if err := os.WriteFile(filepath.Join(sh, "recovered-by-writer"), []byte(vol), 0o600); err != nil {
				return err
			}
		}
	}
	return w.on(ctx, e)
}

func (w *sdkWriter) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// runWriter registers w with the service of f until the test ends; the
// cleanup waits until the service has seen the writer go.
func runWriter(t *testing.T, f *fixture, w *sdkWriter, onError string) {
	t.Helper()
	socket := f.socket
	ctx, cancel := context.WithCancel(context.Background())
	registered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- writer.Run(ctx, w, writer.Options{Socket: socket, OnError: onError, Registered: func() { close(registered) }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the writer did not stop")
		}
		// The service learns of the closed stream on its own time; a test
		// that follows must not find this writer in its set.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ws, err := f.client.ListWriters(context.Background())
			gone := err == nil
			for _, l := range ws {
				if l.InstanceID == w.meta.InstanceID {
					gone = false
				}
			}
			if gone {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("the service still lists writer %s: %v", w.meta.Name, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	select {
	case <-registered:
	case err := <-done:
		t.Fatalf("writer %s: %v", w.meta.Name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("writer %s was not registered", w.meta.Name)
	}
}

// backupSession runs a requester session up to DoSnapshotSet.
type backupSession struct {
	t   *testing.T
	rq  vssv1.RequesterClient
	id  string
	ctx context.Context
}

func newBackup(t *testing.T, f *fixture) *backupSession {
	rq := vssv1.NewRequesterClient(f.client.Conn())
	ctx := context.Background()
	r, err := rq.InitializeForBackup(ctx, &vssv1.InitializeForBackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return &backupSession{t: t, rq: rq, id: r.GetSessionId(), ctx: ctx}
}

func (b *backupSession) req() *vssv1.SessionRequest { return &vssv1.SessionRequest{SessionId: b.id} }

// snapshot adds the volumes and makes the set; it returns DoSnapshotSet's
// reply and error.
func (b *backupSession) snapshot(volumes ...string) (*vssv1.DoSnapshotSetReply, error) {
	t := b.t
	t.Helper()
	if _, err := b.rq.StartSnapshotSet(b.ctx, b.req()); err != nil {
		t.Fatal(err)
	}
	for _, v := range volumes {
		if _, err := b.rq.AddToSnapshotSet(b.ctx, &vssv1.AddToSnapshotSetRequest{SessionId: b.id, Volume: v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.rq.PrepareForBackup(b.ctx, b.req()); err != nil {
		t.Fatal(err)
	}
	return b.rq.DoSnapshotSet(b.ctx, b.req())
}

func writerState(t *testing.T, f *fixture, name string) (int32, string) {
	t.Helper()
	ws, err := f.client.ListWriters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Name == name {
			return int32(w.State), w.LastError
		}
	}
	t.Fatalf("writer %s is not listed", name)
	return 0, ""
}

// TestSDKWriterBackup runs a whole backup with two SDK writers over the
// API: the one whose component lives on the set's volume gets every event
// in order, finishes the shadow in PostSnapshot (auto-recovery on a
// read-only btrfs snapshot) and stamps its component at BackupComplete;
// the other is not involved.
func TestSDKWriterBackup(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	other := testutil.NewFS(t, "ext4", 0)
	f := start(t)
	app := newSDKWriter("App Writer", filepath.Join(fs.Dir, "app"))
	app.recover = true
	elsewhere := newSDKWriter("Elsewhere Writer", other.Dir)
	runWriter(t, f, app, "")
	runWriter(t, f, elsewhere, "")

	b := newBackup(t, f)
	md, err := b.rq.GatherWriterMetadata(b.ctx, b.req())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range md.GetWriters() {
		names = append(names, w.GetStatus().GetName())
		if _, err := vssmeta.ParseWriterMetadata([]byte(w.GetMetadataXml())); err != nil {
			t.Errorf("writer %s: metadata document: %v", w.GetStatus().GetName(), err)
		}
	}
	slices.Sort(names)
	if d := cmp.Diff([]string{"App Writer", "Elsewhere Writer"}, names); d != "" {
		t.Errorf("gathered writers (-want +got):\n%s", d)
	}
	if _, err := b.rq.SetBackupState(b.ctx, &vssv1.SetBackupStateRequest{SessionId: b.id, SelectComponents: true, BackupType: int32(vssmeta.BackupFull)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.rq.AddComponent(b.ctx, &vssv1.ComponentRequest{SessionId: b.id, WriterInstanceId: app.meta.InstanceID.String(), Name: "data0"}); err != nil {
		t.Fatal(err)
	}
	_, err = b.rq.AddComponent(b.ctx, &vssv1.ComponentRequest{SessionId: b.id, WriterInstanceId: app.meta.InstanceID.String(), Name: "nosuch"})
	if vsserr.CodeOf(fromStatus(err)) != vsserr.VSS_E_OBJECT_NOT_FOUND {
		t.Errorf("AddComponent of an unknown component: %v, want VSS_E_OBJECT_NOT_FOUND", err)
	}
	res, err := b.snapshot(fs.Dir)
	if err != nil {
		t.Fatalf("DoSnapshotSet: %v", err)
	}
	shadows := res.GetResult().GetShadows()
	if len(shadows) != 1 {
		t.Fatalf("%d shadows, want 1", len(shadows))
	}
	sh := shadows[0]
	if st, _ := writerState(t, f, "App Writer"); st != 5 {
		t.Errorf("after DoSnapshotSet the writer is in state %d, want 5 (waiting for completion)", st)
	}
	// Auto-recovery: the writer's file is in the shadow, which is
	// read-only again and says so.
	if b, err := os.ReadFile(filepath.Join(sh.GetShadowVolume(), "recovered-by-writer")); err != nil || string(b) != fs.Dir {
		t.Errorf("the file the writer wrote into the shadow: %q, %v", b, err)
	}
	if ro, err := btrfsutil.IsReadOnly(sh.GetShadowVolume()); err != nil || !ro {
		t.Errorf("the shadow is read-only: %v, %v; want true", ro, err)
	}
	if vss.Attr(sh.GetAttributes())&vss.AttrAutoRecover == 0 {
		t.Errorf("the shadow's attributes %v lack Auto recovered", sh.GetAttributeNames())
	}
	if _, err := b.rq.BackupComplete(b.ctx, b.req()); err != nil {
		t.Fatal(err)
	}
	doc, err := b.rq.SaveAsXML(b.ctx, b.req())
	if err != nil {
		t.Fatal(err)
	}
	bcd, err := vssmeta.ParseBackupComponents([]byte(doc.GetBcdXml()))
	if err != nil {
		t.Fatal(err)
	}
	c := bcd.Writer(app.meta.InstanceID).Component("", "data0")
	if c == nil || c.BackupStamp != "stamp-"+res.GetResult().GetSet().GetId() {
		t.Errorf("the component's backup stamp in the document: %+v", c)
	}
	if len(bcd.Snapshots) != 1 || bcd.Snapshots[0].Path != sh.GetShadowVolume() {
		t.Errorf("the document's snapshots: %+v", bcd.Snapshots)
	}
	if st, le := writerState(t, f, "App Writer"); st != 1 || le != "No error" {
		t.Errorf("after BackupComplete: state %d, last error %q; want 1, No error", st, le)
	}
	if _, err := b.rq.EndSession(b.ctx, b.req()); err != nil {
		t.Fatal(err)
	}
	want := []string{"PrepareBackup", "PrepareSnapshot", "Freeze", "Thaw", "PostSnapshot", "BackupComplete", "BackupShutdown"}
	if d := cmp.Diff(want, app.got()); d != "" {
		t.Errorf("events of the involved writer (-want +got):\n%s", d)
	}
	if got := elsewhere.got(); len(got) != 0 {
		t.Errorf("the writer on another volume got %v", got)
	}
	fr := app.seen["Freeze"]
	if fr.Deadline.IsZero() || time.Until(fr.Deadline) > 61*time.Second {
		t.Errorf("Freeze deadline %v", fr.Deadline)
	}
	// The backup context is auto-release: ending the session deleted it.
	if sh, err := f.client.ListShadows(context.Background(), serviceAll()); err != nil || len(sh) != 0 {
		t.Errorf("after EndSession: %d shadows, %v", len(sh), err)
	}
}

// TestWriterFailures: a writer that fails or does not answer a phase fails
// the set with the right VSS error, gets Abort, shows the failure in its
// state, and nothing is left; under a continue policy the set goes on
// without it.
func TestWriterFailures(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	f := startWith(t, func(c *config.Config) { c.FreezeTimeout = config.Duration{Duration: 2 * time.Second} })
	for _, tc := range []struct {
		name      string
		event     string
		err       error
		hang      bool
		policy    string
		code      vsserr.Code
		state     int32
		lastError string
	}{
		{name: "retryable in Freeze", event: "Freeze", err: writer.Retryable(errors.New("busy")), code: vsserr.VSS_E_WRITERERROR_RETRYABLE, state: 9, lastError: "Retryable error"},
		{name: "non-retryable in PrepareSnapshot", event: "PrepareSnapshot", err: errors.New("broken"), code: vsserr.VSS_E_WRITERERROR_NONRETRYABLE, state: 8, lastError: "Non-retryable error"},
		{name: "out of resources in Thaw", event: "Thaw", err: writer.OutOfResources(errors.New("no memory")), code: vsserr.VSS_E_WRITERERROR_OUTOFRESOURCES, state: 10, lastError: "Out of resources"},
		{name: "hang in Freeze", event: "Freeze", hang: true, code: vsserr.VSS_E_WRITERERROR_TIMEOUT, state: 9, lastError: "Timed out"},
		{name: "continue policy", event: "Freeze", err: errors.New("broken"), policy: "continue", state: 9, lastError: "Non-retryable error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newSDKWriter("Failing Writer "+tc.name, fs.Dir)
			if tc.err != nil {
				w.fail[tc.event] = tc.err
			}
			w.hang[tc.event] = tc.hang
			runWriter(t, f, w, tc.policy)
			b := newBackup(t, f)
			start := time.Now()
			res, err := b.snapshot(fs.Dir)
			took := time.Since(start)
			if got := vsserr.CodeOf(fromStatus(err)); got != tc.code && !(tc.code == 0 && err == nil) {
				t.Fatalf("DoSnapshotSet: %v (%v), want %v", err, got, tc.code)
			}
			if tc.hang && took > 6*time.Second {
				t.Errorf("the set failed after %v; the freeze limit is 2 s", took)
			}
			st, le := writerState(t, f, w.meta.Name)
			if st != tc.state || le != tc.lastError {
				t.Errorf("writer state %d, last error %q; want %d, %q", st, le, tc.state, tc.lastError)
			}
			shadows, lerr := f.client.ListShadows(context.Background(), serviceAll())
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tc.code != 0 {
				if len(shadows) != 0 {
					t.Errorf("%d shadows left after a failed set", len(shadows))
				}
				if tc.event != "PrepareSnapshot" && !slices.Contains(w.got(), "Abort") {
					t.Errorf("the writer got %v, no Abort", w.got())
				}
			} else {
				if len(res.GetResult().GetShadows()) != 1 {
					t.Errorf("the set has %d shadows, want 1", len(res.GetResult().GetShadows()))
				}
			}
			if _, err := b.rq.EndSession(b.ctx, b.req()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestWriterRegistration: bad metadata and duplicate instances are
// refused with their VSS errors.
func TestWriterRegistration(t *testing.T) {
	f := start(t)
	w := newSDKWriter("Dup Writer", "/srv/x")
	runWriter(t, f, w, "")
	err := writer.Run(context.Background(), w, writer.Options{Socket: f.socket})
	if !errors.Is(err, writer.ErrRejected) || vsserr.Code(writer.ErrorCode(err)) != vsserr.VSS_E_WRITER_ALREADY_SUBSCRIBED {
		t.Errorf("second registration of one instance: %v", err)
	}
	bad := newSDKWriter("Bad Writer", "relative/path")
	err = writer.Run(context.Background(), bad, writer.Options{Socket: f.socket})
	if err == nil {
		t.Error("a writer with a relative file path was registered")
	} else if !strings.Contains(err.Error(), "relative/path") {
		t.Errorf("the refusal of a relative path does not name it: %v", err)
	}
	err = writer.Run(context.Background(), newSDKWriter("Policy Writer", "/srv/y"), writer.Options{Socket: f.socket, OnError: "sometimes"})
	if vsserr.Code(writer.ErrorCode(err)) != vsserr.E_INVALIDARG {
		t.Errorf("a writer with an unknown on-error policy: %v", err)
	}
	ws, _ := f.client.ListWriters(context.Background())
	if len(ws) != 1 {
		t.Errorf("%d writers listed, want 1", len(ws))
	}
}

// fromStatus turns a call's status back into the service's error.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	_, e := wire.FromStatus(err, nil)
	return e
}

func serviceAll() service.Selection { return service.Selection{All: true} }

// TestSDKWriterThawsAtDeadline: when the freeze window passes without a
// Thaw (the service is stuck after the writers froze), the SDK thaws the
// writer by itself at the deadline, and the set fails with
// VSS_E_WRITERERROR_TIMEOUT.
func TestSDKWriterThawsAtDeadline(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	f := startFault(t, func(c *config.Config) { c.FreezeTimeout = config.Duration{Duration: time.Second} },
		func(ctx context.Context, point string) error {
			if point == "freeze" {
				time.Sleep(2500 * time.Millisecond)
			}
			return nil
		})
	w := newSDKWriter("Slow Set Writer", fs.Dir)
	aborted := make(chan time.Time, 1)
	w.onAbort = func() { aborted <- time.Now() }
	runWriter(t, f, w, "")
	b := newBackup(t, f)
	start := time.Now()
	_, err := b.snapshot(fs.Dir)
	if vsserr.CodeOf(fromStatus(err)) != vsserr.VSS_E_WRITERERROR_TIMEOUT {
		t.Fatalf("DoSnapshotSet: %v, want VSS_E_WRITERERROR_TIMEOUT", err)
	}
	select {
	case at := <-aborted:
		deadline := w.seen["Freeze"].Deadline
		t.Logf("self-thaw %v after the freeze deadline (%v after the set began)", at.Sub(deadline), at.Sub(start))
		if at.Before(deadline) || at.Sub(deadline) > 500*time.Millisecond {
			t.Errorf("the writer thawed at %v, its deadline was %v", at, deadline)
		}
	default:
		t.Fatalf("the writer did not thaw by itself; events %v", w.got())
	}
	if sh, _ := f.client.ListShadows(context.Background(), serviceAll()); len(sh) != 0 {
		t.Errorf("%d shadows left", len(sh))
	}
}

// crashEnv makes the test binary a writer process that registers for the
// directory in the variable (socket=…,dir=…) and exits in Freeze.
const crashEnv = "VSS_TEST_CRASHING_WRITER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		socket, dir, _ := strings.Cut(spec, ",")
		w := newSDKWriter("Crashing Writer", dir)
		w.crash = true
		err := writer.Run(context.Background(), w, writer.Options{Socket: socket, Registered: func() { fmt.Println("registered") }})
		fmt.Println("writer ended:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestWriterCrashesInFreeze: a writer process that dies in Freeze fails
// the set with VSS_E_WRITER_NOT_RESPONDING at once (not at the freeze
// limit), nothing is left, and the writer is no longer registered.
func TestWriterCrashesInFreeze(t *testing.T) {
	testutil.RequireRoot(t)
	fs := testutil.NewFS(t, "btrfs", 0)
	f := start(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+f.socket+","+fs.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "registered" {
		t.Fatalf("the writer process said %q, %v", line, err)
	}
	b := newBackup(t, f)
	start := time.Now()
	_, err = b.snapshot(fs.Dir)
	took := time.Since(start)
	if code := vsserr.CodeOf(fromStatus(err)); code != vsserr.VSS_E_WRITER_NOT_RESPONDING {
		t.Fatalf("DoSnapshotSet: %v, want VSS_E_WRITER_NOT_RESPONDING", err)
	}
	if took > 10*time.Second {
		t.Errorf("the set failed after %v: it waited for a dead writer", took)
	}
	if sh, _ := f.client.ListShadows(context.Background(), serviceAll()); len(sh) != 0 {
		t.Errorf("%d shadows left", len(sh))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, err := f.client.ListWriters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead writer is still listed: %+v", ws)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
