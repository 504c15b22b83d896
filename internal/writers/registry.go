package writers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// Policy is what a set does when one of its writers fails (DESIGN: each
// writer has an on-error policy; the default is to fail).
type Policy string

// The policies.
const (
	// PolicyFail vetoes the set: it is aborted with the writer's error.
	PolicyFail Policy = "fail"
	// PolicyContinue drops the writer from the set and goes on.
	PolicyContinue Policy = "continue"
	// PolicyCrashConsistent drops the writer and goes on: its data in the
	// shadows is only crash-consistent. The set's result says so.
	PolicyCrashConsistent Policy = "crash-consistent"
)

// ParsePolicy reads a policy name ("" means fail).
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", PolicyFail:
		return PolicyFail, nil
	case PolicyContinue, PolicyCrashConsistent:
		return Policy(s), nil
	}
	return "", fmt.Errorf("unknown on-error policy %q (fail, continue or crash-consistent)", s)
}

// The kinds of writer.
const (
	KindBuiltIn = "built-in"
	KindHook    = "hook"
	KindAPI     = "api"
)

// Registration is a writer to add to a registry.
type Registration struct {
	Writer Writer
	// Kind says where it comes from: KindBuiltIn, KindHook or KindAPI.
	Kind string
	// Policy is what a set does when the writer fails.
	Policy Policy
	// Owner is the uid that registered an API writer.
	Owner uint32
}

// Status is a writer's state as GatherWriterStatus reports it and
// `vssadmin list writers` prints it.
type Status struct {
	Name         string
	WriterID     uuid.UUID
	InstanceID   uuid.UUID
	InstanceName string
	State        vssmeta.WriterState
	// LastError is the writer's last failure (0: no error) and its message.
	LastError        vsserr.Code
	LastErrorMessage string
	Kind             string
	Policy           Policy
	Owner            uint32
	// Metadata is the writer's Writer Metadata Document (from its last
	// Identify).
	Metadata *vssmeta.WriterMetadata
}

// DefaultTimeouts are the per-event limits of the registry. Freeze and Thaw
// are bounded by the set's freeze window instead.
var DefaultTimeouts = map[Event]time.Duration{
	Identify:        30 * time.Second,
	PrepareBackup:   60 * time.Second,
	PrepareSnapshot: 60 * time.Second,
	Freeze:          60 * time.Second,
	Thaw:            60 * time.Second,
	PostSnapshot:    60 * time.Second,
	Abort:           30 * time.Second,
	BackupComplete:  60 * time.Second,
	BackupShutdown:  30 * time.Second,
	PreRestore:      10 * time.Minute,
	PostRestore:     10 * time.Minute,
}

// Options configure a Registry.
type Options struct {
	// Timeouts override DefaultTimeouts per event.
	Timeouts map[Event]time.Duration
	Log      *slog.Logger
}

// Registry holds the writers a service knows, with their state, and
// drives the writers of a set.
type Registry struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	entries []*entry // in registration order
}

type entry struct {
	w   Writer
	reg Registration

	// Guarded by Registry.mu.
	meta    *vssmeta.WriterMetadata
	state   vssmeta.WriterState
	lastErr vsserr.Code
	lastMsg string
	removed bool
}

