package access_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// caller is who makes a call: a process running as uid:gid.
type caller struct {
	name     string
	uid, gid uint32
	rights   string // what accessConfig grants, for the table
}

var (
	root   = caller{"root", 0, 0, "all"}
	daemon = caller{"daemon", 1, 1, "list,create,writers"}
	bin    = caller{"bin", 2, 2, "delete"}
	nobody = caller{"nobody", 65534, 65534, "none"}
	// callers in the order the calls are made: the refused user first, on
	// state no other caller has touched; root last.
	callers = []caller{nobody, bin, daemon, root}
	// columns is the order of the table.
	columns = []caller{root, daemon, bin, nobody}
)

// accessConfig is the configuration of the test's vssd. daemon may list
// (named by uid), create (by name) and register writers (by its primary
// group); bin may delete (by name), which implies list; nobody is in no
// list.
const accessConfig = `log_level = "debug"

[access]
list = ["1"]
create = ["daemon"]
delete = ["bin"]
writers = ["@daemon"]

[writers]
hooks_dir = "-"
`

// granted is what accessConfig grants, written out here rather than
// computed by the ACL under test.
var granted = map[uint32][]apiserver.Right{
	daemon.uid: {apiserver.RightList, apiserver.RightCreate, apiserver.RightWriters},
	bin.uid:    {apiserver.RightDelete},
}

// may says whether c may call method, from the rights table and
// accessConfig: root may do everything, anybody may call a method that
// needs no right, the create and delete rights imply list, and nobody but
// root may call a method the table does not name.
func may(c caller, method string) bool {
	r := apiserver.RightOf(method)
	if c.uid == 0 || r == apiserver.RightNone {
		return true
	}
	g := granted[c.uid]
	if slices.Contains(g, r) {
		return true
	}
	return r == apiserver.RightList && (slices.Contains(g, apiserver.RightCreate) || slices.Contains(g, apiserver.RightDelete))
}

// Outcomes of a call.
const (
	outcomeOK     = "ok"
	outcomeDenied = "denied"
)

var outcomeNotFound = vsserr.VSS_E_OBJECT_NOT_FOUND.Name()

// ---------------------------------------------------------------------
// The helper process: the test binary run again as another uid.

// helperEnv carries a helperSpec to the test binary run as a caller.
const helperEnv = "VSS_ACCESS_HELPER"

// step is one call a helper makes. The request is protojson in which
// {{NAME}} is replaced by the variable NAME (JSON-escaped).
type step struct {
	Method  string `json:"method"`
	Request string `json:"request"`
	// Save names the variable that gets the reply's session_id.
	Save string `json:"save,omitempty"`
}

type helperSpec struct {
	Socket string            `json:"socket"`
	Steps  []step            `json:"steps"`
	Vars   map[string]string `json:"vars"`
}

// stepResult is the answer to one call.
type stepResult struct {
	Method  string `json:"method"`
	Code    string `json:"code"`    // the gRPC status code
	HResult uint32 `json:"hresult"` // the VSS code of the status (0: none)
	Message string `json:"message,omitempty"`
}

// outcome classifies an answer: ok, denied (PermissionDenied with
// E_ACCESSDENIED), or the name of the VSS code of the failure.
func (r stepResult) outcome() string {
	switch {
	case r.Code == codes.OK.String():
		return outcomeOK
	case r.Code == codes.PermissionDenied.String() && vsserr.Code(r.HResult) == vsserr.E_ACCESSDENIED:
		return outcomeDenied
	case r.HResult != 0:
		return vsserr.Code(r.HResult).Name()
	}
	return r.Code + " without a VSS code"
}

// TestHelperProcess is not a test: it is the caller process of
// TestAccess. It makes the calls of the spec in helperEnv on one
// connection, stops at the first failure, and prints the answers.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper spec:", err)
		os.Exit(2)
	}
	res, err := runSteps(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	b, _ := json.Marshal(res)
	fmt.Printf("\nRESULT %s\n", b)
	os.Exit(0)
}

func dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///vssd",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
}

func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		q, _ := json.Marshal(v)
		s = strings.ReplaceAll(s, "{{"+k+"}}", string(q[1:len(q)-1]))
	}
	return s
}

