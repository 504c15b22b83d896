package apiserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/apiserver"
	"github.com/linuxvss/vss/internal/apiserver/wire"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// fuzzMode says what the fuzzer does with a decoded request.
type fuzzMode int

const (
	// fuzzLive sends the request to the in-process server: the method
	// only reads, validates, or changes the fuzzer's own state directory
	// and in-memory sessions.
	fuzzLive fuzzMode = iota
	// fuzzValidate runs only the server's request decoding (the wire
	// function the handler calls first): the method could make shadow
	// copies of real volumes or revert, delete or unmount real things (a
	// fuzzed path can name "/").
	fuzzValidate
	// fuzzSkip neither sends nor validates: as fuzzValidate, but the
	// handler has no decoding step of its own.
	fuzzSkip
)

// sessionKind is the requester session a live session call runs in when
// its request names none.
type sessionKind int

const (
	fuzzNoSession sessionKind = iota
	fuzzBackupSession
	fuzzRestoreSession
)

// prepCall is a call made on the fuzzer's session before the fuzzed one.
type prepCall struct {
	method string
	req    proto.Message
}

type fuzzRule struct {
	mode fuzzMode
	// validate is the decoding step of a fuzzValidate method.
	validate func(proto.Message) error
	session  sessionKind
	// prep are the calls made on that session before the fuzzed one, so
	// that it gets past the session's state checks.
	prep []prepCall
	// why a method is not sent (fuzzValidate, fuzzSkip).
	why string
}

