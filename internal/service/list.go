package service

import (
	"context"
	"sort"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// ListShadows lists the shadows a selection names (all, for a volume, one
// shadow, one set), ordered by creation.
func (s *Service) ListShadows(ctx context.Context, sel Selection) ([]catalog.Shadow, error) {
	return s.Select(ctx, Selection{For: sel.For, ShadowID: sel.ShadowID, SetID: sel.SetID})
}

// VolumeInfo is a volume eligible for shadow copies.
type VolumeInfo struct {
	Path     string    `json:"path"`
	ID       uuid.UUID `json:"id"`
	Name     string    `json:"name"`
	FSType   string    `json:"fs_type"`
	Kind     string    `json:"kind"`
	Provider string    `json:"provider"`
	Shadows  int       `json:"shadow_count"`
}

// ListVolumes lists the mounted filesystems that can be shadow copied, and
// the other volumes (subvolumes, directories) that have shadow copies.
func (s *Service) ListVolumes(ctx context.Context) ([]VolumeInfo, error) {
	mounts, err := volume.Mounts()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "mount table")
	}
	shadows, err := s.cat.Shadows()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	count := map[uuid.UUID]int{}
	for _, sh := range shadows {
		count[sh.VolumeID]++
	}
	paths := []string{}
	for _, m := range volume.Eligible(mounts) {
		paths = append(paths, m.MountPoint)
	}
	known, _ := s.cat.Volumes()
	for _, k := range known {
		paths = append(paths, k.Path)
	}
	seen := map[uuid.UUID]bool{}
	var out []VolumeInfo
	for _, p := range paths {
		v, err := volume.ResolveWith(mounts, p)
		if err != nil || seen[v.ID] {
			continue
		}
		seen[v.ID] = true
		info := VolumeInfo{Path: v.Path, ID: v.ID, Name: v.Name(), FSType: v.FSType, Kind: v.Kind.String(), Shadows: count[v.ID]}
		for _, pr := range s.providers {
			if pr.Supports(ctx, v, v) == nil {
				info.Provider = pr.Info().Name
				break
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// ListProviders lists the registered providers.
func (s *Service) ListProviders(ctx context.Context) ([]provider.Info, error) {
	var out []provider.Info
	for _, p := range s.providers {
		out = append(out, p.Info())
	}
	return out, nil
}

// WriterStatus is a writer as "list writers" shows it.
type WriterStatus struct {
	Name         string    `json:"name"`
	ID           uuid.UUID `json:"id"`
	InstanceID   uuid.UUID `json:"instance_id"`
	InstanceName string    `json:"instance_name,omitempty"`
	// State is the VSS_WRITER_STATE number; StateText its vssadmin words.
	State     int    `json:"state"`
	StateText string `json:"state_text"`
	// LastError is what vssadmin prints after "Last error:"; LastHResult
	// and LastErrorMessage say exactly what failed.
	LastError        string `json:"last_error"`
	LastHResult      uint32 `json:"last_hresult"`
	LastErrorMessage string `json:"last_error_message,omitempty"`
	// Kind is built-in, hook or api; OnError the writer's policy.
	Kind    string `json:"kind,omitempty"`
	OnError string `json:"on_error,omitempty"`
}

// Shadow returns one shadow.
func (s *Service) Shadow(ctx context.Context, id uuid.UUID) (catalog.Shadow, error) {
	return s.cat.Shadow(id)
}

// Health counts the journal entries of unfinished work: outside a running
// operation, all are zero.
type Health struct {
	PendingSets int `json:"pending_sets"`
	Deleting    int `json:"deleting"`
	Frozen      int `json:"frozen"`
	Reverts     int `json:"reverts"`
}

// Health reports the unfinished work in the journals.
func (s *Service) Health(ctx context.Context) (Health, error) {
	var h Health
	p, err := s.cat.Pending()
	if err != nil {
		return h, err
	}
	d, err := s.cat.Deleting()
	if err != nil {
		return h, err
	}
	f, err := s.cat.Freezes()
	if err != nil {
		return h, err
	}
	r, err := s.cat.Reverts()
	if err != nil {
		return h, err
	}
	return Health{PendingSets: len(p), Deleting: len(d), Frozen: len(f), Reverts: len(r)}, nil
}