func runSteps(spec helperSpec) ([]stepResult, error) {
	conn, err := dial(spec.Socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vars := map[string]string{}
	for k, v := range spec.Vars {
		vars[k] = v
	}
	var out []stepResult
	for _, st := range spec.Steps {
		m, err := lookup(st.Method)
		if err != nil {
			return nil, err
		}
		req := m.in.New().Interface()
		if err := protojson.Unmarshal([]byte(expand(st.Request, vars)), req); err != nil {
			return nil, fmt.Errorf("%s request %s: %w", st.Method, expand(st.Request, vars), err)
		}
		var reply proto.Message
		if m.stream {
			err = connectWriter(ctx, conn, req.(*vssv1.WriterMessage))
		} else {
			reply = m.out.New().Interface()
			err = conn.Invoke(ctx, st.Method, req, reply)
		}
		r := resultOf(st.Method, err)
		out = append(out, r)
		if err != nil {
			break
		}
		if st.Save != "" {
			f := reply.ProtoReflect().Descriptor().Fields().ByName("session_id")
			if f == nil {
				return nil, fmt.Errorf("%s: the reply has no session_id to save", st.Method)
			}
			vars[st.Save] = reply.ProtoReflect().Get(f).String()
		}
	}
	return out, nil
}

func resultOf(method string, err error) stepResult {
	st := status.Convert(err)
	r := stepResult{Method: method, Code: st.Code().String(), Message: st.Message()}
	for _, d := range st.Details() {
		if ve, ok := d.(*vssv1.VssError); ok {
			r.HResult = ve.GetHresult()
			break
		}
	}
	return r
}

// connectWriter registers a writer (answering the Identify that comes
// before Registered) and ends its stream at once.
func connectWriter(ctx context.Context, conn *grpc.ClientConn, m *vssv1.WriterMessage) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := vssv1.NewWritersClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(m); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	for {
		reply, err := stream.Recv()
		if err != nil {
			return err
		}
		if reply.GetRegistered() != nil {
			return nil
		}
		ev := reply.GetEvent()
		res := &vssv1.EventResult{Seq: ev.GetSeq()}
		if ev.GetEvent() == "Identify" {
			res.MetadataXml = m.GetRegister().GetMetadataXml()
		}
		if err := stream.Send(&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Result{Result: res}}); err != nil {
			return err
		}
	}
}

// apiMethod is a method of the API with its message types.
type apiMethod struct {
	full    string
	stream  bool
	in, out protoreflect.MessageType
}

// services are the services of the API.
var services = []grpc.ServiceDesc{vssv1.Admin_ServiceDesc, vssv1.Requester_ServiceDesc, vssv1.Writers_ServiceDesc}