// fuzzRules says, for every API method, how FuzzAPIRequests treats it; a
// method without a rule fails the fuzz target (TestFuzzRulesCoverAPI).
var fuzzRules = map[string]fuzzRule{
	vssv1.Admin_Info_FullMethodName: {mode: fuzzLive},
	vssv1.Admin_CreateShadowSet_FullMethodName: {mode: fuzzValidate, why: "makes shadow copies of real volumes",
		validate: func(m proto.Message) error {
			_, err := wire.CreateRequestFromProto(m.(*vssv1.CreateShadowSetRequest))
			return err
		}},
	vssv1.Admin_ListShadows_FullMethodName: {mode: fuzzLive},
	vssv1.Admin_Select_FullMethodName:      {mode: fuzzLive},
	vssv1.Admin_DeleteShadows_FullMethodName: {mode: fuzzValidate, why: "deletes shadow copies",
		validate: func(m proto.Message) error {
			_, err := wire.IDsFromProto("ids", m.(*vssv1.DeleteShadowsRequest).GetIds())
			return err
		}},
	vssv1.Admin_RevertShadow_FullMethodName: {mode: fuzzValidate, why: "reverts a real volume",
		validate: func(m proto.Message) error {
			_, err := wire.IDFromProto("id", m.(*vssv1.RevertShadowRequest).GetId())
			return err
		}},
	vssv1.Admin_QueryReverts_FullMethodName:  {mode: fuzzLive},
	vssv1.Admin_ListVolumes_FullMethodName:   {mode: fuzzLive},
	vssv1.Admin_ListProviders_FullMethodName: {mode: fuzzLive},
	vssv1.Admin_ListWriters_FullMethodName:   {mode: fuzzLive},
	// AddShadowStorage changes only the fuzzer's own catalog (nothing on
	// disk), so it runs live.
	vssv1.Admin_AddShadowStorage_FullMethodName: {mode: fuzzLive},
	vssv1.Admin_ResizeShadowStorage_FullMethodName: {mode: fuzzValidate, why: "evicts (deletes) shadow copies that no longer fit",
		validate: func(m proto.Message) error {
			_ = wire.MaxSizeFromProto(m.(*vssv1.ResizeShadowStorageRequest).GetMax())
			return nil
		}},
	vssv1.Admin_ListShadowStorage_FullMethodName: {mode: fuzzLive},
	vssv1.Admin_StorageShadows_FullMethodName:    {mode: fuzzLive},
	vssv1.Admin_DeleteShadowStorage_FullMethodName: {mode: fuzzSkip,
		why: "deletes shadow copies and removes <on>/.vss on a real volume; the handler has no decoding step"},
	vssv1.Admin_Expose_FullMethodName: {mode: fuzzValidate, why: "mounts over a real path",
		validate: func(m proto.Message) error {
			_, err := wire.IDFromProto("shadow_id", m.(*vssv1.ExposeRequest).GetShadowId())
			return err
		}},
	vssv1.Admin_Unexpose_FullMethodName: {mode: fuzzSkip, why: "unmounts a real path; the handler has no decoding step"},
	vssv1.Admin_BreakSet_FullMethodName: {mode: fuzzValidate, why: "moves shadow copies out of the service",
		validate: func(m proto.Message) error {
			_, err := wire.IDFromProto("set_id", m.(*vssv1.BreakSetRequest).GetSetId())
			return err
		}},

	// Requester sessions live in the server's memory; the fuzzer's
	// service has no writers and never makes a set (DoSnapshotSet is not
	// sent), so no session call can touch a real volume.
	vssv1.Requester_InitializeForBackup_FullMethodName:  {mode: fuzzLive},
	vssv1.Requester_InitializeForRestore_FullMethodName: {mode: fuzzLive},
	vssv1.Requester_GatherWriterMetadata_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_SetContext_FullMethodName:           {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_SetBackupState_FullMethodName:       {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_ExcludeWriters_FullMethodName:       {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_AddComponent_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession,
		prep: []prepCall{{vssv1.Requester_GatherWriterMetadata_FullMethodName, &vssv1.SessionRequest{}}}},
	vssv1.Requester_StartSnapshotSet_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_AddToSnapshotSet_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession,
		prep: []prepCall{{vssv1.Requester_StartSnapshotSet_FullMethodName, &vssv1.SessionRequest{}}}},
	// A set with a volume, never made: PrepareForBackup only sends an
	// event to the (no) writers.
	vssv1.Requester_PrepareForBackup_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession,
		prep: []prepCall{{vssv1.Requester_StartSnapshotSet_FullMethodName, &vssv1.SessionRequest{}}, {vssv1.Requester_AddToSnapshotSet_FullMethodName, &vssv1.AddToSnapshotSetRequest{Volume: "/"}}}},
	vssv1.Requester_DoSnapshotSet_FullMethodName: {mode: fuzzSkip,
		why: "makes shadow copies of real volumes; the request is only a session ID"},
	vssv1.Requester_GatherWriterStatus_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_SetBackupSucceeded_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_BackupComplete_FullMethodName:     {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_AbortBackup_FullMethodName:        {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_SaveAsXML_FullMethodName:          {mode: fuzzLive, session: fuzzBackupSession},
	vssv1.Requester_SelectForRestore_FullMethodName:   {mode: fuzzLive, session: fuzzRestoreSession},
	vssv1.Requester_PreRestore_FullMethodName:         {mode: fuzzLive, session: fuzzRestoreSession},
	vssv1.Requester_PostRestore_FullMethodName: {mode: fuzzLive, session: fuzzRestoreSession,
		prep: []prepCall{{vssv1.Requester_PreRestore_FullMethodName, &vssv1.RestoreRequest{}}}},
	vssv1.Requester_EndSession_FullMethodName: {mode: fuzzLive, session: fuzzBackupSession},

	// A registered writer lives as long as its stream; the fuzzer ends
	// the stream after the first answer.
	vssv1.Writers_Connect_FullMethodName: {mode: fuzzLive},
}

// apiMethod is one method of the API with its request and response types.
type apiMethod struct {
	full     string
	stream   bool
	in, out  protoreflect.MessageType
	sessionF protoreflect.FieldDescriptor // the request's session_id, if any
}

// apiMethods enumerates every method of every service of the API from the
// generated descriptors, in a fixed order (the fuzzer's method index).
func apiMethods(tb testing.TB) []apiMethod {
	tb.Helper()
	var out []apiMethod
	for _, sd := range []grpc.ServiceDesc{vssv1.Admin_ServiceDesc, vssv1.Requester_ServiceDesc, vssv1.Writers_ServiceDesc} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(sd.ServiceName))
		if err != nil {
			tb.Fatalf("service %s: %v", sd.ServiceName, err)
		}
		svc := d.(protoreflect.ServiceDescriptor)
		var names []string
		stream := map[string]bool{}
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
			stream[s.StreamName] = true
		}
		for _, name := range names {
			md := svc.Methods().ByName(protoreflect.Name(name))
			if md == nil {
				tb.Fatalf("%s/%s is not in the descriptor", sd.ServiceName, name)
			}
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				tb.Fatal(err)
			}
			outT, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				tb.Fatal(err)
			}
			m := apiMethod{full: "/" + sd.ServiceName + "/" + name, stream: stream[name], in: in, out: outT}
			if f := md.Input().Fields().ByName("session_id"); f != nil && f.Kind() == protoreflect.StringKind {
				m.sessionF = f
			}
			out = append(out, m)
		}
	}
	return out
}

