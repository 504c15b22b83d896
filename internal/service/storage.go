package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// association returns the storage association of volume v, if any.
func (s *Service) association(v *volume.Volume) (catalog.Storage, bool, error) {
	all, err := s.cat.Storages()
	if err != nil {
		return catalog.Storage{}, false, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	for _, a := range all {
		if a.For == v.ID {
			return a, true, nil
		}
	}
	return catalog.Storage{}, false, nil
}

// storageVolume returns the volume that holds v's shadows: the one of its
// association, or v itself. In that case implicit is the unbounded
// association on itself to record once a shadow exists (Windows makes such
// a default association at the first shadow).
func (s *Service) storageVolume(mounts []volume.Mount, v *volume.Volume) (sv *volume.Volume, implicit *catalog.Storage, err error) {
	a, ok, err := s.association(v)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return v, &catalog.Storage{For: v.ID, ForPath: v.Path, On: v.ID, OnPath: v.Path, Kind: catalog.Unbounded}, nil
	}
	sv, err = volume.ResolveWith(mounts, a.OnPath)
	if err != nil || sv.ID != a.On {
		return nil, nil, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "the shadow storage volume of %s (%s) is not available", v.Path, a.OnPath)
	}
	return sv, nil, nil
}

// limit returns an association's limit in bytes (false: unbounded).
func limit(a catalog.Storage) (uint64, bool) {
	switch a.Kind {
	case catalog.Bytes:
		return a.MaxValue, true
	case catalog.Percent:
		total, _, err := volume.Space(a.OnPath)
		if err != nil {
			return 0, true
		}
		return total * a.MaxValue / 10000, true // MaxValue is in hundredths of a percent
	}
	return 0, false
}

// shadowsOn returns the shadows of volume id kept on storage volume on
// (any storage when on is uuid.Nil), oldest first.
func (s *Service) shadowsOn(id, on uuid.UUID) ([]catalog.Shadow, error) {
	all, err := s.cat.Shadows()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	var out []catalog.Shadow
	for _, sh := range all {
		if sh.VolumeID == id && (on == uuid.Nil || sh.StorageVolumeID == on) {
			out = append(out, sh)
		}
	}
	return out, nil
}

// usage measures what the shadows use on their storage, per provider.
func (s *Service) usage(ctx context.Context, v *volume.Volume, shadows []catalog.Shadow) (int64, error) {
	byProvider := map[string][]string{}
	for _, sh := range shadows {
		byProvider[sh.Provider] = append(byProvider[sh.Provider], sh.ShadowPath)
	}
	var total int64
	for name, paths := range byProvider {
		p, err := s.providerByName(name)
		if err != nil {
			return 0, err
		}
		n, err := p.Usage(ctx, v, paths)
		if err != nil {
			return 0, coordinator.ProviderError(err, name, "usage of "+v.Path)
		}
		total += n
	}
	return total, nil
}

// deletable reports whether eviction may take a shadow: not one that a live
// requester session still holds.
func (s *Service) deletable(sh catalog.Shadow) bool {
	return sh.Owner == "" || !s.sessionAlive(sh.Owner)
}

// PointEvict is the fault point after an eviction: the oldest shadows of a
// volume have been deleted to make room for a new set (the maximum count or
// the storage limit), and the set is not made yet.
const PointEvict = "evict"

// makeRoom deletes the oldest shadows of an item's volume until one more
// fits the maximum count and, for a complete copy, its estimated size fits
// the storage limit.
func (s *Service) makeRoom(ctx context.Context, it coordinator.Item) ([]catalog.Shadow, error) {
	var evicted []catalog.Shadow
	all, err := s.shadowsOn(it.Volume.ID, uuid.Nil)
	if err != nil {
		return nil, err
	}
	max := s.cfg.MaxShadowCopies
	for len(all)+1 > max {
		i := oldestDeletable(s, all)
		if i < 0 {
			return evicted, vsserr.New(vsserr.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, "%s has %d shadow copies (the maximum is %d) and none of them may be deleted", it.Volume.Path, len(all), max)
		}
		if err := s.deleteShadows(ctx, all[i:i+1], "evict"); err != nil {
			return evicted, err
		}
		evicted = append(evicted, all[i])
		all = append(all[:i:i], all[i+1:]...)
		if err := s.fault(ctx, PointEvict); err != nil {
			return evicted, err
		}
	}
	a, ok, err := s.association(it.Volume)
	if err != nil || !ok {
		return evicted, err
	}
	if _, limited := limit(a); !limited {
		return evicted, nil
	}
	var extra int64
	if it.Provider.Info().Method == provider.CompleteCopy {
		extra, err = estimateCopy(ctx, it)
		if err != nil {
			return evicted, err
		}
	}
	gone, err := s.fit(ctx, a, it.Volume, extra)
	evicted = append(evicted, gone...)
	if err == nil && len(gone) > 0 {
		err = s.fault(ctx, PointEvict)
	}
	return evicted, err
}