// New returns an empty registry.
func New(o Options) *Registry {
	r := &Registry{opts: o, log: o.Log}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

func (r *Registry) timeout(ev Event) time.Duration {
	if d, ok := r.opts.Timeouts[ev]; ok && d > 0 {
		return d
	}
	return DefaultTimeouts[ev]
}

// Add identifies a writer and registers it. A second writer with the same
// instance ID gets VSS_E_WRITER_ALREADY_SUBSCRIBED. The returned function
// removes it again.
func (r *Registry) Add(ctx context.Context, reg Registration) (remove func(), err error) {
	if reg.Policy == "" {
		reg.Policy = PolicyFail
	}
	meta, err := r.identify(ctx, reg.Writer)
	if err != nil {
		return nil, err
	}
	e := &entry{w: reg.Writer, reg: reg, meta: meta, state: vssmeta.StateStable}
	r.mu.Lock()
	for _, o := range r.entries {
		if o.meta.InstanceID == meta.InstanceID {
			r.mu.Unlock()
			return nil, vsserr.New(vsserr.VSS_E_WRITER_ALREADY_SUBSCRIBED, "writer '%s' instance %s is already registered", meta.Name, meta.InstanceID)
		}
	}
	r.entries = append(r.entries, e)
	r.mu.Unlock()
	r.log.Info("writer registered", "writer", meta.Name, "instance", meta.InstanceID, "kind", reg.Kind, "policy", reg.Policy)
	return func() { r.remove(e) }, nil
}

// identify runs Identify within its limit and checks the document.
func (r *Registry) identify(ctx context.Context, w Writer) (*vssmeta.WriterMetadata, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout(Identify))
	defer cancel()
	var meta *vssmeta.WriterMetadata
	err := bounded(ctx, func(ctx context.Context) error {
		m, err := w.Identify(ctx)
		meta = m
		return err
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, vsserr.Wrap(vsserr.VSS_E_WRITER_NOT_RESPONDING, err, "the writer did not answer Identify in time")
		}
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITER_INFRASTRUCTURE, err, "the writer failed Identify")
	}
	if meta == nil {
		return nil, vsserr.New(vsserr.VSS_E_WRITER_INFRASTRUCTURE, "the writer returned no metadata document")
	}
	if err := meta.Validate(); err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITER_INFRASTRUCTURE, err, "writer '%s': bad metadata document", meta.Name)
	}
	return meta, nil
}

func (r *Registry) remove(e *entry) {
	r.mu.Lock()
	i := slices.Index(r.entries, e)
	if i >= 0 {
		r.entries = slices.Delete(r.entries, i, i+1)
	}
	e.removed = true
	r.mu.Unlock()
	if i < 0 {
		return
	}
	r.log.Info("writer unregistered", "writer", e.meta.Name, "instance", e.meta.InstanceID)
	if c, ok := e.w.(Closer); ok {
		if err := c.Close(); err != nil {
			r.log.Warn("closing a writer", "writer", e.meta.Name, "err", err)
		}
	}
}

// Close removes every writer.
func (r *Registry) Close() {
	r.mu.Lock()
	es := slices.Clone(r.entries)
	r.mu.Unlock()
	for _, e := range es {
		r.remove(e)
	}
}

func (e *entry) status() Status {
	return Status{
		Name: e.meta.Name, WriterID: e.meta.WriterID, InstanceID: e.meta.InstanceID, InstanceName: e.meta.InstanceName,
		State: e.state, LastError: e.lastErr, LastErrorMessage: e.lastMsg,
		Kind: e.reg.Kind, Policy: e.reg.Policy, Owner: e.reg.Owner, Metadata: e.meta,
	}
}

// List returns the writers' status, in registration order.
func (r *Registry) List() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.status())
	}
	return out
}

// Gather sends Identify to every writer at once (GatherWriterMetadata) and
// returns their status with fresh metadata. A writer that fails Identify
// is reported in state FailedAtIdentify with its error.
func (r *Registry) Gather(ctx context.Context) []Status {
	r.mu.Lock()
	es := slices.Clone(r.entries)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Add(1)
		go func() {
			defer wg.Done()
			meta, err := r.identify(ctx, e.w)
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil {
				e.state, e.lastErr, e.lastMsg = vssmeta.StateFailedAtIdentify, vsserr.CodeOf(err), vsserr.Message(err)
				return
			}
			e.meta = meta
			if e.state == vssmeta.StateFailedAtIdentify {
				e.state, e.lastErr, e.lastMsg = vssmeta.StateStable, 0, ""
			}
		}()
	}
	wg.Wait()
	out := make([]Status, 0, len(es))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range es {
		if !e.removed {
			out = append(out, e.status())
		}
	}
	return out
}