// TestFuzzRulesCoverAPI: every method of the API has a fuzz rule and a
// seed, so that a new method cannot be left out of FuzzAPIRequests.
func TestFuzzRulesCoverAPI(t *testing.T) {
	methods := apiMethods(t)
	seeds := fuzzSeeds()
	known := map[string]bool{}
	for _, m := range methods {
		known[m.full] = true
		r, ok := fuzzRules[m.full]
		if !ok {
			t.Errorf("%s has no fuzz rule", m.full)
			continue
		}
		if r.mode == fuzzValidate && r.validate == nil {
			t.Errorf("%s: a validate rule needs its decoding function", m.full)
		}
		if r.mode != fuzzLive && r.why == "" {
			t.Errorf("%s: say why it is not sent", m.full)
		}
		if len(seeds[m.full]) == 0 {
			t.Errorf("%s has no seed request", m.full)
		}
	}
	for name := range fuzzRules {
		if !known[name] {
			t.Errorf("fuzz rule for %s, which is not a method of the API", name)
		}
	}
}

// Fixed IDs of the seeds (the restore document's writer).
var (
	fuzzWriterID   = uuid.MustParse("5b2c7e40-7d1f-4c8e-9a53-1f0e4d6c2b11")
	fuzzInstanceID = uuid.MustParse("9e4a1c2d-3b5f-4e6a-8c7d-2a1b0f9e8d22")
)

// fuzzRestoreDoc is the Backup Components Document the restore sessions
// of the fuzzer start from: one writer with one component.
func fuzzRestoreDoc() string {
	b := &vssmeta.BackupComponents{
		SetID: uuid.MustParse("0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e44"), BackupType: vssmeta.BackupFull, SelectComponents: true,
		Writers: []vssmeta.WriterComponents{{WriterID: fuzzWriterID, InstanceID: fuzzInstanceID, Name: "fuzz",
			Components: []vssmeta.ComponentState{{Name: "data", Type: vssmeta.ComponentFileGroup}}}},
		Snapshots: []vssmeta.SnapshotInfo{{ID: uuid.MustParse("1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f55"), Volume: "/srv", Path: "/srv/.vss/x"}},
	}
	x, err := b.XML()
	if err != nil {
		panic(err)
	}
	return string(x)
}

func fuzzWriterDoc() string {
	m := &vssmeta.WriterMetadata{WriterID: fuzzWriterID, InstanceID: fuzzInstanceID, Name: "fuzz",
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther,
		Components: []vssmeta.Component{{Type: vssmeta.ComponentFileGroup, Name: "data", Selectable: true,
			Files: []vssmeta.File{{Path: "/nonexistent/fuzz", Filespec: "*", Recursive: true}}}}}
	x, err := m.XML()
	if err != nil {
		panic(err)
	}
	return string(x)
}

