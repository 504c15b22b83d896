package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
)

// MaxVolumesPerSet is VSS's limit of volumes in one shadow copy set.
const MaxVolumesPerSet = 64

// CreateRequest asks for one shadow copy set.
type CreateRequest struct {
	Volumes []string `json:"volumes"`
	// Provider forces a provider (name or GUID); "" chooses by volume type.
	Provider string `json:"provider,omitempty"`
	// Context of the shadows; vssadmin makes ClientAccessible ones.
	Context vss.Context `json:"context"`
	// AutoRetry waits this long for another set creation to end.
	AutoRetry time.Duration `json:"autoretry,omitempty"`
	// SetID and ShadowIDs, when set, are the IDs a requester session
	// handed out (StartSnapshotSet, AddToSnapshotSet), one per volume.
	SetID     uuid.UUID   `json:"set_id,omitzero"`
	ShadowIDs []uuid.UUID `json:"shadow_ids,omitempty"`
	// Participants are the writers a requester session chose; nil selects
	// them by volume.
	Participants []*writers.Participant `json:"-"`
	// Writers tells the writers about the backup (its type, the Backup
	// Components Document) and which to leave out.
	Writers writers.Set `json:"-"`
}

// CreateResult is a made set.
type CreateResult struct {
	Set     catalog.Set
	Shadows []catalog.Shadow
	Timings coordinator.Timings
	Stats   []provider.Stats
	// Evicted are the older shadows deleted to make room.
	Evicted []catalog.Shadow
	// NotFrozen says, per mount point, why a filesystem a provider asked to
	// freeze was not frozen (the shadow is then writer-consistent only).
	NotFrozen map[string]string
	// Writers are the writers that took part, with their state after the
	// set; Dropped names those that failed and were left out under a
	// continue or crash-consistent policy.
	Writers []WriterStatus
	Dropped []string
}

// CreateShadowSet makes a shadow copy set of the given volumes.
func (s *Service) CreateShadowSet(ctx context.Context, req CreateRequest) (res *CreateResult, err error) {
	start := time.Now()
	defer func() { s.auditf(ctx, "create-shadow-set", req, err) }()
	if len(req.Volumes) == 0 {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "no volume given")
	}
	if len(req.Volumes) > MaxVolumesPerSet {
		return nil, vsserr.New(vsserr.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, "%d volumes given; a set holds at most %d", len(req.Volumes), MaxVolumesPerSet)
	}
	if !req.Context.Valid() {
		return nil, vsserr.New(vsserr.VSS_E_UNSUPPORTED_CONTEXT, "context 0x%x cannot be used to create shadow copies", uint32(req.Context))
	}
	release, err := s.coord.Acquire(ctx, req.AutoRetry)
	if err != nil {
		return nil, err
	}
	defer release()
	pl, err := s.plan(ctx, req)
	defer func() { pl.undoStorage(err) }()
	if err != nil {
		return &CreateResult{Evicted: pl.evicted}, err
	}
	plan, evicted := pl.Plan, pl.evicted
	r, err := s.coord.DoSnapshotSet(ctx, plan)
	if err != nil {
		return &CreateResult{Evicted: evicted, Writers: listing(participantStatus(pl.parts))}, err
	}

	res = &CreateResult{Set: r.Set, Shadows: r.Shadows, Timings: r.Timings, Stats: r.Stats, Evicted: evicted, NotFrozen: r.NotFrozen}
	for _, p := range pl.parts {
		if p.Dropped() {
			res.Dropped = append(res.Dropped, p.Name())
		}
	}
	if req.Participants == nil && len(pl.parts) > 0 {
		// No requester session follows: the writers' backup ends here.
		s.shutdownWriters(ctx, pl.parts, &r.Set)
	}
	res.Writers = listing(participantStatus(pl.parts))
	res.Timings.Total = time.Since(start) // with the planning and the making of room
	return res, nil
}

// planned is a plan with what making it changed on the way.
type planned struct {
	coordinator.Plan
	evicted []catalog.Shadow
	made    []string // storage directories this plan created
	parts   []*writers.Participant
}

// undoStorage removes the storage directories the plan created, if the set
// failed and they are still empty, so that a failed request leaves nothing.
func (p *planned) undoStorage(failed error) {
	if failed == nil {
		return
	}
	for _, d := range p.made {
		if ok, _ := btrfsutil.IsSubvolume(d); ok {
			if ents, err := os.ReadDir(d); err == nil && len(ents) == 0 {
				_ = btrfsutil.DeleteSubvolume(d)
			}
			continue
		}
		_ = os.Remove(d) // fails, as it should, when not empty
	}
}