// onVolumes reports whether root lies on one of the volume paths.
func onVolumes(root string, volumes []string) bool {
	for _, v := range volumes {
		if volume.Within(root, v) {
			return true
		}
	}
	return false
}

// Set is what the writers of one set are told beyond the coordinator's
// SetInfo.
type Set struct {
	BackupType vssmeta.BackupType
	// Components is the Backup Components Document of a requester session;
	// nil for a set made without one (vssadmin create shadow).
	Components *vssmeta.BackupComponents
	// Exclude says whether a writer is left out of the set.
	Exclude func(Status) bool
}

// Select returns the participants of a set of the given volumes: every
// writer with a component on one of them, and every writer without files,
// except the excluded ones.
func (r *Registry) Select(volumes []string, set Set) []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Participant
	for _, e := range r.entries {
		st := e.status()
		if set.Exclude != nil && set.Exclude(st) {
			continue
		}
		if l, ok := e.w.(Liveness); ok && !l.Alive() {
			continue
		}
		roots := e.meta.Roots()
		// A writer without files quiesces an application for every set.
		on := len(roots) == 0
		for _, root := range roots {
			if onVolumes(root, volumes) {
				on = true
				break
			}
		}
		if !on {
			continue
		}
		p := &Participant{r: r, e: e, set: set, volumes: volumes, roots: roots}
		if set.Components != nil {
			p.comps = set.Components.Writer(e.meta.InstanceID)
		}
		out = append(out, p)
	}
	return out
}

// Participant is one writer taking part in one set (or one restore). It
// implements coordinator.Writer, keeps the writer's state, bounds every
// event by its limit, and applies the writer's on-error policy.
type Participant struct {
	r       *Registry
	e       *entry
	set     Set
	volumes []string
	roots   []string
	comps   *vssmeta.WriterComponents

	mu      sync.Mutex
	started bool
	dropped bool // failed under a continue policy: no more events
	frozen  bool // Freeze succeeded and no Thaw or Abort yet
	target  string
}

var _ coordinator.Writer = (*Participant)(nil)

// Name returns the writer's name.
func (p *Participant) Name() string { return p.Status().Name }

// Status returns the writer's current status.
func (p *Participant) Status() Status {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	return p.e.status()
}

// Dropped reports whether the writer failed and was left out of the set
// under a continue or crash-consistent policy.
func (p *Participant) Dropped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// Components returns the writer's part of the Backup Components Document
// (nil when the requester selected none of its components).
func (p *Participant) Components() *vssmeta.WriterComponents { return p.comps }

// PrepareSnapshot sends PrepareSnapshot.
func (p *Participant) PrepareSnapshot(ctx context.Context, s *coordinator.SetInfo) error {
	return p.Send(ctx, PrepareSnapshot, s)
}

// Freeze sends Freeze.
func (p *Participant) Freeze(ctx context.Context, s *coordinator.SetInfo) error {
	return p.Send(ctx, Freeze, s)
}

// Thaw sends Thaw.
func (p *Participant) Thaw(ctx context.Context, s *coordinator.SetInfo) error {
	return p.Send(ctx, Thaw, s)
}

// PostSnapshot sends PostSnapshot.
func (p *Participant) PostSnapshot(ctx context.Context, s *coordinator.SetInfo) error {
	return p.Send(ctx, PostSnapshot, s)
}

// Abort sends Abort.
func (p *Participant) Abort(ctx context.Context, s *coordinator.SetInfo) error {
	return p.Send(ctx, Abort, s)
}

// next is the state after a successful event.
var next = map[Event]vssmeta.WriterState{
	PrepareBackup:   vssmeta.StateStable,
	PrepareSnapshot: vssmeta.StateWaitingForFreeze,
	Freeze:          vssmeta.StateWaitingForThaw,
	Thaw:            vssmeta.StateWaitingForPostSnapshot,
	PostSnapshot:    vssmeta.StateWaitingForBackupComplete,
	BackupComplete:  vssmeta.StateStable,
	PreRestore:      vssmeta.StateStable,
	PostRestore:     vssmeta.StateStable,
}

