package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/fsfreeze"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// Recovery counts what a start found and set right.
type Recovery struct {
	Thawed         []string    `json:"thawed,omitempty"`
	RolledBack     []uuid.UUID `json:"rolled_back_sets,omitempty"`
	FinishedDelete []uuid.UUID `json:"finished_deletes,omitempty"`
	Reverted       []string    `json:"completed_reverts,omitempty"`
	Released       []uuid.UUID `json:"released,omitempty"`
	Orphans        []string    `json:"removed_orphans,omitempty"`
	Missing        []uuid.UUID `json:"dropped_missing,omitempty"`
}

// LastRecovery returns what the start of this service set right.
func (s *Service) LastRecovery() Recovery { return s.recovered }

// recover runs at every start, before anything else: it thaws every
// journaled freeze, rolls back every set whose creation did not finish,
// finishes interrupted deletions and reverts, releases the auto-release
// shadows (their requesters are gone), and makes the catalog and the
// storage directories agree.
func (s *Service) recover(ctx context.Context) error {
	var errs []error
	rec := &s.recovered
	freezes, err := s.cat.Freezes()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	for _, f := range freezes {
		if err := fsfreeze.Thaw(f.Path); err != nil {
			errs = append(errs, err)
			continue
		}
		rec.Thawed = append(rec.Thawed, f.Path)
		s.log.Warn("thawed a filesystem a crash left frozen", "path", f.Path, "set", f.SetID)
		errs = append(errs, s.cat.ClearFreeze(f.Path))
	}
	pending, err := s.cat.Pending()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	for _, p := range pending {
		ok := true
		for _, it := range p.Items {
			if err := s.removePath(ctx, it.Provider, it.Path); err != nil {
				errs = append(errs, err)
				ok = false
			}
		}
		if ok {
			errs = append(errs, s.cat.DropPending(p.SetID))
			rec.RolledBack = append(rec.RolledBack, p.SetID)
			s.log.Warn("rolled back a shadow copy set a crash interrupted", "set", p.SetID, "started", p.Started)
		}
	}
	deleting, err := s.cat.Deleting()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	for _, sh := range deleting {
		if err := unexpose(sh); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.removePath(ctx, sh.Provider, sh.ShadowPath); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.cat.FinishDelete(sh.ID))
		rec.FinishedDelete = append(rec.FinishedDelete, sh.ID)
	}
	reverts, err := s.cat.Reverts()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	for _, r := range reverts {
		v, err := volume.Resolve(r.VolumePath)
		if err != nil || v.ID != r.VolumeID {
			s.log.Error("an interrupted revert cannot go on: its volume is not mounted", "volume", r.VolumePath)
			continue
		}
		s.log.Warn("completing a revert a crash interrupted", "volume", r.VolumePath, "shadow", r.ShadowID)
		if err := s.runRevert(ctx, r, v); err != nil {
			errs = append(errs, err)
			continue
		}
		rec.Reverted = append(rec.Reverted, r.VolumePath)
	}
	// Auto-release shadows outlive no service: their sessions are gone.
	shadows, err := s.cat.Shadows()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	var release, keep []catalog.Shadow
	for _, sh := range shadows {
		if sh.Context.AutoRelease() {
			release = append(release, sh)
			rec.Released = append(rec.Released, sh.ID)
		} else {
			keep = append(keep, sh)
		}
	}
	errs = append(errs, s.deleteShadows(ctx, release, "auto-release at start"))
	errs = append(errs, s.sweep(ctx, keep))
	errs = append(errs, s.restoreExposures(keep))
	if err := errors.Join(errs...); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "recovering the state of %s", s.cfg.StateDir)
	}
	return nil
}

// readNames lists a directory's names (none when it does not exist).
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// removePath deletes what a provider may have left at path.
func (s *Service) removePath(ctx context.Context, providerName, path string) error {
	if p, err := s.providerByName(providerName); err == nil {
		return p.Delete(ctx, path)
	}
	return removeAny(path)
}

func removeAny(path string) error {
	if ok, _ := btrfsutil.IsSubvolume(path); ok {
		if err := btrfsutil.DeleteSubvolume(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.RemoveAll(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// sweep makes the storage directories and the catalog (whose shadows are
// given) agree: an entry of a storage directory that no shadow accounts for
// is removed, and a shadow whose data has vanished from a mounted storage
// volume is dropped from the catalog. It runs after the journals have been
// settled, so no set is in progress and no deletion is pending.
func (s *Service) sweep(ctx context.Context, shadows []catalog.Shadow) error {
	mounts, err := volume.Mounts()
	if err != nil {
		return err
	}
	stores, err := s.cat.Storages()
	if err != nil {
		return err
	}
	byID := make(map[uuid.UUID]*catalog.Shadow, len(shadows))
	dirs := map[string]uuid.UUID{} // storage dir → storage volume ID
	byDir := map[string][]*catalog.Shadow{}
	for i := range shadows {
		sh := &shadows[i]
		byID[sh.ID] = sh
		dirs[sh.StoragePath] = sh.StorageVolumeID
		byDir[sh.StoragePath] = append(byDir[sh.StoragePath], sh)
	}
	for _, a := range stores {
		dirs[filepath.Join(a.OnPath, provider.StorageDirName)] = a.On
	}
	var errs []error
	for dir, on := range dirs {
		// Only a storage volume that is mounted where it was says anything
		// about the shadows on it.
		sv, err := volume.ResolveWith(mounts, filepath.Dir(dir))
		if err != nil || sv.ID != on {
			s.log.Warn("shadow storage volume not available; not checked", "storage", dir)
			continue
		}
		names, err := readNames(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		present := make(map[uuid.UUID]bool, len(names))
		for _, name := range names {
			id, err := uuid.Parse(name)
			if err == nil {
				if sh, ok := byID[id]; ok && sh.StoragePath == dir {
					present[id] = true
					continue
				}
			} else if !strings.HasPrefix(name, ".vss-tmp-") {
				continue // not ours
			}
			p := dir + "/" + name
			if err := removeAny(p); err != nil {
				errs = append(errs, err)
				continue
			}
			s.recovered.Orphans = append(s.recovered.Orphans, p)
			s.log.Warn("removed an orphan shadow copy", "path", p)
		}
		var missing []*catalog.Shadow
		for _, sh := range byDir[dir] {
			if !present[sh.ID] {
				missing = append(missing, sh)
			}
		}
		if len(missing) > 0 {
			ids := make([]uuid.UUID, len(missing))
			for i, sh := range missing {
				ids[i] = sh.ID
				s.log.Error("a shadow copy's data has vanished; dropping it from the catalog", "shadow", sh.ID, "path", sh.ShadowPath)
				s.recovered.Missing = append(s.recovered.Missing, sh.ID)
			}
			if _, err := s.cat.BeginDelete(ids); err != nil {
				errs = append(errs, err)
				continue
			}
			for _, id := range ids {
				errs = append(errs, s.cat.FinishDelete(id))
			}
		}
	}
	return errors.Join(errs...)
}
