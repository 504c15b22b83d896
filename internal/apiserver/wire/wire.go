// Package wire converts between the service's Go types and the vss.v1
// protobuf messages, both ways, and carries VSS errors across the API as
// gRPC statuses. vssd (internal/apiserver) and its client
// (internal/apiclient) share it, so that what one side encodes the other
// decodes to the same values.
//
// Conventions: a nil UUID travels as "", a zero time as an absent
// Timestamp, and an empty list decodes to an empty (non-nil) slice at the
// top of a response and to nil inside a record, which is what the service
// returns in embedded mode.
package wire

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	vssv1 "github.com/linuxvss/vss/api/vss/v1"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// decoder collects the first malformed field of a message, so that a
// conversion reads straight and reports one error.
type decoder struct {
	code vsserr.Code
	err  error
}

func (d *decoder) uuid(field, s string) uuid.UUID {
	if s == "" {
		return uuid.Nil
	}
	id, err := uuid.Parse(s)
	if err != nil && d.err == nil {
		d.err = vsserr.Wrap(d.code, err, "field %s: invalid ID %q", field, s)
	}
	return id
}

func (d *decoder) uuids(field string, ss []string) []uuid.UUID {
	if len(ss) == 0 {
		return nil
	}
	out := make([]uuid.UUID, len(ss))
	for i, s := range ss {
		out[i] = d.uuid(field, s)
	}
	return out
}

// requestDecoder decodes what a client sent: a malformed field is the
// caller's mistake.
func requestDecoder() *decoder { return &decoder{code: vsserr.E_INVALIDARG} }

// responseDecoder decodes what the daemon answered: a malformed field is
// not the caller's mistake.
func responseDecoder() *decoder { return &decoder{code: vsserr.VSS_E_UNEXPECTED} }