func oldestDeletable(s *Service, shadows []catalog.Shadow) int {
	for i, sh := range shadows {
		if s.deletable(sh) {
			return i
		}
	}
	return -1
}

// fit deletes the oldest shadows of association a until their usage plus
// extra is within its limit.
func (s *Service) fit(ctx context.Context, a catalog.Storage, v *volume.Volume, extra int64) ([]catalog.Shadow, error) {
	lim, limited := limit(a)
	if !limited {
		return nil, nil
	}
	var evicted []catalog.Shadow
	for {
		shadows, err := s.shadowsOn(a.For, a.On)
		if err != nil {
			return evicted, err
		}
		used, err := s.usage(ctx, v, shadows)
		if err != nil {
			return evicted, err
		}
		if uint64(used+extra) <= lim {
			return evicted, nil
		}
		i := oldestDeletable(s, shadows)
		if i < 0 {
			return evicted, vsserr.New(vsserr.VSS_E_INSUFFICIENT_STORAGE, "the shadow storage of %s on %s holds %s and needs %s more, beyond its maximum of %s, and no shadow copy can be deleted to make room",
				a.ForPath, a.OnPath, config.FormatBytes(uint64(used)), config.FormatBytes(uint64(extra)), config.FormatBytes(lim))
		}
		if err := s.deleteShadows(ctx, shadows[i:i+1], "evict"); err != nil {
			return evicted, err
		}
		evicted = append(evicted, shadows[i])
		s.log.Info("deleted the oldest shadow copy to stay within the shadow storage limit", "shadow", shadows[i].ID, "volume", a.ForPath)
	}
}

// estimateCopy estimates the storage a complete copy of the item's volume
// takes: its allocated bytes.
func estimateCopy(ctx context.Context, it coordinator.Item) (int64, error) {
	wo, err := provider.WalkOptions(it.Volume.Path, it.Exclude)
	if err != nil {
		return 0, err
	}
	entries, err := fsutil.Walk(ctx, it.Volume.Path, wo)
	if err != nil {
		return 0, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "measuring %s", it.Volume.Path)
	}
	var n int64
	for i := range entries {
		n += entries[i].Stat.Blocks * 512
	}
	return n, nil
}

// StorageInfo is a storage association with its measured usage.
type StorageInfo struct {
	catalog.Storage
	// Used is what the shadows use, measured from the filesystem (-1 when
	// the volume is not available to measure).
	Used int64 `json:"used_bytes"`
	// Max is the limit in bytes (0 when unbounded).
	Max uint64 `json:"max_bytes"`
	// MaxSpec is the limit as given ("UNBOUNDED", "20%", "300 MB").
	MaxSpec string `json:"max"`
	// OnTotal is the size of the storage volume.
	OnTotal uint64 `json:"on_volume_bytes"`
	// Shadows is how many shadows the association holds.
	Shadows int `json:"shadow_count"`
}

func maxSpec(a catalog.Storage) string {
	switch a.Kind {
	case catalog.Bytes:
		return config.MaxSize{Bytes: a.MaxValue}.String()
	case catalog.Percent:
		return config.MaxSize{Percent: float64(a.MaxValue) / 100}.String()
	}
	return "UNBOUNDED"
}

func toRecord(forV, onV *volume.Volume, m config.MaxSize) catalog.Storage {
	a := catalog.Storage{For: forV.ID, ForPath: forV.Path, On: onV.ID, OnPath: onV.Path}
	switch {
	case m.Unbounded:
		a.Kind = catalog.Unbounded
	case m.Percent > 0:
		a.Kind, a.MaxValue = catalog.Percent, uint64(m.Percent*100+0.5)
	default:
		a.Kind, a.MaxValue = catalog.Bytes, m.Bytes
	}
	return a
}

