package wire

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// instant compares times as instants (the wire keeps the instant, and
// gives it in the local zone).
var instant = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func sampleShadow(n int) catalog.Shadow {
	created := time.Date(2026, 11, 25, 13, 36, 4, 123456789, time.FixedZone("X", 3600)).Add(time.Duration(n) * time.Minute)
	return catalog.Shadow{
		ID: uuid.New(), SetID: uuid.New(), SetCount: 2,
		VolumeID: uuid.New(), VolumePath: "/mnt/data", VolumeName: `\\?\Volume{x}\`,
		ShadowPath: "/mnt/data/.vss/{x}", StoragePath: "/mnt/data/.vss", StorageVolumeID: uuid.New(),
		Provider: "btrfs", ProviderID: uuid.New(), Created: created,
		Context: vss.CtxClientAccessible, Attributes: vss.CtxClientAccessible.Attr() | vss.AttrDifferential,
		OriginatingMachine: "host", ServiceMachine: "host", ExposedName: "X:", ExposedPath: "/x",
		CrashConsistent: n%2 == 0, Owner: fmt.Sprint("session-", n),
	}
}

func TestShadowsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []catalog.Shadow
	}{
		{"none", nil},
		{"one", []catalog.Shadow{sampleShadow(1)}},
		{"several", []catalog.Shadow{sampleShadow(1), sampleShadow(2), sampleShadow(3)}},
		{"zero values", []catalog.Shadow{{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ShadowsFromProto(ShadowsToProto(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Error("decoded list is nil; want an empty list")
			}
			if d := cmp.Diff(tc.in, got, instant, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("round trip (-sent +got):\n%s", d)
			}
		})
	}
}

func TestShadowCarriesNames(t *testing.T) {
	s := sampleShadow(1)
	p := ShadowToProto(s)
	if p.GetContextName() != "ClientAccessible" {
		t.Errorf("context name %q", p.GetContextName())
	}
	if d := cmp.Diff(s.Attributes.Words(), p.GetAttributeNames()); d != "" {
		t.Errorf("attribute names (-want +got):\n%s", d)
	}
}

func TestCreateResultRoundTrip(t *testing.T) {
	sh := []catalog.Shadow{sampleShadow(1), sampleShadow(2)}
	for _, tc := range []struct {
		name string
		in   *service.CreateResult
	}{
		{"made", &service.CreateResult{
			Set:       catalog.Set{ID: sh[0].SetID, Created: sh[0].Created, Context: vss.CtxClientAccessible, Count: 2, Shadows: []uuid.UUID{sh[0].ID, sh[1].ID}},
			Shadows:   sh,
			Timings:   coordinator.Timings{Prepare: time.Millisecond, Freeze: 2 * time.Millisecond, Flush: 3, Hold: 4 * time.Microsecond, Total: time.Second},
			Stats:     []provider.Stats{{PreparedBytes: 1, CommitBytes: 2, CommitEntries: 3, Frozen: true}, {}},
			Evicted:   []catalog.Shadow{sampleShadow(3)},
			NotFrozen: map[string]string{"/mnt/data": "it holds the state directory"},
		}},
		{"failed, evicted only", &service.CreateResult{Evicted: []catalog.Shadow{sampleShadow(3)}}},
		{"empty", &service.CreateResult{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CreateResultFromProto(CreateResultToProto(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.in, got, instant, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("round trip (-sent +got):\n%s", d)
			}
		})
	}
}

func TestRequestsRoundTrip(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		for _, in := range []service.CreateRequest{
			{Volumes: []string{"/a", "/b"}, Provider: "copy", Context: vss.CtxBackup, AutoRetry: 5 * time.Minute},
			{Volumes: []string{"/a"}, Context: vss.CtxClientAccessible},
		} {
			got, err := CreateRequestFromProto(CreateRequestToProto(in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(in, got); d != "" {
				t.Errorf("round trip (-sent +got):\n%s", d)
			}
		}
	})
	t.Run("selection", func(t *testing.T) {
		for _, in := range []service.Selection{
			{},
			{For: "/a", Oldest: true},
			{ShadowID: uuid.New()},
			{SetID: uuid.New(), All: true},
		} {
			got, err := SelectionFromProto(SelectionToProto(in))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(in, got); d != "" {
				t.Errorf("round trip (-sent +got):\n%s", d)
			}
		}
	})
	t.Run("max size", func(t *testing.T) {
		for _, in := range []config.MaxSize{{Unbounded: true}, {Percent: 12.5}, {Bytes: 300 << 20}} {
			if got := MaxSizeFromProto(MaxSizeToProto(in)); got != in {
				t.Errorf("round trip of %v gave %v", in, got)
			}
		}
		if got := MaxSizeFromProto(nil); !got.Unbounded {
			t.Errorf("absent limit gave %v, want UNBOUNDED", got)
		}
	})
}

func TestBadRequestFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"shadow id", func() error { _, err := SelectionFromProto(&vssv1.Selection{ShadowId: "nope"}); return err }},
		{"set id", func() error { _, err := SelectionFromProto(&vssv1.Selection{SetId: "{x}"}); return err }},
		{"ids", func() error { _, err := IDsFromProto("ids", []string{uuid.NewString(), "bad"}); return err }},
		{"negative autoretry", func() error {
			_, err := CreateRequestFromProto(CreateRequestToProto(service.CreateRequest{AutoRetry: -time.Second}))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.err(); vsserr.CodeOf(err) != vsserr.E_INVALIDARG {
				t.Errorf("got %v, want E_INVALIDARG", err)
			}
		})
	}
}

func TestListsRoundTrip(t *testing.T) {
	t.Run("storage", func(t *testing.T) {
		in := []service.StorageInfo{
			{Storage: catalog.Storage{For: uuid.New(), ForPath: "/a", On: uuid.New(), OnPath: "/b", Kind: catalog.Percent, MaxValue: 1250},
				Used: -1, Max: 1 << 30, MaxSpec: "12.5%", OnTotal: 8 << 30, Shadows: 3},
			{Storage: catalog.Storage{Kind: catalog.Unbounded}, MaxSpec: "UNBOUNDED"},
		}
		got, err := StorageInfoFromProto(StorageInfoToProto(in))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(in, got); d != "" {
			t.Errorf("(-sent +got):\n%s", d)
		}
	})
	t.Run("volumes", func(t *testing.T) {
		in := []service.VolumeInfo{{Path: "/a", ID: uuid.New(), Name: "n", FSType: "btrfs", Kind: "mount", Provider: "btrfs", Shadows: 2}, {Path: "/b"}}
		got, err := VolumesFromProto(VolumesToProto(in))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(in, got); d != "" {
			t.Errorf("(-sent +got):\n%s", d)
		}
	})
	t.Run("providers", func(t *testing.T) {
		var in []provider.Info
		for _, p := range service.DefaultProviders() {
			in = append(in, p.Info())
		}
		got, err := ProvidersFromProto(ProvidersToProto(in))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(in, got); d != "" {
			t.Errorf("(-sent +got):\n%s", d)
		}
	})
	t.Run("writers", func(t *testing.T) {
		in := []service.WriterStatus{{Name: "w", ID: uuid.New(), InstanceID: uuid.New(), State: 7, StateText: "Failed", LastError: "x"}}
		got, err := WritersFromProto(WritersToProto(in))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(in, got); d != "" {
			t.Errorf("(-sent +got):\n%s", d)
		}
		empty, err := WritersFromProto(WritersToProto([]service.WriterStatus{}))
		if err != nil || empty == nil {
			t.Errorf("empty writer list decoded to %#v, %v; want an empty, non-nil list", empty, err)
		}
	})
	t.Run("reverts", func(t *testing.T) {
		in := []catalog.Revert{{VolumeID: uuid.New(), VolumePath: "/a", ShadowID: uuid.New(), ShadowPath: "/a/.vss/x",
			Provider: "btrfs", Exclude: []string{"/a/.vss"}, Started: time.Now(), Done: 5, Total: 10}}
		got, err := RevertsFromProto(RevertsToProto(in))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(in, got, instant); d != "" {
			t.Errorf("(-sent +got):\n%s", d)
		}
	})
}

func TestErrorsRoundTrip(t *testing.T) {
	cause := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		err  error
		// sameText says err.Error() survives too (the service's errors
		// are *vsserr.Error at the top; others keep their code and
		// vssadmin's text, not their exact Error()).
		sameText bool
	}{
		{"new", vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy with ID {%s}", uuid.Nil), true},
		{"wrapped cause", vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, cause, "btrfs: snapshot of %s", "/a"), true},
		{"no message", &vsserr.Error{Code: vsserr.VSS_E_BAD_STATE}, true},
		{"access denied", vsserr.New(vsserr.E_ACCESSDENIED, "no"), true},
		{"cancelled", vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, context.Canceled, "creating"), true},
		{"deadline", vsserr.Wrap(vsserr.VSS_E_WRITER_NOT_RESPONDING, context.DeadlineExceeded, "freeze"), true},
		{"wrapped by fmt", fmt.Errorf("deleting: %w", vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "gone")), false},
		{"unclassified", cause, false},
		{"unknown code", vsserr.New(vsserr.Code(0x80049999), "odd"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := ToStatus(tc.err, nil)
			if _, ok := status.FromError(st); !ok {
				t.Fatalf("ToStatus gave %T, not a status", st)
			}
			_, got := FromStatus(st, nil)
			var ve *vsserr.Error
			if !errors.As(got, &ve) {
				t.Fatalf("FromStatus gave %T, not a *vsserr.Error", got)
			}
			if ve.Code != vsserr.CodeOf(tc.err) {
				t.Errorf("code %v, want %v", ve.Code, vsserr.CodeOf(tc.err))
			}
			if d := cmp.Diff(vsserr.Message(tc.err), vsserr.Message(got)); d != "" {
				t.Errorf("vssadmin's text differs (-service +client):\n%s", d)
			}
			if tc.sameText && got.Error() != tc.err.Error() {
				t.Errorf("Error() = %q, want %q", got.Error(), tc.err.Error())
			}
			for _, ce := range contextErrors {
				if errors.Is(tc.err, ce) != errors.Is(got, ce) {
					t.Errorf("errors.Is(%v) differs", ce)
				}
			}
		})
	}
	if ToStatus(nil, nil) != nil {
		t.Error("ToStatus(nil) is not nil")
	}
}

func TestStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{vsserr.New(vsserr.E_ACCESSDENIED, "x"), codes.PermissionDenied},
		{vsserr.New(vsserr.E_INVALIDARG, "x"), codes.InvalidArgument},
		{vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "x"), codes.NotFound},
		{vsserr.New(vsserr.VSS_E_INSUFFICIENT_STORAGE, "x"), codes.ResourceExhausted},
		{vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, context.Canceled, "x"), codes.Canceled},
		{vsserr.New(vsserr.VSS_E_PROVIDER_VETO, "x"), codes.Unknown},
	} {
		if got := status.Code(ToStatus(tc.err, nil)); got != tc.want {
			t.Errorf("%v: status code %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestPartialResultTravels(t *testing.T) {
	evicted := []catalog.Shadow{sampleShadow(1)}
	st := ToStatus(vsserr.New(vsserr.VSS_E_INSUFFICIENT_STORAGE, "full"), CreateResultToProto(&service.CreateResult{Evicted: evicted}))
	partial := &vssv1.CreateShadowSetResponse{}
	has, err := FromStatus(st, partial)
	if !has || vsserr.CodeOf(err) != vsserr.VSS_E_INSUFFICIENT_STORAGE {
		t.Fatalf("FromStatus = %v, %v", has, err)
	}
	res, derr := CreateResultFromProto(partial)
	if derr != nil {
		t.Fatal(derr)
	}
	if d := cmp.Diff(evicted, res.Evicted, instant); d != "" {
		t.Errorf("evicted (-sent +got):\n%s", d)
	}
	// A typed nil partial (a handler's nil response) is not attached.
	var none *vssv1.CreateShadowSetResponse
	if has, _ := FromStatus(ToStatus(errors.New("x"), none), &vssv1.CreateShadowSetResponse{}); has {
		t.Error("a nil partial result travelled")
	}
}

func TestTransportErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		is   error
	}{
		{"cancelled here", status.Error(codes.Canceled, "context canceled"), context.Canceled},
		{"deadline here", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), context.DeadlineExceeded},
		{"daemon gone", status.Error(codes.Unavailable, "connection refused"), nil},
		{"not a status", errors.New("boom"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := FromStatus(tc.err, nil)
			if vsserr.CodeOf(got) != vsserr.VSS_E_UNEXPECTED {
				t.Errorf("code %v, want VSS_E_UNEXPECTED", vsserr.CodeOf(got))
			}
			if tc.is != nil && !errors.Is(got, tc.is) {
				t.Errorf("%v is not %v", got, tc.is)
			}
		})
	}
}