func idString(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

func idStrings(ids []uuid.UUID) []string {
	if len(ids) == 0 {
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = idString(id)
	}
	return out
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// fromTimestamp returns the time in the local zone, as the catalog gives it
// to an embedded service.
func fromTimestamp(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime().Local()
}

func duration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func fromDuration(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func cloneStrings(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	return append([]string(nil), ss...)
}

// ShadowToProto encodes a shadow copy.
func ShadowToProto(s catalog.Shadow) *vssv1.Shadow {
	return &vssv1.Shadow{
		Id:                 idString(s.ID),
		SetId:              idString(s.SetID),
		SetCount:           int64(s.SetCount),
		OriginalVolumeId:   idString(s.VolumeID),
		OriginalVolume:     s.VolumePath,
		OriginalVolumeName: s.VolumeName,
		ShadowVolume:       s.ShadowPath,
		StoragePath:        s.StoragePath,
		StorageVolumeId:    idString(s.StorageVolumeID),
		Provider:           s.Provider,
		ProviderId:         idString(s.ProviderID),
		Created:            timestamp(s.Created),
		Context:            uint32(s.Context),
		ContextName:        s.Context.Name(),
		Attributes:         uint32(s.Attributes),
		AttributeNames:     s.Attributes.Words(),
		OriginatingMachine: s.OriginatingMachine,
		ServiceMachine:     s.ServiceMachine,
		ExposedName:        s.ExposedName,
		ExposedPath:        s.ExposedPath,
		CrashConsistent:    s.CrashConsistent,
		Owner:              s.Owner,
	}
}

func (d *decoder) shadow(p *vssv1.Shadow) catalog.Shadow {
	return catalog.Shadow{
		ID:                 d.uuid("shadow.id", p.GetId()),
		SetID:              d.uuid("shadow.set_id", p.GetSetId()),
		SetCount:           int(p.GetSetCount()),
		VolumeID:           d.uuid("shadow.original_volume_id", p.GetOriginalVolumeId()),
		VolumePath:         p.GetOriginalVolume(),
		VolumeName:         p.GetOriginalVolumeName(),
		ShadowPath:         p.GetShadowVolume(),
		StoragePath:        p.GetStoragePath(),
		StorageVolumeID:    d.uuid("shadow.storage_volume_id", p.GetStorageVolumeId()),
		Provider:           p.GetProvider(),
		ProviderID:         d.uuid("shadow.provider_id", p.GetProviderId()),
		Created:            fromTimestamp(p.GetCreated()),
		Context:            vss.Context(p.GetContext()),
		Attributes:         vss.Attr(p.GetAttributes()),
		OriginatingMachine: p.GetOriginatingMachine(),
		ServiceMachine:     p.GetServiceMachine(),
		ExposedName:        p.GetExposedName(),
		ExposedPath:        p.GetExposedPath(),
		CrashConsistent:    p.GetCrashConsistent(),
		Owner:              p.GetOwner(),
	}
}

// ShadowsToProto encodes shadow copies.
func ShadowsToProto(ss []catalog.Shadow) []*vssv1.Shadow {
	out := make([]*vssv1.Shadow, len(ss))
	for i, s := range ss {
		out[i] = ShadowToProto(s)
	}
	return out
}

func (d *decoder) shadows(ps []*vssv1.Shadow) []catalog.Shadow {
	out := make([]catalog.Shadow, len(ps))
	for i, p := range ps {
		out[i] = d.shadow(p)
	}
	return out
}

// ShadowsFromProto decodes the shadow copies of a response (never nil).
func ShadowsFromProto(ps []*vssv1.Shadow) ([]catalog.Shadow, error) {
	d := responseDecoder()
	out := d.shadows(ps)
	return out, d.err
}

// SetToProto encodes a shadow copy set.
func SetToProto(s catalog.Set) *vssv1.Set {
	return &vssv1.Set{
		Id:          idString(s.ID),
		Created:     timestamp(s.Created),
		Context:     uint32(s.Context),
		ContextName: s.Context.Name(),
		Count:       int64(s.Count),
		ShadowIds:   idStrings(s.Shadows),
	}
}

func (d *decoder) set(p *vssv1.Set) catalog.Set {
	return catalog.Set{
		ID:      d.uuid("set.id", p.GetId()),
		Created: fromTimestamp(p.GetCreated()),
		Context: vss.Context(p.GetContext()),
		Count:   int(p.GetCount()),
		Shadows: d.uuids("set.shadow_ids", p.GetShadowIds()),
	}
}

// SelectionToProto encodes a selection.
func SelectionToProto(s service.Selection) *vssv1.Selection {
	return &vssv1.Selection{
		For:      s.For,
		ShadowId: idString(s.ShadowID),
		SetId:    idString(s.SetID),
		Oldest:   s.Oldest,
		All:      s.All,
	}
}

// SelectionFromProto decodes the selection of a request.
func SelectionFromProto(p *vssv1.Selection) (service.Selection, error) {
	d := requestDecoder()
	s := service.Selection{
		For:      p.GetFor(),
		ShadowID: d.uuid("selection.shadow_id", p.GetShadowId()),
		SetID:    d.uuid("selection.set_id", p.GetSetId()),
		Oldest:   p.GetOldest(),
		All:      p.GetAll(),
	}
	return s, d.err
}

// IDsFromProto decodes the shadow copy IDs of a request.
func IDsFromProto(field string, ss []string) ([]uuid.UUID, error) {
	d := requestDecoder()
	ids := d.uuids(field, ss)
	return ids, d.err
}

// IDFromProto decodes one ID of a request.
func IDFromProto(field, s string) (uuid.UUID, error) {
	d := requestDecoder()
	id := d.uuid(field, s)
	return id, d.err
}

// IDsToProto encodes IDs.
func IDsToProto(ids []uuid.UUID) []string { return idStrings(ids) }

// IDToProto encodes one ID ("" for the nil UUID).
func IDToProto(id uuid.UUID) string { return idString(id) }

// MaxSizeToProto encodes a storage limit.
func MaxSizeToProto(m config.MaxSize) *vssv1.MaxSize {
	return &vssv1.MaxSize{Unbounded: m.Unbounded, Percent: m.Percent, Bytes: m.Bytes}
}

// MaxSizeFromProto decodes a storage limit; an absent one is unbounded,
// as vssadmin's default is.
func MaxSizeFromProto(p *vssv1.MaxSize) config.MaxSize {
	if p == nil {
		return config.MaxSize{Unbounded: true}
	}
	return config.MaxSize{Unbounded: p.GetUnbounded(), Percent: p.GetPercent(), Bytes: p.GetBytes()}
}

// CreateRequestToProto encodes a set creation request.
func CreateRequestToProto(r service.CreateRequest) *vssv1.CreateShadowSetRequest {
	return &vssv1.CreateShadowSetRequest{
		Volumes:   cloneStrings(r.Volumes),
		Provider:  r.Provider,
		Context:   uint32(r.Context),
		Autoretry: duration(r.AutoRetry),
	}
}

// CreateRequestFromProto decodes a set creation request.
func CreateRequestFromProto(p *vssv1.CreateShadowSetRequest) (service.CreateRequest, error) {
	r := service.CreateRequest{
		Volumes:   cloneStrings(p.GetVolumes()),
		Provider:  p.GetProvider(),
		Context:   vss.Context(p.GetContext()),
		AutoRetry: fromDuration(p.GetAutoretry()),
	}
	if r.AutoRetry < 0 {
		return r, vsserr.New(vsserr.E_INVALIDARG, "autoretry must not be negative, not %v", r.AutoRetry)
	}
	return r, nil
}

// CreateResultToProto encodes a made set (or, on failure, what was done).
func CreateResultToProto(r *service.CreateResult) *vssv1.CreateShadowSetResponse {
	if r == nil {
		return nil
	}
	p := &vssv1.CreateShadowSetResponse{
		Shadows: ShadowsToProto(r.Shadows),
		Timings: &vssv1.Timings{
			Prepare: duration(r.Timings.Prepare),
			Freeze:  duration(r.Timings.Freeze),
			Flush:   duration(r.Timings.Flush),
			Hold:    duration(r.Timings.Hold),
			Total:   duration(r.Timings.Total),
		},
		Evicted:        ShadowsToProto(r.Evicted),
		NotFrozen:      r.NotFrozen,
		Writers:        WritersToProto(r.Writers),
		DroppedWriters: cloneStrings(r.Dropped),
	}
	if r.Set.ID != uuid.Nil {
		p.Set = SetToProto(r.Set)
	}
	for _, s := range r.Stats {
		p.Stats = append(p.Stats, &vssv1.ProviderStats{
			PreparedBytes: s.PreparedBytes, CommitBytes: s.CommitBytes, CommitEntries: s.CommitEntries, Frozen: s.Frozen,
		})
	}
	return p
}

// CreateResultFromProto decodes a made set.
func CreateResultFromProto(p *vssv1.CreateShadowSetResponse) (*service.CreateResult, error) {
	d := responseDecoder()
	r := &service.CreateResult{
		Shadows: d.shadows(p.GetShadows()),
		Timings: coordinator.Timings{
			Prepare: fromDuration(p.GetTimings().GetPrepare()),
			Freeze:  fromDuration(p.GetTimings().GetFreeze()),
			Flush:   fromDuration(p.GetTimings().GetFlush()),
			Hold:    fromDuration(p.GetTimings().GetHold()),
			Total:   fromDuration(p.GetTimings().GetTotal()),
		},
		Evicted: d.shadows(p.GetEvicted()),
		Dropped: cloneStrings(p.GetDroppedWriters()),
	}
	if ws := p.GetWriters(); len(ws) > 0 {
		w, err := WritersFromProto(ws)
		if err != nil {
			return r, err
		}
		r.Writers = w
	}
	if p.GetSet() != nil {
		r.Set = d.set(p.GetSet())
	}
	for _, s := range p.GetStats() {
		r.Stats = append(r.Stats, provider.Stats{
			PreparedBytes: s.GetPreparedBytes(), CommitBytes: s.GetCommitBytes(), CommitEntries: s.GetCommitEntries(), Frozen: s.GetFrozen(),
		})
	}
	if len(p.GetNotFrozen()) > 0 {
		r.NotFrozen = make(map[string]string, len(p.GetNotFrozen()))
		for k, v := range p.GetNotFrozen() {
			r.NotFrozen[k] = v
		}
	}
	return r, d.err
}

// StorageInfoToProto encodes storage associations.
func StorageInfoToProto(ss []service.StorageInfo) []*vssv1.StorageInfo {
	out := make([]*vssv1.StorageInfo, len(ss))
	for i, s := range ss {
		out[i] = &vssv1.StorageInfo{
			ForVolumeId:   idString(s.For),
			ForPath:       s.ForPath,
			OnVolumeId:    idString(s.On),
			OnPath:        s.OnPath,
			MaxKind:       vssv1.MaxSizeKind(s.Kind),
			MaxValue:      s.MaxValue,
			UsedBytes:     s.Used,
			MaxBytes:      s.Max,
			Max:           s.MaxSpec,
			OnVolumeBytes: s.OnTotal,
			ShadowCount:   int64(s.Shadows),
		}
	}
	return out
}

// StorageInfoFromProto decodes storage associations (never nil).
func StorageInfoFromProto(ps []*vssv1.StorageInfo) ([]service.StorageInfo, error) {
	d := responseDecoder()
	out := make([]service.StorageInfo, len(ps))
	for i, p := range ps {
		out[i] = service.StorageInfo{
			Storage: catalog.Storage{
				For:      d.uuid("storage.for_volume_id", p.GetForVolumeId()),
				ForPath:  p.GetForPath(),
				On:       d.uuid("storage.on_volume_id", p.GetOnVolumeId()),
				OnPath:   p.GetOnPath(),
				Kind:     catalog.MaxSizeKind(p.GetMaxKind()),
				MaxValue: p.GetMaxValue(),
			},
			Used:    p.GetUsedBytes(),
			Max:     p.GetMaxBytes(),
			MaxSpec: p.GetMax(),
			OnTotal: p.GetOnVolumeBytes(),
			Shadows: int(p.GetShadowCount()),
		}
	}
	return out, d.err
}

// VolumesToProto encodes volumes.
func VolumesToProto(vs []service.VolumeInfo) []*vssv1.VolumeInfo {
	out := make([]*vssv1.VolumeInfo, len(vs))
	for i, v := range vs {
		out[i] = &vssv1.VolumeInfo{
			Path: v.Path, Id: idString(v.ID), Name: v.Name, FsType: v.FSType, Kind: v.Kind,
			Provider: v.Provider, ShadowCount: int64(v.Shadows),
		}
	}
	return out
}

// VolumesFromProto decodes volumes (never nil).
func VolumesFromProto(ps []*vssv1.VolumeInfo) ([]service.VolumeInfo, error) {
	d := responseDecoder()
	out := make([]service.VolumeInfo, len(ps))
	for i, p := range ps {
		out[i] = service.VolumeInfo{
			Path: p.GetPath(), ID: d.uuid("volume.id", p.GetId()), Name: p.GetName(), FSType: p.GetFsType(),
			Kind: p.GetKind(), Provider: p.GetProvider(), Shadows: int(p.GetShadowCount()),
		}
	}
	return out, d.err
}

// ProvidersToProto encodes provider descriptions.
func ProvidersToProto(ps []provider.Info) []*vssv1.ProviderInfo {
	out := make([]*vssv1.ProviderInfo, len(ps))
	for i, p := range ps {
		out[i] = &vssv1.ProviderInfo{
			Name: p.Name, DisplayName: p.DisplayName, Id: idString(p.ID),
			Type: vssv1.ProviderType(p.Type), Version: p.Version, Method: vssv1.ProviderMethod(p.Method),
			CrashConsistent: p.CrashConsistent, Attributes: uint32(p.Attributes), Description: p.Description,
		}
	}
	return out
}

// ProvidersFromProto decodes provider descriptions (never nil).
func ProvidersFromProto(ps []*vssv1.ProviderInfo) ([]provider.Info, error) {
	d := responseDecoder()
	out := make([]provider.Info, len(ps))
	for i, p := range ps {
		out[i] = provider.Info{
			Name: p.GetName(), DisplayName: p.GetDisplayName(), ID: d.uuid("provider.id", p.GetId()),
			Type: provider.Type(p.GetType()), Version: p.GetVersion(), Method: provider.Method(p.GetMethod()),
			CrashConsistent: p.GetCrashConsistent(), Attributes: vss.Attr(p.GetAttributes()), Description: p.GetDescription(),
		}
	}
	return out, d.err
}

// WritersToProto encodes writer states.
func WritersToProto(ws []service.WriterStatus) []*vssv1.WriterStatus {
	out := make([]*vssv1.WriterStatus, len(ws))
	for i, w := range ws {
		out[i] = &vssv1.WriterStatus{
			Name: w.Name, Id: idString(w.ID), InstanceId: idString(w.InstanceID), InstanceName: w.InstanceName,
			State: int32(w.State), StateText: w.StateText, LastError: w.LastError,
			LastHresult: w.LastHResult, LastErrorMessage: w.LastErrorMessage, Kind: w.Kind, OnError: w.OnError,
		}
	}
	return out
}

// WritersFromProto decodes writer states (never nil).
func WritersFromProto(ps []*vssv1.WriterStatus) ([]service.WriterStatus, error) {
	d := responseDecoder()
	out := make([]service.WriterStatus, len(ps))
	for i, p := range ps {
		out[i] = service.WriterStatus{
			Name: p.GetName(), ID: d.uuid("writer.id", p.GetId()), InstanceID: d.uuid("writer.instance_id", p.GetInstanceId()),
			InstanceName: p.GetInstanceName(),
			State:        int(p.GetState()), StateText: p.GetStateText(), LastError: p.GetLastError(),
			LastHResult: p.GetLastHresult(), LastErrorMessage: p.GetLastErrorMessage(), Kind: p.GetKind(), OnError: p.GetOnError(),
		}
	}
	return out, d.err
}

// RevertsToProto encodes reverts in progress.
func RevertsToProto(rs []catalog.Revert) []*vssv1.Revert {
	out := make([]*vssv1.Revert, len(rs))
	for i, r := range rs {
		out[i] = &vssv1.Revert{
			VolumeId: idString(r.VolumeID), VolumePath: r.VolumePath,
			ShadowId: idString(r.ShadowID), ShadowPath: r.ShadowPath,
			Provider: r.Provider, Exclude: cloneStrings(r.Exclude), Started: timestamp(r.Started),
			Done: r.Done, Total: r.Total,
		}
	}
	return out
}

// RevertsFromProto decodes reverts in progress (never nil).
func RevertsFromProto(ps []*vssv1.Revert) ([]catalog.Revert, error) {
	d := responseDecoder()
	out := make([]catalog.Revert, len(ps))
	for i, p := range ps {
		out[i] = catalog.Revert{
			VolumeID: d.uuid("revert.volume_id", p.GetVolumeId()), VolumePath: p.GetVolumePath(),
			ShadowID: d.uuid("revert.shadow_id", p.GetShadowId()), ShadowPath: p.GetShadowPath(),
			Provider: p.GetProvider(), Exclude: cloneStrings(p.GetExclude()), Started: fromTimestamp(p.GetStarted()),
			Done: p.GetDone(), Total: p.GetTotal(),
		}
	}
	return out, d.err
}