// failedAt is the state after a failed event.
var failedAt = map[Event]vssmeta.WriterState{
	PrepareBackup:   vssmeta.StateFailedAtPrepareBackup,
	PrepareSnapshot: vssmeta.StateFailedAtPrepareSnapshot,
	Freeze:          vssmeta.StateFailedAtFreeze,
	Thaw:            vssmeta.StateFailedAtThaw,
	PostSnapshot:    vssmeta.StateFailedAtPostSnapshot,
	BackupComplete:  vssmeta.StateFailedAtBackupComplete,
	BackupShutdown:  vssmeta.StateFailedAtBackupShutdown,
	PreRestore:      vssmeta.StateFailedAtPreRestore,
	PostRestore:     vssmeta.StateFailedAtPostRestore,
}

// request builds the writer's request for an event.
func (p *Participant) request(ev Event, s *coordinator.SetInfo, deadline time.Time) *Request {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	req := &Request{BackupType: p.set.BackupType, Volumes: p.volumes, Components: p.comps, Deadline: deadline, RestoreTarget: target}
	if s != nil {
		req.SetID = s.ID
		req.Context = uint32(s.Context)
		req.Atomic = s.Atomic
		if ev == Freeze && !s.FreezeDeadline.IsZero() {
			req.Deadline = s.FreezeDeadline
		}
		if ev == PostSnapshot || ev == BackupComplete || ev == BackupShutdown {
			req.ShadowPaths = s.ShadowPaths
		}
	}
	return req
}

// classify turns a writer's failure into the VSS error the requester gets.
func (p *Participant) classify(ev Event, err error) error {
	name := p.e.meta.Name
	if errors.Is(err, context.DeadlineExceeded) {
		if ev == Freeze || ev == Thaw {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, err, "writer '%s' did not answer %s in time", name, ev)
		}
		return vsserr.Wrap(vsserr.VSS_E_WRITER_NOT_RESPONDING, err, "writer '%s' did not answer %s in time", name, ev)
	}
	var ve *vsserr.Error
	if errors.As(err, &ve) {
		return err // the writer's own classified error; the set names the writer
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED_WRITER_ERROR, err, "writer '%s' failed %s", name, ev)
}

