package service

import (
	"context"
	"sync"
	"time"

	"github.com/linuxvss/vss/internal/catalog"
)

// The background release of auto-release shadows whose requester session
// has ended but whose release failed (the state directory was full, a
// provider failed): they must not stay in the catalog, and on disk, until
// the next start. The retries back off from releasePause to
// releaseMaxPause and go on until the release succeeds or the service
// closes.
const (
	releasePause    = 250 * time.Millisecond
	releaseMaxPause = 30 * time.Second
)

// background is the service's background work, stopped by Close.
type background struct {
	once      sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	releasing bool // a release retry is running
}

func (b *background) stopped() chan struct{} {
	b.once.Do(func() { b.stop = make(chan struct{}) })
	return b.stop
}

// close stops the background work and waits for it (it may be called
// more than once).
func (b *background) close() {
	ch := b.stopped()
	b.mu.Lock()
	select {
	case <-ch:
	default:
		close(ch)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// endedAutoRelease reports whether sh is an auto-release shadow whose
// requester session has ended (shadows made without a session, in
// embedded mode, have no owner and are released when the process ends).
func (s *Service) endedAutoRelease(sh catalog.Shadow) bool {
	return sh.Context.AutoRelease() && sh.Owner != "" && !s.sessionAlive(sh.Owner)
}

// releaseLater starts the background release of the auto-release shadows
// of ended sessions, unless it runs already.
func (s *Service) releaseLater() {
	b := &s.bg
	stop := b.stopped()
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-stop:
		return // closing: the next start releases them
	default:
	}
	if b.releasing {
		return
	}
	b.releasing = true
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		pause := releasePause
		for {
			select {
			case <-stop:
				return
			case <-time.After(pause):
			}
			err := s.releaseEnded(context.Background())
			b.mu.Lock()
			if err == nil {
				b.releasing = false
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			s.log.Warn("releasing the auto-release shadow copies of ended sessions failed; trying again", "in", pause, "err", err)
			pause = min(pause*2, releaseMaxPause)
		}
	}()
}

// releaseEnded deletes the auto-release shadows whose session has ended.
func (s *Service) releaseEnded(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.cat.Shadows()
	if err != nil {
		return err
	}
	var gone []catalog.Shadow
	for _, sh := range all {
		if s.endedAutoRelease(sh) {
			gone = append(gone, sh)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	err = s.deleteShadows(ctx, gone, "auto-release (retried)")
	s.auditf(ctx, "auto-release", map[string]any{"deleted": len(gone), "retried": true}, err)
	if err == nil {
		s.log.Info("released the auto-release shadow copies of ended sessions", "count", len(gone))
	}
	return err
}