// plan resolves the volumes of req, picks their providers and storage, and
// makes room in their storage.
func (s *Service) plan(ctx context.Context, req CreateRequest) (*planned, error) {
	pl := &planned{Plan: coordinator.Plan{SetID: req.SetID, Context: req.Context, Owner: CallerOf(ctx).Session}}
	if pl.SetID == uuid.Nil {
		pl.SetID = uuid.New()
	}
	if req.ShadowIDs != nil && len(req.ShadowIDs) != len(req.Volumes) {
		return pl, vsserr.New(vsserr.E_INVALIDARG, "%d shadow IDs for %d volumes", len(req.ShadowIDs), len(req.Volumes))
	}
	plan := &pl.Plan
	if req.Context.Writers() && s.opts.Writers != nil {
		plan.Writers = s.opts.Writers()
	}
	mounts, err := volume.Mounts()
	if err != nil {
		return pl, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "reading the mount table")
	}
	seen := map[uuid.UUID]string{}
	for _, path := range req.Volumes {
		v, err := volume.ResolveWith(mounts, path)
		if err != nil {
			return pl, err
		}
		if prev, ok := seen[v.ID]; ok {
			return pl, vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "volume %s is in the set twice (also as %s)", v.Path, prev)
		}
		seen[v.ID] = path
		sv, implicit, err := s.storageVolume(mounts, v)
		if err != nil {
			return pl, err
		}
		if implicit != nil {
			// Recorded with the set, in the same transaction.
			plan.Storages = append(plan.Storages, *implicit)
		}
		p, err := s.chooseProvider(ctx, req.Provider, v, sv)
		if err != nil {
			return pl, err
		}
		id := uuid.New()
		if req.ShadowIDs != nil {
			id = req.ShadowIDs[len(plan.Items)]
		}
		plan.Items = append(plan.Items, coordinator.Item{
			ShadowID: id, Volume: v, Provider: p,
			Storage: filepath.Join(sv.Path, provider.StorageDirName), StorageVolume: sv,
		})
	}
	if req.Context.Writers() {
		pl.parts = req.Participants
		if pl.parts == nil {
			s.retryConfigured(ctx)
			var paths []string
			for _, it := range plan.Items {
				paths = append(paths, it.Volume.Path)
			}
			pl.parts = s.writers.Select(paths, req.Writers)
		}
		for _, p := range pl.parts {
			plan.Writers = append(plan.Writers, p)
		}
	}
	// A file-level provider walks everything below its volume: another
	// volume of the set below it (not a mount of its own) would be taken
	// twice.
	for _, a := range plan.Items {
		for _, b := range plan.Items {
			if a.Volume.ID == b.Volume.ID || !volume.Within(b.Volume.Path, a.Volume.Path) {
				continue
			}
			if a.Provider.Info().Method != provider.RedirectOnWrite && b.Volume.Kind != volume.KindMount {
				return pl, vsserr.New(vsserr.VSS_E_NESTED_VOLUME_LIMIT, "%s lies inside %s, which the %s provider copies whole", b.Volume.Path, a.Volume.Path, a.Provider.Info().Name)
			}
		}
	}
	// Storage directories are never part of a shadow.
	stores, err := s.cat.Storages()
	if err != nil {
		return pl, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	var dirs []string
	for _, it := range plan.Items {
		dirs = append(dirs, it.Storage)
	}
	for _, a := range stores {
		dirs = append(dirs, filepath.Join(a.OnPath, provider.StorageDirName))
	}
	for i := range plan.Items {
		it := &plan.Items[i]
		it.Exclude = []string{filepath.Join(it.Volume.Path, provider.StorageDirName)}
		for _, d := range dirs {
			if volume.Within(d, it.Volume.Path) && d != it.Exclude[0] {
				it.Exclude = append(it.Exclude, d)
			}
		}
		if _, err := os.Lstat(it.Storage); errors.Is(err, os.ErrNotExist) {
			pl.made = append(pl.made, it.Storage)
		}
		if err := it.Provider.InitStorage(ctx, it.Storage); err != nil {
			return pl, coordinator.ProviderError(err, it.Provider.Info().Name, "storage "+it.Storage)
		}
	}
	// Make room: the oldest shadows go first.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range plan.Items {
		gone, err := s.makeRoom(ctx, it)
		pl.evicted = append(pl.evicted, gone...)
		if err != nil {
			return pl, err
		}
	}
	return pl, nil
}

// chooseProvider returns the forced provider if it supports the volume, or
// the first provider that does.
func (s *Service) chooseProvider(ctx context.Context, name string, v, sv *volume.Volume) (provider.Provider, error) {
	if name != "" {
		p, err := s.providerByName(name)
		if err != nil {
			return nil, err
		}
		if err := p.Supports(ctx, v, sv); err != nil {
			return nil, err
		}
		return p, nil
	}
	var last error
	for _, p := range s.providers {
		if err := p.Supports(ctx, v, sv); err == nil {
			return p, nil
		} else {
			last = err
		}
	}
	return nil, vsserr.Wrap(vsserr.VSS_E_VOLUME_NOT_SUPPORTED, last, "no provider supports %s", v.Path)
}