// Send delivers one event to the writer within the event's limit (and
// ctx's), updates its state, and applies its on-error policy. s may be nil
// for events outside a set (PrepareBackup, restores).
func (p *Participant) Send(ctx context.Context, ev Event, s *coordinator.SetInfo) error {
	p.mu.Lock()
	if p.dropped {
		p.mu.Unlock()
		return nil
	}
	first := !p.started
	p.started = true
	p.mu.Unlock()
	if first || ev == PrepareBackup {
		p.r.mu.Lock()
		p.e.state, p.e.lastErr, p.e.lastMsg = vssmeta.StateStable, 0, ""
		p.r.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, p.r.timeout(ev))
	defer cancel()
	deadline, _ := ctx.Deadline()
	if ev == Abort && p.isFrozen() {
		// An abort of a frozen writer is its thaw: give it its own time.
		ctx = context.WithoutCancel(ctx)
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, p.r.timeout(Abort))
		defer c2()
		deadline, _ = ctx.Deadline()
	}
	req := p.request(ev, s, deadline)
	if ev == Freeze {
		// The writer may hold its application until its deadline: mark it
		// frozen before asking, so that an abort reaches it.
		p.setFrozen(true)
	}
	start := time.Now()
	var err error
	if ev == PrepareSnapshot {
		err = p.CheckCoverage()
	}
	if err == nil {
		err = bounded(ctx, func(ctx context.Context) error { return p.e.w.Handle(ctx, ev, req) })
	}
	took := time.Since(start)
	if ev == Thaw || ev == Abort {
		p.setFrozen(false)
	}
	if err == nil {
		p.r.mu.Lock()
		if st, ok := next[ev]; ok {
			p.e.state = st
		} else if (ev == Abort || ev == BackupShutdown) && !p.e.state.Failed() {
			p.e.state = vssmeta.StateStable
		}
		p.r.mu.Unlock()
		p.r.log.Debug("writer event", "writer", p.e.meta.Name, "event", ev.String(), "took", took)
		return nil
	}
	err = p.classify(ev, err)
	p.r.mu.Lock()
	if st, ok := failedAt[ev]; ok {
		p.e.state = st
	}
	if ev != Abort {
		p.e.lastErr, p.e.lastMsg = vsserr.CodeOf(err), vsserr.Message(err)
	}
	p.r.mu.Unlock()
	if ev == Abort {
		p.r.log.Warn("writer abort failed", "writer", p.e.meta.Name, "err", err)
		return err
	}
	p.r.log.Warn("writer event failed", "writer", p.e.meta.Name, "event", ev.String(), "took", took, "policy", p.e.reg.Policy, "err", err)
	if p.e.reg.Policy != PolicyFail && (ev == PrepareBackup || ev == PrepareSnapshot || ev == Freeze || ev == Thaw || ev == PostSnapshot) {
		p.mu.Lock()
		p.dropped = true
		p.mu.Unlock()
		if ev != PrepareBackup {
			// Release whatever the writer holds; it takes no further part.
			actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), p.r.timeout(Abort))
			aerr := bounded(actx, func(ctx context.Context) error { return p.e.w.Handle(ctx, Abort, p.request(Abort, s, time.Time{})) })
			acancel()
			p.setFrozen(false)
			if aerr != nil {
				p.r.log.Warn("writer abort failed", "writer", p.e.meta.Name, "err", aerr)
			}
		}
		return nil
	}
	return err
}

func (p *Participant) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *Participant) setFrozen(v bool) {
	p.mu.Lock()
	p.frozen = v
	p.mu.Unlock()
}

// bounded runs f and returns when it does or when ctx is done, whichever
// is first: a writer that ignores its context cannot hold the service.
func bounded(ctx context.Context, f func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done:
			return err
		default:
		}
		return ctx.Err()
	}
}

// CheckCoverage returns VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT when one of
// the writer's roots is not on the set's volumes (a "torn" set).
func (p *Participant) CheckCoverage() error {
	for _, root := range p.roots {
		if !onVolumes(root, p.volumes) {
			return vsserr.New(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, "writer '%s' has files in %s, which is on none of the set's volumes", p.e.meta.Name, root)
		}
	}
	return nil
}

// SetRestoreTarget sets the directory a restore goes to (PreRestore and
// PostRestore tell the writer).
func (p *Participant) SetRestoreTarget(dir string) {
	p.mu.Lock()
	p.target = dir
	p.mu.Unlock()
}

// ForRestore returns participants for a restore: the registered writers
// with the given instance IDs (or, for an instance no longer registered,
// the registered instance of the same class and name), each with its part
// of the Backup Components Document.
func (r *Registry) ForRestore(instances []uuid.UUID, bcd *vssmeta.BackupComponents) []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []*Participant{}
	for _, id := range instances {
		wc := bcd.Writer(id)
		var found *entry
		for _, e := range r.entries {
			if e.meta.InstanceID == id {
				found = e
				break
			}
		}
		if found == nil && wc != nil {
			for _, e := range r.entries {
				if e.meta.WriterID == wc.WriterID && e.meta.Name == wc.Name {
					found = e
					break
				}
			}
		}
		if found == nil {
			r.log.Warn("no registered writer for a restored component; restoring its files without it", "instance", id)
			continue
		}
		out = append(out, &Participant{r: r, e: found, comps: wc, roots: found.meta.Roots()})
	}
	return out
}