// fuzzSeeds are valid (and a few invalid) requests of every method.
func fuzzSeeds() map[string][]proto.Message {
	id := "3f2e1d0c-b9a8-4765-8432-10fedcba9876"
	inst := fuzzInstanceID.String()
	return map[string][]proto.Message{
		vssv1.Admin_Info_FullMethodName: {&vssv1.InfoRequest{}},
		vssv1.Admin_CreateShadowSet_FullMethodName: {
			&vssv1.CreateShadowSetRequest{Volumes: []string{"/srv"}, Context: uint32(vss.CtxClientAccessible)},
			&vssv1.CreateShadowSetRequest{Volumes: []string{"/srv", "/var"}, Provider: "btrfs", Autoretry: durationpb.New(-time.Second)},
		},
		vssv1.Admin_ListShadows_FullMethodName: {
			&vssv1.ListShadowsRequest{},
			&vssv1.ListShadowsRequest{Selection: &vssv1.Selection{For: "/", ShadowId: id, Oldest: true}},
		},
		vssv1.Admin_Select_FullMethodName: {
			&vssv1.SelectRequest{Selection: &vssv1.Selection{For: "/nonexistent", SetId: id, All: true}},
			&vssv1.SelectRequest{Selection: &vssv1.Selection{ShadowId: "{" + id + "}"}},
		},
		vssv1.Admin_DeleteShadows_FullMethodName: {
			&vssv1.DeleteShadowsRequest{Ids: []string{id}},
			&vssv1.DeleteShadowsRequest{Ids: []string{"not-a-guid"}},
		},
		vssv1.Admin_RevertShadow_FullMethodName: {&vssv1.RevertShadowRequest{Id: id, Force: true}},
		vssv1.Admin_QueryReverts_FullMethodName: {
			&vssv1.QueryRevertsRequest{},
			&vssv1.QueryRevertsRequest{For: "/nonexistent"},
		},
		vssv1.Admin_ListVolumes_FullMethodName:   {&vssv1.ListVolumesRequest{}},
		vssv1.Admin_ListProviders_FullMethodName: {&vssv1.ListProvidersRequest{}},
		vssv1.Admin_ListWriters_FullMethodName:   {&vssv1.ListWritersRequest{}},
		vssv1.Admin_AddShadowStorage_FullMethodName: {
			&vssv1.AddShadowStorageRequest{For: "/nonexistent", On: "/nonexistent", Max: &vssv1.MaxSize{Bytes: 1 << 30}},
			&vssv1.AddShadowStorageRequest{For: "relative", On: "", Max: &vssv1.MaxSize{Percent: 250}},
		},
		vssv1.Admin_ResizeShadowStorage_FullMethodName: {
			&vssv1.ResizeShadowStorageRequest{For: "/srv", On: "/srv", Max: &vssv1.MaxSize{Percent: 10}},
			&vssv1.ResizeShadowStorageRequest{For: "/srv", Max: &vssv1.MaxSize{Unbounded: true}},
		},
		vssv1.Admin_ListShadowStorage_FullMethodName: {
			&vssv1.ListShadowStorageRequest{},
			&vssv1.ListShadowStorageRequest{For: "/", On: "/"},
		},
		vssv1.Admin_StorageShadows_FullMethodName:      {&vssv1.StorageShadowsRequest{For: "/nonexistent"}},
		vssv1.Admin_DeleteShadowStorage_FullMethodName: {&vssv1.DeleteShadowStorageRequest{For: "/srv"}},
		vssv1.Admin_Expose_FullMethodName: {
			&vssv1.ExposeRequest{ShadowId: id, Path: "/mnt/x"},
			&vssv1.ExposeRequest{ShadowId: "", Path: "relative"},
		},
		vssv1.Admin_Unexpose_FullMethodName: {&vssv1.UnexposeRequest{Path: "/mnt/x"}},
		vssv1.Admin_BreakSet_FullMethodName: {&vssv1.BreakSetRequest{SetId: id, Writable: true}},

		vssv1.Requester_InitializeForBackup_FullMethodName: {
			&vssv1.InitializeForBackupRequest{},
			&vssv1.InitializeForBackupRequest{BcdXml: fuzzRestoreDoc()},
		},
		vssv1.Requester_InitializeForRestore_FullMethodName: {
			&vssv1.InitializeForRestoreRequest{BcdXml: fuzzRestoreDoc()},
			&vssv1.InitializeForRestoreRequest{BcdXml: "<BACKUP_COMPONENTS"},
		},
		vssv1.Requester_GatherWriterMetadata_FullMethodName: {&vssv1.SessionRequest{}},
		vssv1.Requester_SetContext_FullMethodName: {
			&vssv1.SetContextRequest{Context: uint32(vss.CtxAppRollback)},
			&vssv1.SetContextRequest{Context: 0x2},
		},
		vssv1.Requester_SetBackupState_FullMethodName: {
			&vssv1.SetBackupStateRequest{SelectComponents: true, BackupType: int32(vssmeta.BackupDifferential)},
			&vssv1.SetBackupStateRequest{BackupType: -1},
		},
		vssv1.Requester_ExcludeWriters_FullMethodName: {&vssv1.ExcludeWritersRequest{Writers: []string{"fuzz", "{" + inst + "}"}}},
		vssv1.Requester_AddComponent_FullMethodName: {
			&vssv1.ComponentRequest{WriterInstanceId: inst, LogicalPath: "", Name: "data"},
			&vssv1.ComponentRequest{WriterInstanceId: "x"},
		},
		vssv1.Requester_StartSnapshotSet_FullMethodName: {&vssv1.SessionRequest{}},
		vssv1.Requester_AddToSnapshotSet_FullMethodName: {
			&vssv1.AddToSnapshotSetRequest{Volume: "/", Provider: "btrfs"},
			&vssv1.AddToSnapshotSetRequest{Volume: "/nonexistent"},
		},
		vssv1.Requester_PrepareForBackup_FullMethodName:   {&vssv1.SessionRequest{}},
		vssv1.Requester_DoSnapshotSet_FullMethodName:      {&vssv1.SessionRequest{}},
		vssv1.Requester_GatherWriterStatus_FullMethodName: {&vssv1.SessionRequest{}},
		vssv1.Requester_SetBackupSucceeded_FullMethodName: {&vssv1.SetBackupSucceededRequest{WriterInstanceId: inst, Name: "data", Succeeded: true}},
		vssv1.Requester_BackupComplete_FullMethodName:     {&vssv1.SessionRequest{}},
		vssv1.Requester_AbortBackup_FullMethodName:        {&vssv1.SessionRequest{}},
		vssv1.Requester_SaveAsXML_FullMethodName: {
			&vssv1.SessionRequest{},
			&vssv1.SessionRequest{SessionId: "no-such-session"},
		},
		vssv1.Requester_SelectForRestore_FullMethodName: {
			&vssv1.SelectForRestoreRequest{WriterInstanceId: inst, Name: "data", NewTarget: "/srv/restored", NewName: "copy"},
			&vssv1.SelectForRestoreRequest{WriterInstanceId: inst, Name: "data", NewTarget: "relative"},
		},
		vssv1.Requester_PreRestore_FullMethodName: {
			&vssv1.RestoreRequest{RestoreTarget: "/srv/restored"},
			&vssv1.RestoreRequest{RestoreTarget: "relative"},
		},
		vssv1.Requester_PostRestore_FullMethodName: {&vssv1.RestoreRequest{}},
		vssv1.Requester_EndSession_FullMethodName:  {&vssv1.SessionRequest{}},

		vssv1.Writers_Connect_FullMethodName: {
			&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Register{Register: &vssv1.Register{MetadataXml: fuzzWriterDoc(), OnError: "continue"}}},
			&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Register{Register: &vssv1.Register{MetadataXml: "<WRITER_METADATA/>", OnError: "sometimes"}}},
			&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Result{Result: &vssv1.EventResult{Seq: 1}}},
		},
	}
}