// AddShadowStorage associates the shadows of forPath with storage on onPath.
func (s *Service) AddShadowStorage(ctx context.Context, forPath, onPath string, max config.MaxSize) (err error) {
	defer func() {
		s.auditf(ctx, "add-shadowstorage", map[string]string{"for": forPath, "on": onPath, "maxsize": max.String()}, err)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	forV, onV, err := s.resolvePair(ctx, forPath, onPath)
	if err != nil {
		return err
	}
	if a, ok, err := s.association(forV); err != nil {
		return err
	} else if ok {
		shadows, err := s.shadowsOn(a.For, a.On)
		if err != nil {
			return err
		}
		// An association made implicitly, with no shadow and no limit yet,
		// can be replaced; any other must be deleted or resized first.
		if !(a.Kind == catalog.Unbounded && a.On == a.For && len(shadows) == 0) {
			return vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "%s already has a shadow storage association on %s; resize it or delete it first", forV.Path, a.OnPath)
		}
		if err := s.cat.DeleteStorage(a.For, a.On); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
		}
	}
	return s.cat.PutStorage(toRecord(forV, onV, max))
}

// resolvePair resolves an association's volumes and checks that some
// provider can keep forV's shadows on onV.
func (s *Service) resolvePair(ctx context.Context, forPath, onPath string) (*volume.Volume, *volume.Volume, error) {
	forV, err := volume.Resolve(forPath)
	if err != nil {
		return nil, nil, err
	}
	onV, err := volume.Resolve(onPath)
	if err != nil {
		return nil, nil, err
	}
	var reasons []error
	for _, p := range s.providers {
		if err := p.Supports(ctx, forV, onV); err == nil {
			return forV, onV, nil
		} else {
			reasons = append(reasons, err)
		}
	}
	return nil, nil, vsserr.Wrap(vsserr.VSS_E_VOLUME_NOT_SUPPORTED, errors.Join(reasons...), "no provider can keep the shadow copies of %s on %s", forV.Path, onV.Path)
}