// apiMethods enumerates every method of every service from the generated
// descriptors.
func apiMethods() ([]apiMethod, error) {
	var out []apiMethod
	for _, sd := range services {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			m, err := lookup("/" + sd.ServiceName + "/" + n)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// lookup finds a method's message types in the protobuf registry.
func lookup(full string) (apiMethod, error) {
	svc, name, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return apiMethod{}, fmt.Errorf("bad method name %q", full)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return apiMethod{}, fmt.Errorf("%s: %w", full, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return apiMethod{}, fmt.Errorf("%s: no such method", full)
	}
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return apiMethod{}, err
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return apiMethod{}, err
	}
	return apiMethod{full: full, stream: md.IsStreamingClient() || md.IsStreamingServer(), in: in, out: out}, nil
}

// ---------------------------------------------------------------------
// The test's world: a vssd, two btrfs volumes, a writer, root's sessions.

type world struct {
	t          *testing.T
	helper     string // the test binary, where every user may run it
	socket     string
	state      string
	conn       *grpc.ClientConn // root's connection
	vol, vol2  string
	exposeRoot string
	vars       map[string]string // V, V2, W, BCD, RB (root's backup session), RR (root's restore session)
	n          int
}

// openDir returns a new temporary directory other users can enter.
func openDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cleanEnv is the environment without what would point vssd or the
// helper elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "VSS_SOCKET" || k == "VSS_STATE_DIR" || k == "VSS_CONFIG" || k == "NOTIFY_SOCKET" || k == helperEnv || strings.HasPrefix(k, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// requireUsers checks that the callers' accounts exist as accessConfig
// names them.
func requireUsers(t *testing.T) {
	t.Helper()
	for _, c := range []caller{daemon, bin, nobody} {
		u, err := user.LookupId(fmt.Sprint(c.uid))
		if err != nil {
			testutil.SkipOrFail(t, "needs the system user uid %d (%s): %v", c.uid, c.name, err)
		}
		if c != nobody && (u.Username != c.name || u.Gid != fmt.Sprint(c.gid)) {
			testutil.SkipOrFail(t, "uid %d is %s (gid %s), the test expects %s (gid %d)", c.uid, u.Username, u.Gid, c.name, c.gid)
		}
	}
	if g, err := user.LookupGroupId(fmt.Sprint(daemon.gid)); err != nil || g.Name != "daemon" {
		testutil.SkipOrFail(t, "needs the group daemon as gid %d", daemon.gid)
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "btrfs", "mkfs.btrfs", "losetup")
	requireUsers(t)
	gobin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "needs the go command to build vssd")
	}
	w := &world{t: t, vars: map[string]string{}}
	w.vol = testutil.NewFS(t, "btrfs", 0).Dir
	w.vol2 = testutil.NewFS(t, "btrfs", 0).Dir
	bins := openDir(t)
	out, err := exec.Command(gobin, "build", "-o", bins+"/", "github.com/linuxvss/vss/cmd/vssd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build vssd: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w.helper = filepath.Join(bins, "access.test")
	copyFile(t, self, w.helper, 0o755)
	// Like /tmp: anyone may make a directory there (and expose on it).
	w.exposeRoot = openDir(t)
	if err := os.Chmod(w.exposeRoot, 0o1777); err != nil {
		t.Fatal(err)
	}
	w.socket = filepath.Join(openDir(t), "vssd.sock")
	dir := t.TempDir()
	w.state = filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "vssd.toml")
	if err := os.WriteFile(cfg, []byte(accessConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	w.startDaemon(filepath.Join(bins, "vssd"), cfg, filepath.Join(dir, "vssd.log"))
	w.conn, err = dial(w.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.conn.Close() })

	w.vars["V"], w.vars["V2"] = w.vol, w.vol2
	testutil.WriteFile(t, w.vol, "data/table", []byte("rows\n"))
	w.vars["W"] = w.startWriter()
	w.rootSessions()
	return w
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// startDaemon starts vssd and waits until it answers; it is stopped at the
// end of the test, whatever happens.
func (w *world) startDaemon(vssd, cfg, logPath string) {
	t := w.t
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(vssd, "--config", cfg, "--socket", w.socket, "--state-dir", w.state, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("vssd did not stop within 20s of SIGTERM; killing it")
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("vssd log (last 16 KiB):\n%s", tail(b, 16<<10))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", w.socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("vssd exited at start:\n%s", b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("vssd does not answer on its socket")
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// dataWriter is root's writer of the volume's data directory, registered
// for the whole test: the backup and restore sessions select its
// component.
type dataWriter struct {
	writer.Base
	meta *vssmeta.WriterMetadata
}

func (d *dataWriter) Metadata() *vssmeta.WriterMetadata { return d.meta }

var writerClass = uuid.MustParse("6a0f3c1e-2b4d-4e5f-8a7b-9c0d1e2f3a4b")

func (w *world) startWriter() string {
	t := w.t
	inst := uuid.New()
	d := &dataWriter{meta: &vssmeta.WriterMetadata{
		WriterID: writerClass, InstanceID: inst, Name: "Access Test Writer",
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther, Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
		Components: []vssmeta.Component{{Type: vssmeta.ComponentFileGroup, Name: "data", Selectable: true, SelectableForRestore: true,
			NotifyOnBackupComplete: true, Files: []vssmeta.File{{Path: filepath.Join(w.vol, "data"), Filespec: "*", Recursive: true}}}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	registered := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- writer.Run(ctx, d, writer.Options{Socket: w.socket, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registered: func() { close(registered) }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("the writer did not stop")
		}
	})
	select {
	case <-registered:
	case err := <-done:
		t.Fatalf("the writer did not register: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the writer did not register within 30s")
	}
	return inst.String()
}

// call makes a call as root on root's connection.
func (w *world) call(method string, req, reply proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return w.conn.Invoke(ctx, method, req, reply)
}

func (w *world) must(method string, req, reply proto.Message) {
	w.t.Helper()
	if err := w.call(method, req, reply); err != nil {
		w.t.Fatalf("as root: %s: %v", method, err)
	}
}

// rootSessions makes a backup as root to get a Backup Components Document
// to restore from, and leaves two sessions open on root's connection: a
// backup (RB) and a restore (RR) that the other callers try to use.
func (w *world) rootSessions() {
	var r vssv1.SessionReply
	w.must(vssv1.Requester_InitializeForBackup_FullMethodName, &vssv1.InitializeForBackupRequest{}, &r)
	s := r.GetSessionId()
	w.must(vssv1.Requester_GatherWriterMetadata_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &vssv1.WritersReply{})
	w.must(vssv1.Requester_SetBackupState_FullMethodName, &vssv1.SetBackupStateRequest{SessionId: s, SelectComponents: true, BackupType: int32(vssmeta.BackupFull)}, &vssv1.SessionReply{})
	w.must(vssv1.Requester_AddComponent_FullMethodName, &vssv1.ComponentRequest{SessionId: s, WriterInstanceId: w.vars["W"], Name: "data"}, &vssv1.SessionReply{})
	w.must(vssv1.Requester_StartSnapshotSet_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &vssv1.StartSnapshotSetReply{})
	w.must(vssv1.Requester_AddToSnapshotSet_FullMethodName, &vssv1.AddToSnapshotSetRequest{SessionId: s, Volume: w.vol}, &vssv1.AddToSnapshotSetReply{})
	w.must(vssv1.Requester_PrepareForBackup_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &vssv1.WritersReply{})
	w.must(vssv1.Requester_DoSnapshotSet_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &vssv1.DoSnapshotSetReply{})
	w.must(vssv1.Requester_BackupComplete_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &vssv1.WritersReply{})
	var doc vssv1.SessionReply
	w.must(vssv1.Requester_SaveAsXML_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &doc)
	w.must(vssv1.Requester_EndSession_FullMethodName, &vssv1.SessionRequest{SessionId: s}, &vssv1.WritersReply{})
	w.vars["BCD"] = doc.GetBcdXml()

	w.must(vssv1.Requester_InitializeForBackup_FullMethodName, &vssv1.InitializeForBackupRequest{}, &r)
	w.vars["RB"] = r.GetSessionId()
	w.must(vssv1.Requester_GatherWriterMetadata_FullMethodName, &vssv1.SessionRequest{SessionId: w.vars["RB"]}, &vssv1.WritersReply{})
	w.must(vssv1.Requester_InitializeForRestore_FullMethodName, &vssv1.InitializeForRestoreRequest{BcdXml: w.vars["BCD"]}, &r)
	w.vars["RR"] = r.GetSessionId()
}

// ---------------------------------------------------------------------
// Fixtures: what root makes before a call, fresh for each caller.

// shadow makes a persistent shadow copy of the volume, then changes the
// volume (so that a revert to the shadow would show).
func (w *world) shadow() (id, set string) {
	var r vssv1.CreateShadowSetResponse
	w.must(vssv1.Admin_CreateShadowSet_FullMethodName, &vssv1.CreateShadowSetRequest{Volumes: []string{w.vol}, Context: uint32(vss.CtxClientAccessible)}, &r)
	if len(r.GetShadows()) != 1 {
		w.t.Fatalf("CreateShadowSet made %d shadows", len(r.GetShadows()))
	}
	w.n++
	testutil.WriteFile(w.t, w.vol, fmt.Sprintf("after-shadow-%d", w.n), []byte("changed after the shadow\n"))
	return r.GetShadows()[0].GetId(), r.GetShadows()[0].GetSetId()
}

// storage makes the second volume's shadow storage association exist with
// a 100 MiB limit, or not exist.
func (w *world) storage(exists bool) {
	err := w.call(vssv1.Admin_DeleteShadowStorage_FullMethodName, &vssv1.DeleteShadowStorageRequest{For: w.vol2}, &vssv1.DeleteShadowStorageResponse{})
	if err != nil && status.Code(err) != codes.NotFound {
		w.t.Fatalf("as root: DeleteShadowStorage: %v", err)
	}
	if exists {
		w.must(vssv1.Admin_AddShadowStorage_FullMethodName, &vssv1.AddShadowStorageRequest{For: w.vol2, On: w.vol2, Max: &vssv1.MaxSize{Bytes: 100 << 20}}, &vssv1.AddShadowStorageResponse{})
	}
}

// exposePath returns a new path under the expose root, unmounted at the
// end of the test (before the volumes).
func (w *world) exposePath() string {
	w.n++
	p := filepath.Join(w.exposeRoot, fmt.Sprintf("x%d", w.n))
	w.t.Cleanup(func() {
		for unix.Unmount(p, unix.MNT_DETACH) == nil {
		}
	})
	return p
}

// ---------------------------------------------------------------------
// What must not change: the state as root sees it.

type state struct {
	Shadows, Storage, Reverts, Writers string
	// RootBackup and RootRestore are root's sessions' documents (or the
	// error that says they are gone).
	RootBackup, RootRestore string
	Subvolumes              []string
	Mounts                  []string
	Files                   []string
	Audit                   []string
}

func (w *world) text(method string, req, reply proto.Message, edit func(proto.Message)) string {
	if err := w.call(method, req, reply); err != nil {
		return "error: " + err.Error()
	}
	if edit != nil {
		edit(reply)
	}
	return prototext.Format(reply)
}

func (w *world) snapshot() state {
	t := w.t
	var s state
	s.Shadows = w.text(vssv1.Admin_ListShadows_FullMethodName, &vssv1.ListShadowsRequest{}, &vssv1.ListShadowsResponse{}, nil)
	// The space used is measured from the filesystem: it may move.
	s.Storage = w.text(vssv1.Admin_ListShadowStorage_FullMethodName, &vssv1.ListShadowStorageRequest{}, &vssv1.ListShadowStorageResponse{}, func(m proto.Message) {
		for _, st := range m.(*vssv1.ListShadowStorageResponse).GetStorage() {
			st.UsedBytes, st.OnVolumeBytes = 0, 0
		}
	})
	s.Reverts = w.text(vssv1.Admin_QueryReverts_FullMethodName, &vssv1.QueryRevertsRequest{}, &vssv1.QueryRevertsResponse{}, nil)
	s.Writers = w.text(vssv1.Admin_ListWriters_FullMethodName, &vssv1.ListWritersRequest{}, &vssv1.ListWritersResponse{}, nil)
	s.RootBackup = w.text(vssv1.Requester_SaveAsXML_FullMethodName, &vssv1.SessionRequest{SessionId: w.vars["RB"]}, &vssv1.SessionReply{}, nil)
	s.RootRestore = w.text(vssv1.Requester_SaveAsXML_FullMethodName, &vssv1.SessionRequest{SessionId: w.vars["RR"]}, &vssv1.SessionReply{}, nil)
	for _, v := range []string{w.vol, w.vol2} {
		out, err := exec.Command("btrfs", "subvolume", "list", v).CombinedOutput()
		if err != nil {
			t.Fatalf("btrfs subvolume list %s: %v\n%s", v, err, out)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// "ID 257 gen 12 top level 5 path .vss": the generation moves.
			f := strings.Fields(l)
			if len(f) >= 9 {
				s.Subvolumes = append(s.Subvolumes, v+": "+f[1]+" "+strings.Join(f[8:], " "))
			}
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (strings.HasPrefix(f[4], w.exposeRoot) || strings.HasPrefix(f[4], w.vol) || strings.HasPrefix(f[4], w.vol2)) {
			s.Mounts = append(s.Mounts, f[3]+" "+f[4])
		}
	}
	slices.Sort(s.Mounts)
	for _, d := range []string{w.vol, w.vol2, w.exposeRoot} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			s.Files = append(s.Files, filepath.Join(d, e.Name()))
		}
	}
	b, err := os.ReadFile(filepath.Join(w.state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		s.Audit = append(s.Audit, sc.Text())
	}
	return s
}

// settle returns the state once it stops changing (what an earlier
// caller's session left to do when its connection closed is done).
func (w *world) settle() state {
	deadline := time.Now().Add(30 * time.Second)
	prev := w.snapshot()
	for {
		time.Sleep(150 * time.Millisecond)
		cur := w.snapshot()
		if reflect.DeepEqual(prev, cur) {
			return cur
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the state does not settle:\n%s", cmp.Diff(prev, cur))
		}
		prev = cur
	}
}

// auditRecord is the part of an audit line the test checks.
type auditRecord struct {
	Uid    uint32         `json:"uid"`
	Op     string         `json:"op"`
	Args   map[string]any `json:"args"`
	Result string         `json:"result"`
	Code   string         `json:"code"`
}

// ---------------------------------------------------------------------
// The table.

// row is one call of the table.
type row struct {
	label  string
	method string
	// setup are the calls a caller makes first on its own connection
	// (its own requester session), when it may make them all.
	setup  []step
	target step
	// fixture makes, as root, what the call works on; its variables are
	// added to the world's.
	fixture func(w *world) map[string]string
	// session is the variable of root's session (RB, RR) a caller's
	// session call goes to when it may not begin its own.
	session string
	// cross: the call always goes to root's session, from the caller's
	// own connection.
	cross bool
	// after runs after a call that succeeded.
	after func(w *world, vars map[string]string)
	// ownerOnly: the call works on something root made, which only root
	// (or who made it) may change, whatever the caller's rights.
	ownerOnly bool
}

// mayAll says whether c may make every call of steps.
func mayAll(c caller, steps []step) bool {
	for _, s := range steps {
		if !may(c, s.Method) {
			return false
		}
	}
	return true
}

// ownSession says whether c's call runs in a session of its own.
func (r row) ownSession(c caller) bool {
	return !r.cross && mayAll(c, r.setup)
}

// want is the outcome the rights table and accessConfig give.
func (r row) want(c caller) string {
	switch {
	case !may(c, r.method):
		return outcomeDenied
	case r.ownerOnly && c.uid != 0:
		return outcomeDenied
	case r.session != "" && !r.ownSession(c):
		// Root's session lives on root's connection.
		return outcomeNotFound
	}
	return outcomeOK
}

func sessionStep(method, req string) step { return step{Method: method, Request: req} }

// Requester calls of a backup and a restore, in their order.
var (
	stIB  = step{Method: vssv1.Requester_InitializeForBackup_FullMethodName, Request: `{}`, Save: "S"}
	stGM  = sessionStep(vssv1.Requester_GatherWriterMetadata_FullMethodName, `{"session_id":"{{S}}"}`)
	stSBS = sessionStep(vssv1.Requester_SetBackupState_FullMethodName, `{"session_id":"{{S}}","select_components":true,"backup_type":1}`)
	stAC  = sessionStep(vssv1.Requester_AddComponent_FullMethodName, `{"session_id":"{{S}}","writer_instance_id":"{{W}}","logical_path":"","name":"data"}`)
	stSSS = sessionStep(vssv1.Requester_StartSnapshotSet_FullMethodName, `{"session_id":"{{S}}"}`)
	stATS = sessionStep(vssv1.Requester_AddToSnapshotSet_FullMethodName, `{"session_id":"{{S}}","volume":"{{V}}"}`)
	stPFB = sessionStep(vssv1.Requester_PrepareForBackup_FullMethodName, `{"session_id":"{{S}}"}`)
	stDSS = sessionStep(vssv1.Requester_DoSnapshotSet_FullMethodName, `{"session_id":"{{S}}"}`)
	stIR  = step{Method: vssv1.Requester_InitializeForRestore_FullMethodName, Request: `{"bcd_xml":"{{BCD}}"}`, Save: "S"}
	stSFR = sessionStep(vssv1.Requester_SelectForRestore_FullMethodName, `{"session_id":"{{S}}","writer_instance_id":"{{W}}","logical_path":"","name":"data"}`)
	stPRE = sessionStep(vssv1.Requester_PreRestore_FullMethodName, `{"session_id":"{{S}}"}`)

	prepared = []step{stIB, stGM, stSBS, stAC, stSSS, stATS, stPFB}
	made     = append(slices.Clone(prepared), stDSS)
)

func rows() []row {
	admin := func(method, req string, fixture func(w *world) map[string]string) row {
		return row{method: method, target: step{Method: method, Request: req}, fixture: fixture}
	}
	freshShadow := func(w *world) map[string]string {
		id, set := w.shadow()
		return map[string]string{"ID": id, "SET": set}
	}
	backup := func(setup []step, target step) row {
		return row{method: target.Method, setup: setup, target: target, session: "RB"}
	}
	restore := func(setup []step, target step) row {
		return row{method: target.Method, setup: setup, target: target, session: "RR"}
	}
	onRoots := func(session string, target step) row {
		return row{label: "(root's session)", method: target.Method, target: target, session: session, cross: true}
	}
	ctxRollback := fmt.Sprint(uint32(vss.CtxAppRollback))
	return []row{
		admin(vssv1.Admin_Info_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_CreateShadowSet_FullMethodName, fmt.Sprintf(`{"volumes":["{{V}}"],"context":%d}`, uint32(vss.CtxClientAccessibleWriters)), nil),
		admin(vssv1.Admin_ListShadows_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_Select_FullMethodName, `{"selection":{"for":"{{V}}","all":true}}`, nil),
		admin(vssv1.Admin_DeleteShadows_FullMethodName, `{"ids":["{{ID}}"]}`, freshShadow),
		admin(vssv1.Admin_RevertShadow_FullMethodName, `{"id":"{{ID}}","force":true}`, freshShadow),
		admin(vssv1.Admin_QueryReverts_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_ListVolumes_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_ListProviders_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_ListWriters_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_AddShadowStorage_FullMethodName, `{"for":"{{V2}}","on":"{{V2}}","max":{"bytes":"104857600"}}`,
			func(w *world) map[string]string { w.storage(false); return nil }),
		admin(vssv1.Admin_ResizeShadowStorage_FullMethodName, `{"for":"{{V2}}","on":"{{V2}}","max":{"bytes":"209715200"}}`,
			func(w *world) map[string]string { w.storage(true); return nil }),
		admin(vssv1.Admin_ListShadowStorage_FullMethodName, `{}`, nil),
		admin(vssv1.Admin_StorageShadows_FullMethodName, `{"for":"{{V}}"}`, nil),
		admin(vssv1.Admin_DeleteShadowStorage_FullMethodName, `{"for":"{{V2}}"}`,
			func(w *world) map[string]string { w.storage(true); return nil }),
		admin(vssv1.Admin_Expose_FullMethodName, `{"shadow_id":"{{ID}}","path":"{{P}}"}`, func(w *world) map[string]string {
			id, _ := w.shadow()
			return map[string]string{"ID": id, "P": w.exposePath()}
		}),
		{label: "(on root's directory)", method: vssv1.Admin_Expose_FullMethodName, ownerOnly: true,
			target: step{Method: vssv1.Admin_Expose_FullMethodName, Request: `{"shadow_id":"{{ID}}","path":"{{P}}"}`},
			fixture: func(w *world) map[string]string {
				id, _ := w.shadow()
				p := w.exposePath()
				if err := os.Mkdir(p, 0o755); err != nil {
					w.t.Fatal(err)
				}
				return map[string]string{"ID": id, "P": p}
			}},
		{label: "(root's exposure)", method: vssv1.Admin_Unexpose_FullMethodName, ownerOnly: true,
			target: step{Method: vssv1.Admin_Unexpose_FullMethodName, Request: `{"path":"{{P}}"}`},
			fixture: func(w *world) map[string]string {
				id, _ := w.shadow()
				p := w.exposePath()
				w.must(vssv1.Admin_Expose_FullMethodName, &vssv1.ExposeRequest{ShadowId: id, Path: p}, &vssv1.ExposeResponse{})
				return map[string]string{"P": p}
			}},
		{label: "(own exposure)", method: vssv1.Admin_Unexpose_FullMethodName,
			setup:  []step{{Method: vssv1.Admin_Expose_FullMethodName, Request: `{"shadow_id":"{{ID}}","path":"{{P}}"}`}},
			target: step{Method: vssv1.Admin_Unexpose_FullMethodName, Request: `{"path":"{{P}}"}`},
			fixture: func(w *world) map[string]string {
				id, _ := w.shadow()
				return map[string]string{"ID": id, "P": w.exposePath()}
			}},
		admin(vssv1.Admin_BreakSet_FullMethodName, `{"set_id":"{{SET}}","writable":false}`, freshShadow),

		{method: vssv1.Requester_InitializeForBackup_FullMethodName, target: stIB},
		{method: vssv1.Requester_InitializeForRestore_FullMethodName, target: stIR},
		backup([]step{stIB}, stGM),
		backup([]step{stIB}, sessionStep(vssv1.Requester_SetContext_FullMethodName, `{"session_id":"{{S}}","context":`+ctxRollback+`}`)),
		backup([]step{stIB}, stSBS),
		backup([]step{stIB}, sessionStep(vssv1.Requester_ExcludeWriters_FullMethodName, `{"session_id":"{{S}}","writers":["no such writer"]}`)),
		backup([]step{stIB, stGM}, stAC),
		backup([]step{stIB}, stSSS),
		backup([]step{stIB, stSSS}, stATS),
		backup(prepared[:6], stPFB),
		backup(prepared, stDSS),
		backup([]step{stIB, stGM}, sessionStep(vssv1.Requester_GatherWriterStatus_FullMethodName, `{"session_id":"{{S}}"}`)),
		backup(made, sessionStep(vssv1.Requester_SetBackupSucceeded_FullMethodName, `{"session_id":"{{S}}","writer_instance_id":"{{W}}","logical_path":"","name":"data","succeeded":true}`)),
		backup(made, sessionStep(vssv1.Requester_BackupComplete_FullMethodName, `{"session_id":"{{S}}"}`)),
		backup(prepared, sessionStep(vssv1.Requester_AbortBackup_FullMethodName, `{"session_id":"{{S}}"}`)),
		backup([]step{stIB}, sessionStep(vssv1.Requester_SaveAsXML_FullMethodName, `{"session_id":"{{S}}"}`)),
		restore([]step{stIR}, stSFR),
		restore([]step{stIR, stSFR}, stPRE),
		restore([]step{stIR, stSFR, stPRE}, sessionStep(vssv1.Requester_PostRestore_FullMethodName, `{"session_id":"{{S}}"}`)),
		backup([]step{stIB}, sessionStep(vssv1.Requester_EndSession_FullMethodName, `{"session_id":"{{S}}"}`)),

		// Root's sessions from another connection: nobody else's, not
		// even root's own other processes'.
		onRoots("RB", sessionStep(vssv1.Requester_SaveAsXML_FullMethodName, `{"session_id":"{{S}}"}`)),
		onRoots("RB", sessionStep(vssv1.Requester_SetContext_FullMethodName, `{"session_id":"{{S}}","context":`+ctxRollback+`}`)),
		onRoots("RB", sessionStep(vssv1.Requester_AddComponent_FullMethodName, `{"session_id":"{{S}}","writer_instance_id":"{{W}}","logical_path":"","name":"data"}`)),
		onRoots("RB", sessionStep(vssv1.Requester_AbortBackup_FullMethodName, `{"session_id":"{{S}}"}`)),
		onRoots("RB", sessionStep(vssv1.Requester_EndSession_FullMethodName, `{"session_id":"{{S}}"}`)),
		onRoots("RR", stSFR),
		onRoots("RR", stPRE),

		{method: vssv1.Writers_Connect_FullMethodName, target: step{Method: vssv1.Writers_Connect_FullMethodName, Request: `{"register":{"metadata_xml":"{{WMD}}"}}`},
			fixture: func(w *world) map[string]string {
				w.n++
				m := &vssmeta.WriterMetadata{WriterID: uuid.MustParse("7b1e4d2f-3c5a-4f6b-9d8e-0a1b2c3d4e5f"), InstanceID: uuid.New(),
					Name: fmt.Sprintf("access-writer-%d", w.n), Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther}
				x, err := m.XML()
				if err != nil {
					w.t.Fatal(err)
				}
				return map[string]string{"WMD": string(x), "WI": m.InstanceID.String()}
			},
			after: func(w *world, vars map[string]string) { w.writerGone(vars["WI"]) }},
	}
}

// writerGone waits until the writer instance's stream has ended in the
// service.
func (w *world) writerGone(instance string) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var r vssv1.ListWritersResponse
		w.must(vssv1.Admin_ListWriters_FullMethodName, &vssv1.ListWritersRequest{}, &r)
		if !slices.ContainsFunc(r.GetWriters(), func(s *vssv1.WriterStatus) bool { return s.GetInstanceId() == instance }) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("writer %s is still registered 20s after its stream ended", instance)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runHelper makes steps as c, from the test binary run as c's uid.
func (w *world) runHelper(c caller, steps []step, vars map[string]string) ([]stepResult, error) {
	spec, err := json.Marshal(helperSpec{Socket: w.socket, Steps: steps, Vars: vars})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.helper, "-test.run=^TestHelperProcess$", "-test.timeout=3m")
	cmd.Env = append(cleanEnv(), helperEnv+"="+string(spec))
	cmd.Dir = "/"
	if c.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid}}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helper as %s: %v\nstdout:\n%s\nstderr:\n%s", c.name, err, stdout.String(), stderr.String())
	}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if j, ok := strings.CutPrefix(l, "RESULT "); ok {
			var res []stepResult
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				return nil, err
			}
			return res, nil
		}
	}
	return nil, fmt.Errorf("helper as %s printed no result\nstdout:\n%s\nstderr:\n%s", c.name, stdout.String(), stderr.String())
}

