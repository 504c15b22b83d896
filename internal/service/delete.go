package service

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// PointDelete is the fault point between the catalog's deletion journal and
// the provider's delete; it is reached again before each retry of a delete
// that failed (an error there is the provider's delete failing).
const PointDelete = "delete"

// removeAttempts is how many times a journaled delete is tried before the
// service gives up until its next start; retryPause is the pause before
// the first retry (doubled before each next one).
const (
	removeAttempts = 3
	retryPause     = 100 * time.Millisecond
)

// Selection picks shadows as vssadmin and DiskShadow do.
type Selection struct {
	For      string    // shadows of this volume
	ShadowID uuid.UUID // one shadow
	SetID    uuid.UUID // one set
	Oldest   bool      // the oldest shadow of For
	All      bool      // all shadows (of For, if given)
}

// Select returns the shadows a selection names, without changing anything.
// A named shadow or set that does not exist is VSS_E_OBJECT_NOT_FOUND.
func (s *Service) Select(ctx context.Context, sel Selection) ([]catalog.Shadow, error) {
	all, err := s.cat.Shadows()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	var forID uuid.UUID
	var forPath string
	if sel.For != "" {
		forPath = sel.For
		if v, err := volume.Resolve(sel.For); err == nil {
			forID, forPath = v.ID, v.Path
		} else if vsserr.CodeOf(err) != vsserr.VSS_E_OBJECT_NOT_FOUND {
			return nil, err
		}
	}
	if sel.For == "" && sel.ShadowID == uuid.Nil && sel.SetID == uuid.Nil {
		return all, nil // everything, as read
	}
	var out []catalog.Shadow
	for _, sh := range all {
		if sel.For != "" && sh.VolumeID != forID && sh.VolumePath != forPath {
			continue
		}
		if sel.ShadowID != uuid.Nil && sh.ID != sel.ShadowID {
			continue
		}
		if sel.SetID != uuid.Nil && sh.SetID != sel.SetID {
			continue
		}
		out = append(out, sh)
	}
	switch {
	case sel.ShadowID != uuid.Nil && len(out) == 0:
		return nil, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy with ID {%s}%s", sel.ShadowID, forSuffix(sel.For))
	case sel.SetID != uuid.Nil && len(out) == 0:
		return nil, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy set with ID {%s}%s", sel.SetID, forSuffix(sel.For))
	case sel.For != "" && forID == uuid.Nil && len(out) == 0:
		return nil, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "volume %s does not exist and has no shadow copies", sel.For)
	}
	if sel.Oldest && len(out) > 1 {
		out = out[:1]
	}
	return out, nil
}

func forSuffix(f string) string {
	if f == "" {
		return ""
	}
	return " for " + f
}

// DeleteShadows deletes the given shadows.
func (s *Service) DeleteShadows(ctx context.Context, ids []uuid.UUID) (n int, err error) {
	defer func() { s.auditf(ctx, "delete-shadows", map[string]any{"ids": ids, "deleted": n}, err) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	var shadows []catalog.Shadow
	for _, id := range ids {
		sh, err := s.cat.Shadow(id)
		if err != nil {
			return 0, err
		}
		shadows = append(shadows, sh)
	}
	if err := s.deleteShadows(ctx, shadows, "delete"); err != nil {
		return 0, err
	}
	return len(shadows), nil
}

// deleteShadows deletes shadows: out of the catalog into the deletion
// journal (one transaction), then from disk, then out of the journal. Once
// journaled, a delete runs to its end: a removal that fails is tried again
// at once (a shadow out of the catalog but still on disk would be an
// orphan, its space lost), and one that keeps failing, or a crash, leaves
// the journal for the next start to finish.
func (s *Service) deleteShadows(ctx context.Context, shadows []catalog.Shadow, why string) error {
	if len(shadows) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(shadows))
	for i, sh := range shadows {
		ids[i] = sh.ID
	}
	moved, err := s.cat.BeginDelete(ids)
	if err != nil {
		// Still in the catalog, and on disk: auto-release shadows of an
		// ended session must not stay so until the next start.
		for _, sh := range shadows {
			if s.endedAutoRelease(sh) {
				s.releaseLater()
				break
			}
		}
		return err
	}
	var errs []error
	for _, sh := range moved {
		if err := s.removeJournaled(ctx, sh); err != nil {
			errs = append(errs, vsserr.Wrap(vsserr.CodeOf(err), err, "shadow copy {%s} is out of the catalog but its deletion did not finish; the next start of the service finishes it", sh.ID))
			continue
		}
		if err := s.cat.FinishDelete(sh.ID); err != nil {
			errs = append(errs, err)
		}
		s.log.Info("deleted shadow copy", "shadow", sh.ID, "volume", sh.VolumePath, "reason", why)
	}
	return errors.Join(errs...)
}

// removeJournaled removes the data of a shadow in the deletion journal,
// trying again when it fails. The fault point comes before every attempt.
func (s *Service) removeJournaled(ctx context.Context, sh catalog.Shadow) error {
	pause := retryPause
	for attempt := 1; ; attempt++ {
		err := s.fault(ctx, PointDelete)
		if err == nil {
			err = s.removeShadow(ctx, sh)
		}
		if err == nil || attempt == removeAttempts || ctx.Err() != nil {
			return err
		}
		s.log.Warn("deleting a shadow copy failed; trying again", "shadow", sh.ID, "attempt", attempt, "err", err)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
		pause *= 2
	}
}

// removeShadow has the shadow's provider delete it.
func (s *Service) removeShadow(ctx context.Context, sh catalog.Shadow) error {
	if err := unexpose(sh); err != nil {
		return err
	}
	p, err := s.providerByName(sh.Provider)
	if err != nil {
		return err
	}
	if err := p.Delete(ctx, sh.ShadowPath); err != nil {
		return coordinator.ProviderError(err, sh.Provider, "delete "+sh.ShadowPath)
	}
	return nil
}