// fuzzCallTimeout is how long a call may take before the fuzzer calls it
// a hang.
const fuzzCallTimeout = 30 * time.Second

// fuzzServer is a service on its own state directory served on a unix
// socket in a temporary directory, with a client connection to it.
type fuzzServer struct {
	conn *grpc.ClientConn
}

// startFuzzServer starts the server of FuzzAPIRequests. The caller gets
// every right (so that the fuzzer also runs as another user than root);
// no writer is configured.
func startFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	dir := tb.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "s.sock")
	cfg.Writers.HooksDir = "-"
	if uid := strconv.Itoa(os.Getuid()); uid != "0" {
		cfg.Access = config.Access{List: []string{uid}, Create: []string{uid}, Delete: []string{uid}, Writers: []string{uid}}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	svc, err := service.Open(ctx, service.Options{Config: cfg, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	l, err := apiserver.Listen(cfg.Socket)
	if err != nil {
		tb.Fatal(err)
	}
	srv := apiserver.New(svc, apiserver.Options{Version: "fuzz", Socket: cfg.Socket, Log: log})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("passthrough:///vssd",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.Socket)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageSize)),
	)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &fuzzServer{conn: conn}
}

// checkAnswer fails unless err is nil or a status that carries a VSS
// error (what the server's interceptor makes of every failure).
func checkAnswer(t *testing.T, method string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: the answer is not a gRPC status: %v", method, err)
	}
	if st.Code() == codes.DeadlineExceeded {
		t.Fatalf("%s: no answer within %v (a hang): %v", method, fuzzCallTimeout, err)
	}
	for _, d := range st.Details() {
		if ve, ok := d.(*vssv1.VssError); ok {
			if ve.GetHresult() == 0 {
				t.Fatalf("%s: a failure with VSS code 0: %v", method, err)
			}
			return
		}
	}
	t.Fatalf("%s: a failure without a VSS error (%v): %v", method, st.Code(), err)
}