// ResizeShadowStorage changes an association's limit; shadows that no longer
// fit are deleted, oldest first (as Windows warns, copies may disappear).
func (s *Service) ResizeShadowStorage(ctx context.Context, forPath, onPath string, max config.MaxSize) (evicted []catalog.Shadow, err error) {
	defer func() {
		s.auditf(ctx, "resize-shadowstorage", map[string]any{"for": forPath, "on": onPath, "maxsize": max.String(), "evicted": len(evicted)}, err)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	as, err := s.existingAssociations(forPath, onPath)
	if err != nil {
		return nil, err
	}
	a := as[0] // a volume has one association
	forV, err := volume.Resolve(a.ForPath)
	if err != nil {
		return nil, err
	}
	onV, err := volume.Resolve(a.OnPath)
	if err != nil {
		return nil, err
	}
	na := toRecord(forV, onV, max)
	if err := s.cat.PutStorage(na); err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	return s.fit(ctx, na, forV, 0)
}

// ListShadowStorage lists associations, filtered by the volume they are for
// or the volume they are on (at most one of the two).
func (s *Service) ListShadowStorage(ctx context.Context, forPath, onPath string) ([]StorageInfo, error) {
	if forPath != "" && onPath != "" {
		return nil, vsserr.New(vsserr.E_INVALIDARG, "/for and /on cannot be given together")
	}
	var forID, onID uuid.UUID
	if forPath != "" {
		v, err := volume.Resolve(forPath)
		if err != nil {
			return nil, err
		}
		forID = v.ID
	}
	if onPath != "" {
		v, err := volume.Resolve(onPath)
		if err != nil {
			return nil, err
		}
		onID = v.ID
	}
	all, err := s.cat.Storages()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	var out []StorageInfo
	for _, a := range all {
		if (forID != uuid.Nil && a.For != forID) || (onID != uuid.Nil && a.On != onID) {
			continue
		}
		info := StorageInfo{Storage: a, Used: -1, MaxSpec: maxSpec(a)}
		info.Max, _ = limit(a)
		info.OnTotal, _, _ = volume.Space(a.OnPath)
		shadows, err := s.shadowsOn(a.For, a.On)
		if err != nil {
			return nil, err
		}
		info.Shadows = len(shadows)
		if v, err := volume.Resolve(a.ForPath); err == nil && v.ID == a.For {
			if n, err := s.usage(ctx, v, shadows); err == nil {
				info.Used = n
			} else {
				s.log.Warn("measuring shadow storage", "for", a.ForPath, "err", err)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// StorageShadows returns the shadows an association holds (what deleting it
// deletes).
func (s *Service) StorageShadows(ctx context.Context, forPath, onPath string) ([]catalog.Shadow, error) {
	as, err := s.associations(forPath, onPath)
	if err != nil {
		return nil, err
	}
	var out []catalog.Shadow
	for _, a := range as {
		sh, err := s.shadowsOn(a.For, a.On)
		if err != nil {
			return nil, err
		}
		out = append(out, sh...)
	}
	return out, nil
}

// associations returns the associations for forPath (on onPath, if given).
// A volume that is not mounted any more is matched by its recorded path, so
// that its association can still be deleted.
func (s *Service) associations(forPath, onPath string) ([]catalog.Storage, error) {
	all, err := s.cat.Storages()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	forV, ferr := volume.Resolve(forPath)
	var onV *volume.Volume
	if onPath != "" {
		onV, _ = volume.Resolve(onPath)
	}
	var out []catalog.Storage
	for _, a := range all {
		match := (ferr == nil && a.For == forV.ID) || (ferr != nil && a.ForPath == filepath.Clean(forPath))
		if match && onPath != "" {
			match = (onV != nil && a.On == onV.ID) || a.OnPath == filepath.Clean(onPath)
		}
		if match {
			out = append(out, a)
		}
	}
	return out, nil
}

// existingAssociations is associations, with VSS_E_OBJECT_NOT_FOUND when
// there is none.
func (s *Service) existingAssociations(forPath, onPath string) ([]catalog.Storage, error) {
	as, err := s.associations(forPath, onPath)
	if err == nil && len(as) == 0 {
		on := ""
		if onPath != "" {
			on = " on " + onPath
		}
		err = vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "%s has no shadow storage association%s", forPath, on)
	}
	return as, err
}

// DeleteShadowStorage deletes the associations of forPath (on onPath, or
// all), with every shadow they hold.
func (s *Service) DeleteShadowStorage(ctx context.Context, forPath, onPath string) (deleted []catalog.Shadow, err error) {
	defer func() {
		s.auditf(ctx, "delete-shadowstorage", map[string]any{"for": forPath, "on": onPath, "deleted": len(deleted)}, err)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	as, err := s.existingAssociations(forPath, onPath)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		shadows, err := s.shadowsOn(a.For, a.On)
		if err != nil {
			return deleted, err
		}
		if err := s.deleteShadows(ctx, shadows, "delete-shadowstorage"); err != nil {
			return deleted, err
		}
		deleted = append(deleted, shadows...)
		if err := s.cat.DeleteStorage(a.For, a.On); err != nil {
			return deleted, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
		}
		// Leave an empty storage directory behind only if removing fails.
		_ = os.Remove(filepath.Join(a.OnPath, provider.StorageDirName))
	}
	return deleted, nil
}

// EnforceLimits deletes the oldest shadows of every association that has
// grown past its limit (copy-on-write shadows grow as their volume changes).
func (s *Service) EnforceLimits(ctx context.Context) ([]catalog.Shadow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.cat.Storages()
	if err != nil {
		return nil, err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ForPath < all[j].ForPath })
	var evicted []catalog.Shadow
	var errs []error
	for _, a := range all {
		if _, limited := limit(a); !limited {
			continue
		}
		v, err := volume.Resolve(a.ForPath)
		if err != nil || v.ID != a.For {
			continue
		}
		gone, err := s.fit(ctx, a, v, 0)
		evicted = append(evicted, gone...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(evicted) > 0 {
		s.auditf(ctx, "evict", map[string]int{"deleted": len(evicted)}, errors.Join(errs...))
	}
	return evicted, errors.Join(errs...)
}