// cell is one call's result in the table.
type cell struct {
	got, want string
}

func (c cell) String() string {
	if c.got == c.want {
		return c.got
	}
	return fmt.Sprintf("%s (want %s) ✗", c.got, c.want)
}

// checkUnchanged compares the state around a refused call: only the
// audit log may have grown, by the "denied" record of a refused change.
func (w *world) checkUnchanged(t *testing.T, c caller, r row, outcome string, before, after state) {
	t.Helper()
	b, a := before, after
	b.Audit, a.Audit = nil, nil
	if d := cmp.Diff(b, a); d != "" {
		t.Errorf("%s %s as %s (%s) changed the state (-before +after):\n%s", r.method, r.label, c.name, outcome, d)
	}
	if len(after.Audit) < len(before.Audit) || !slices.Equal(before.Audit, after.Audit[:len(before.Audit)]) {
		t.Errorf("%s %s as %s: the audit log was rewritten", r.method, r.label, c.name)
		return
	}
	added := after.Audit[len(before.Audit):]
	wantDenied := outcome == outcomeDenied && apiserver.RightOf(r.method) != apiserver.RightList
	if !wantDenied {
		if len(added) != 0 {
			t.Errorf("%s %s as %s (%s): the audit log got %d records, want none:\n%s", r.method, r.label, c.name, outcome, len(added), strings.Join(added, "\n"))
		}
		return
	}
	if len(added) != 1 {
		t.Errorf("%s %s as %s: the audit log got %d records, want one \"denied\":\n%s", r.method, r.label, c.name, len(added), strings.Join(added, "\n"))
		return
	}
	var rec auditRecord
	if err := json.Unmarshal([]byte(added[0]), &rec); err != nil {
		t.Errorf("audit record %s: %v", added[0], err)
		return
	}
	if r.ownerOnly && may(c, r.method) {
		// Allowed the method, refused by the service on the object.
		op := strings.ToLower(path.Base(r.method))
		if rec.Op != op || rec.Uid != c.uid || rec.Result != "failure" || !strings.HasPrefix(rec.Code, vsserr.E_ACCESSDENIED.Name()) {
			t.Errorf("%s as %s: the audit record is %s; want op %s, uid %d, a failure with %s", r.method, c.name, added[0], op, c.uid, vsserr.E_ACCESSDENIED)
		}
		return
	}
	if rec.Op != "denied" || rec.Uid != c.uid || rec.Args["method"] != r.method || rec.Result != "failure" || !strings.HasPrefix(rec.Code, vsserr.E_ACCESSDENIED.Name()) {
		t.Errorf("%s as %s: the audit record is %s; want op denied, uid %d, method %s, a failure with %s", r.method, c.name, added[0], c.uid, r.method, vsserr.E_ACCESSDENIED)
	}
}