// session begins a requester session for a session call whose request
// names none.
func (s *fuzzServer) session(ctx context.Context, kind sessionKind) (string, error) {
	var reply vssv1.SessionReply
	var err error
	if kind == fuzzRestoreSession {
		err = s.conn.Invoke(ctx, vssv1.Requester_InitializeForRestore_FullMethodName, &vssv1.InitializeForRestoreRequest{BcdXml: fuzzRestoreDoc()}, &reply)
	} else {
		err = s.conn.Invoke(ctx, vssv1.Requester_InitializeForBackup_FullMethodName, &vssv1.InitializeForBackupRequest{}, &reply)
	}
	return reply.GetSessionId(), err
}

func (s *fuzzServer) endSession(ctx context.Context, id string) {
	if id != "" {
		_ = s.conn.Invoke(ctx, vssv1.Requester_EndSession_FullMethodName, &vssv1.SessionRequest{SessionId: id}, &vssv1.WritersReply{})
	}
}

// connect sends a writer stream's first message and waits for the
// service's answer (Registered, or the refusal), answering the events
// that come before it; it then ends the stream (which unregisters the
// writer).
func (s *fuzzServer) connect(ctx context.Context, m *vssv1.WriterMessage) (*vssv1.ServiceMessage, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := vssv1.NewWritersClient(s.conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(m); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// The service identifies a writer before it confirms the
	// registration: answer with the registered document.
	for {
		reply, err := stream.Recv()
		if err != nil || reply.GetEvent() == nil {
			return reply, err
		}
		ev := reply.GetEvent()
		res := &vssv1.EventResult{Seq: ev.GetSeq()}
		if ev.GetEvent() == "Identify" {
			res.MetadataXml = m.GetRegister().GetMetadataXml()
		}
		if err := stream.Send(&vssv1.WriterMessage{Msg: &vssv1.WriterMessage_Result{Result: res}}); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
}

// FuzzAPIRequests decodes bytes as the request of one API method (picked
// by the index) and, for the methods that only read or validate (see
// fuzzRules), sends it to an in-process server, which must answer with a
// status (never panic or hang). The methods that could make shadow
// copies of real volumes or revert, delete or unmount real things only
// go through the server's decoding step.
func FuzzAPIRequests(f *testing.F) {
	methods := apiMethods(f)
	index := map[string]uint8{}
	for i, m := range methods {
		index[m.full] = uint8(i)
		if _, ok := fuzzRules[m.full]; !ok {
			f.Fatalf("%s has no fuzz rule (add one to fuzzRules)", m.full)
		}
	}
	seeds := fuzzSeeds()
	for name := range seeds {
		if _, ok := index[name]; !ok {
			f.Fatalf("seed for %s, which is not a method of the API", name)
		}
	}
	for i, m := range methods {
		for _, r := range seeds[m.full] {
			b, err := proto.Marshal(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
		}
	}
	methodsByName := map[string]apiMethod{}
	for _, m := range methods {
		methodsByName[m.full] = m
	}
	srv := startFuzzServer(f)
	f.Fuzz(func(t *testing.T, idx uint8, data []byte) {
		m := methods[int(idx)%len(methods)]
		rule := fuzzRules[m.full]
		req := m.in.New().Interface()
		if err := proto.Unmarshal(data, req); err != nil {
			return // not a message of this type: the gRPC layer refuses it
		}
		switch rule.mode {
		case fuzzSkip:
			return
		case fuzzValidate:
			if err := rule.validate(req); err != nil && vsserr.CodeOf(err) != vsserr.E_INVALIDARG {
				t.Fatalf("%s: a request that does not decode must be E_INVALIDARG, not %v", m.full, err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
		defer cancel()
		if m.stream {
			reply, err := srv.connect(ctx, req.(*vssv1.WriterMessage))
			checkAnswer(t, m.full, err)
			if err == nil && reply.GetRegistered() == nil {
				t.Fatalf("%s: the first answer to a writer is not Registered: %v", m.full, reply)
			}
			return
		}
		var own string
		if rule.session != fuzzNoSession && req.ProtoReflect().Get(m.sessionF).String() == "" {
			id, err := srv.session(ctx, rule.session)
			if err != nil {
				t.Fatalf("beginning a session: %v", err)
			}
			own = id
			req.ProtoReflect().Set(m.sessionF, protoreflect.ValueOfString(id))
			for _, p := range rule.prep {
				preq := proto.Clone(p.req)
				preq.ProtoReflect().Set(preq.ProtoReflect().Descriptor().Fields().ByName("session_id"), protoreflect.ValueOfString(id))
				if err := srv.conn.Invoke(ctx, p.method, preq, methodsByName[p.method].out.New().Interface()); err != nil {
					t.Fatalf("preparing the session with %s: %v", p.method, err)
				}
			}
		}
		resp := m.out.New().Interface()
		err := srv.conn.Invoke(ctx, m.full, req, resp)
		checkAnswer(t, m.full, err)
		// Sessions live in the server's memory until they end.
		if r, ok := resp.(*vssv1.SessionReply); ok && err == nil && (m.full == vssv1.Requester_InitializeForBackup_FullMethodName || m.full == vssv1.Requester_InitializeForRestore_FullMethodName) {
			srv.endSession(ctx, r.GetSessionId())
		}
		srv.endSession(ctx, own)
	})
}
