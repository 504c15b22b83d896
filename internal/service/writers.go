package service

import (
	"context"
	"fmt"
	"time"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// WriterSource builds writers from the configuration: the built-in
// writers, the hook writers. Errors name the writer that could not be
// built; the others are still registered.
type WriterSource func(ctx context.Context, cfg config.Config) ([]writers.Registration, []error)

// Writers returns the service's writer registry (the API registers its
// writers there).
func (s *Service) Writers() *writers.Registry { return s.writers }

// writerTimeouts reads the configured per-event limits.
func writerTimeouts(cfg config.Config) (map[writers.Event]time.Duration, error) {
	out := map[writers.Event]time.Duration{}
	for k, d := range cfg.Writers.Timeouts {
		ev, err := writers.ParseEvent(k)
		if err != nil {
			return nil, fmt.Errorf("writers.timeouts: %w", err)
		}
		out[ev] = d.Duration
	}
	return out, nil
}

// registerConfigured builds and registers the configured writers. A writer
// that cannot be reached now (its database is down) is logged and left
// out; it is tried again at the next list or set.
func (s *Service) registerConfigured(ctx context.Context) {
	for _, src := range s.opts.WriterSources {
		regs, errs := src(ctx, s.cfg)
		for _, err := range errs {
			s.log.Error("a configured writer cannot be used", "err", err)
		}
		for _, reg := range regs {
			if _, err := s.writers.Add(ctx, reg); err != nil {
				s.log.Error("registering a configured writer; it is tried again later", "err", err)
				s.pendingMu.Lock()
				s.pendingRegs = append(s.pendingRegs, reg)
				s.pendingMu.Unlock()
			}
		}
	}
}

// retryConfigured tries again to register the configured writers that
// could not be reached before.
func (s *Service) retryConfigured(ctx context.Context) {
	s.pendingMu.Lock()
	regs := s.pendingRegs
	s.pendingRegs = nil
	s.pendingMu.Unlock()
	for _, reg := range regs {
		if _, err := s.writers.Add(ctx, reg); err != nil {
			if !vsserr.Is(err, vsserr.VSS_E_WRITER_ALREADY_SUBSCRIBED) {
				s.log.Debug("a configured writer is still not reachable", "err", err)
				s.pendingMu.Lock()
				s.pendingRegs = append(s.pendingRegs, reg)
				s.pendingMu.Unlock()
			}
		}
	}
}

// ListWriters lists the registered writers with their state. As on
// Windows, it is a GatherWriterMetadata round: every writer is asked to
// Identify, and one that does not answer shows as failed at Identify.
func (s *Service) ListWriters(ctx context.Context) ([]WriterStatus, error) {
	s.retryConfigured(ctx)
	out := []WriterStatus{}
	for _, st := range s.writers.Gather(ctx) {
		out = append(out, WriterStatusOf(st))
	}
	return out, nil
}

// WriterStatusOf is the listing form of a writer's status.
func WriterStatusOf(st writers.Status) WriterStatus {
	return WriterStatus{
		Name: st.Name, ID: st.WriterID, InstanceID: st.InstanceID, InstanceName: st.InstanceName,
		State: int(st.State), StateText: st.State.Text(),
		LastError: vssmeta.LastErrorText(uint32(st.LastError)), LastHResult: uint32(st.LastError), LastErrorMessage: st.LastErrorMessage,
		Kind: st.Kind, OnError: string(st.Policy),
	}
}

// listing converts writer states to their listing form.
func listing(sts []writers.Status) []WriterStatus {
	var out []WriterStatus
	for _, st := range sts {
		out = append(out, WriterStatusOf(st))
	}
	return out
}

func participantStatus(ps []*writers.Participant) []writers.Status {
	var out []writers.Status
	for _, p := range ps {
		out = append(out, p.Status())
	}
	return out
}

// shutdownWriters ends the writers' part in a set made without a
// requester session (BackupShutdown).
func (s *Service) shutdownWriters(ctx context.Context, ps []*writers.Participant, set *catalog.Set) {
	info := &coordinator.SetInfo{ID: set.ID, Context: set.Context}
	for _, p := range ps {
		if err := p.Send(context.WithoutCancel(ctx), writers.BackupShutdown, info); err != nil {
			s.log.Warn("BackupShutdown failed", "writer", p.Name(), "err", err)
		}
	}
}