// TestAccess calls every method of the API as root, as users allowed some
// rights and as a user allowed none, each from a process of its own uid,
// and checks every answer against the rights table and the
// configuration, and that refused calls change nothing.
func TestAccess(t *testing.T) {
	start := time.Now()
	w := newWorld(t)
	all := rows()

	// Every method of every service has a row (a new method fails here).
	methods, err := apiMethods()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range methods {
		known[m.full] = true
		if !slices.ContainsFunc(all, func(r row) bool { return r.method == m.full && !r.cross }) {
			t.Errorf("%s has no row in the access table", m.full)
		}
	}
	for _, r := range all {
		if !known[r.method] {
			t.Errorf("row for %s, which is not a method of the API", r.method)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	results := make([]map[string]cell, len(all))
	checked := 0
	for i, r := range all {
		results[i] = map[string]cell{}
		for _, c := range callers {
			vars := map[string]string{}
			for k, v := range w.vars {
				vars[k] = v
			}
			if r.fixture != nil {
				for k, v := range r.fixture(w) {
					vars[k] = v
				}
			}
			want := r.want(c)
			steps := []step{r.target}
			if r.ownSession(c) {
				steps = append(slices.Clone(r.setup), r.target)
			} else if r.session != "" {
				vars["S"] = vars[r.session]
			}
			refused := want != outcomeOK
			var before state
			if refused {
				before = w.settle()
			}
			res, err := w.runHelper(c, steps, vars)
			if err != nil {
				t.Fatal(err)
			}
			got := res[len(res)-1].outcome()
			if len(res) != len(steps) {
				got = fmt.Sprintf("setup %s failed: %s", strings.TrimPrefix(res[len(res)-1].Method, "/vss.v1."), got)
			}
			results[i][c.name] = cell{got: got, want: want}
			if got != want {
				last := res[len(res)-1]
				t.Errorf("%s %s as %s (uid %d): got %s, want %s (%s: %s)", r.method, r.label, c.name, c.uid, got, want, last.Code, last.Message)
			}
			if refused {
				w.checkUnchanged(t, c, r, got, before, w.settle())
				checked++
			}
			if got == outcomeOK && r.after != nil {
				r.after(w, vars)
			}
		}
	}

	var tb strings.Builder
	fmt.Fprintf(&tb, "%-48s", "method")
	for _, c := range columns {
		fmt.Fprintf(&tb, " %-28s", fmt.Sprintf("%s (%s)", c.name, c.rights))
	}
	tb.WriteString("\n")
	for i, r := range all {
		name := strings.TrimPrefix(r.method, "/vss.v1.")
		if r.label != "" {
			name += " " + r.label
		}
		fmt.Fprintf(&tb, "%-48s", name)
		for _, c := range columns {
			fmt.Fprintf(&tb, " %-28s", results[i][c.name])
		}
		tb.WriteString("\n")
	}
	t.Logf("access table (%d methods, %d rows, %d calls, %d refused calls checked for no change) in %v:\n%s",
		len(methods), len(all), len(all)*len(callers), checked, time.Since(start).Round(time.Second), tb.String())
}
