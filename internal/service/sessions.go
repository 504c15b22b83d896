package service

import (
	"context"
	"sync"

	"github.com/linuxvss/vss/internal/catalog"
)

// sessions tracks the live requester sessions, which own auto-release
// shadows.
type sessions struct {
	mu   sync.Mutex
	live map[string]bool
}

// BeginSession registers a requester session.
func (s *Service) BeginSession(id string) {
	s.sess.mu.Lock()
	defer s.sess.mu.Unlock()
	if s.sess.live == nil {
		s.sess.live = map[string]bool{}
	}
	s.sess.live[id] = true
}

// EndSession ends a requester session and releases its auto-release shadows.
func (s *Service) EndSession(ctx context.Context, id string) error {
	s.sess.mu.Lock()
	delete(s.sess.live, id)
	s.sess.mu.Unlock()
	// Under the lock of the deletes: from here on, an eviction or another
	// delete may take the session's shadows, and one taken between the
	// listing and the delete would fail the whole release.
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.cat.Shadows()
	if err != nil {
		return err
	}
	var mine []catalog.Shadow
	for _, sh := range all {
		if sh.Owner == id && sh.Context.AutoRelease() {
			mine = append(mine, sh)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	err = s.deleteShadows(ctx, mine, "auto-release")
	s.auditf(ctx, "auto-release", map[string]any{"session": id, "deleted": len(mine)}, err)
	return err
}

func (s *Service) sessionAlive(id string) bool {
	s.sess.mu.Lock()
	defer s.sess.mu.Unlock()
	return s.sess.live[id]
}
