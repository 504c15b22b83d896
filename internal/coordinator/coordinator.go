// Package coordinator drives one shadow copy set through the VSS phases:
//
//	prepare (providers) → PrepareSnapshot (writers) → end-prepare (providers'
//	slow work) → Freeze (writers, within the freeze limit) → flush (syncfs) →
//	PreCommit → hold (freeze what may be frozen) → Commit (every volume,
//	within the commit limit) → release (thaw) → PostCommit → Thaw (writers) →
//	PostSnapshot (writers) → catalog commit.
//
// Any failure before the catalog commit aborts the whole set: writers get
// Abort, frozen filesystems are thawed, providers drop what they made, and
// the journal entry that would let a restarted service roll it back is
// removed last. Only one set is made at a time.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/fsfreeze"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// The fault points, in the order a set reaches them (see Options.Fault).
const (
	PointPrepare         = "prepare"
	PointPrepareSnapshot = "prepare-snapshot"
	PointEndPrepare      = "end-prepare"
	PointFreeze          = "freeze"
	PointFlush           = "flush"
	PointHold            = "hold"
	PointCommit          = "commit"
	PointRelease         = "release"
	PointPostCommit      = "post-commit"
	PointThaw            = "thaw"
	PointPostSnapshot    = "post-snapshot"
	PointCatalogCommit   = "catalog-commit"
	PointCommitted       = "committed"
)

// Points lists the fault points of a set in order.
var Points = []string{PointPrepare, PointPrepareSnapshot, PointEndPrepare, PointFreeze, PointFlush, PointHold,
	PointCommit, PointRelease, PointPostCommit, PointThaw, PointPostSnapshot, PointCatalogCommit, PointCommitted}

// Journal is what the coordinator needs of the catalog.
type Journal interface {
	BeginSet(catalog.Pending) error
	DropPending(uuid.UUID) error
	CommitSet(catalog.Set, []catalog.Shadow, catalog.Commit) error
	RecordFreeze(catalog.Freeze) error
	ClearFreeze(path string) error
}

// Options configure a Coordinator.
type Options struct {
	// FreezeTimeout bounds the writers' freeze window, from the first
	// Freeze to the Thaw (VSS: 60 s).
	FreezeTimeout time.Duration
	// CommitTimeout bounds the hold, from the freeze of the filesystems to
	// their release (VSS: 10 s).
	CommitTimeout time.Duration
	// Machine is this host's name.
	Machine string
	// NeverFreeze lists paths whose filesystems are never frozen (the state
	// directory, the log); the root filesystem never is.
	NeverFreeze []string
	// Fault, when set, is called at each fault point; an error it returns
	// fails the set there. Tests use it to stop, fail or kill at a phase.
	Fault func(ctx context.Context, point string) error
	// Log receives the coordinator's log.
	Log *slog.Logger
}

// Coordinator makes shadow copy sets.
type Coordinator struct {
	opts Options
	j    Journal
	slot chan struct{}
}

// New returns a coordinator that journals in j.
func New(j Journal, o Options) *Coordinator {
	if o.FreezeTimeout <= 0 {
		o.FreezeTimeout = 60 * time.Second
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Coordinator{opts: o, j: j, slot: make(chan struct{}, 1)}
}

// Acquire takes the one "set in progress" slot. When it is taken, Acquire
// fails at once with VSS_E_SNAPSHOT_SET_IN_PROGRESS, or, with wait > 0,
// retries until it is free or wait has passed (vssadmin /autoretry).
func (c *Coordinator) Acquire(ctx context.Context, wait time.Duration) (release func(), err error) {
	select {
	case c.slot <- struct{}{}:
	default:
		if wait <= 0 {
			return nil, vsserr.New(vsserr.VSS_E_SNAPSHOT_SET_IN_PROGRESS, "another shadow copy set is being created")
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case c.slot <- struct{}{}:
		case <-t.C:
			return nil, vsserr.New(vsserr.VSS_E_SNAPSHOT_SET_IN_PROGRESS, "another shadow copy set was still being created after %v", wait)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	return func() { once.Do(func() { <-c.slot }) }, nil
}

// Item is one volume of a set.
type Item struct {
	ShadowID      uuid.UUID
	Volume        *volume.Volume
	Provider      provider.Provider
	Storage       string
	StorageVolume *volume.Volume
	Exclude       []string
}

// Plan is a set to make.
type Plan struct {
	SetID   uuid.UUID
	Context vss.Context
	Items   []Item
	Writers []Writer
	// Owner is the requester session that owns auto-release shadows.
	Owner string
	// Storages are storage associations to record with the set.
	Storages []catalog.Storage
}

// Timings are the measured windows of a set.
type Timings struct {
	Prepare time.Duration // prepare + end-prepare (pre-copy)
	Freeze  time.Duration // first Freeze sent to last Thaw answered
	Flush   time.Duration
	Hold    time.Duration // freeze of the filesystems (or first commit) to release
	Total   time.Duration // the whole request (the service adds its planning)
}

// Result is a made set.
type Result struct {
	Set     catalog.Set
	Shadows []catalog.Shadow
	Timings Timings
	Stats   []provider.Stats
	// NotFrozen says, per volume path, why a filesystem the provider asked
	// to freeze was not frozen.
	NotFrozen map[string]string
}

// allowedProviderCodes are the codes a provider may return (VSS's list);
// anything else becomes VSS_E_UNEXPECTED_PROVIDER_ERROR.
var allowedProviderCodes = map[vsserr.Code]bool{
	vsserr.E_OUTOFMEMORY: true, vsserr.E_INVALIDARG: true, vsserr.E_ACCESSDENIED: true,
	vsserr.VSS_E_BAD_STATE: true, vsserr.VSS_E_OBJECT_NOT_FOUND: true, vsserr.VSS_E_INSUFFICIENT_STORAGE: true,
	vsserr.VSS_E_VOLUME_NOT_SUPPORTED: true, vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER: true,
	vsserr.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: true, vsserr.VSS_E_PROVIDER_VETO: true,
	vsserr.VSS_E_OBJECT_ALREADY_EXISTS: true,
}

// ProviderError classifies an error returned by a provider.
func ProviderError(err error, name, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return vsserr.Wrap(vsserr.VSS_E_INSUFFICIENT_STORAGE, err, "provider %s: %s", name, what)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	code := vsserr.CodeOf(err)
	var ve *vsserr.Error
	if allowedProviderCodes[code] && errors.As(err, &ve) {
		return vsserr.Wrap(code, err, "provider %s: %s", name, what)
	}
	return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR, err, "provider %s: %s", name, what)
}

// writerError classifies an error returned by a writer.
func writerError(err error, w Writer, event string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		if event == "Freeze" || event == "Thaw" {
			return vsserr.Wrap(vsserr.VSS_E_WRITERERROR_TIMEOUT, err, "writer '%s' did not answer %s in time", w.Name(), event)
		}
		return vsserr.Wrap(vsserr.VSS_E_WRITER_NOT_RESPONDING, err, "writer '%s' did not answer %s in time", w.Name(), event)
	}
	var ve *vsserr.Error
	if errors.As(err, &ve) {
		return vsserr.Wrap(ve.Code, err, "writer '%s' vetoed %s", w.Name(), event)
	}
	return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED_WRITER_ERROR, err, "writer '%s' failed %s", w.Name(), event)
}

func (c *Coordinator) fault(ctx context.Context, point string) error {
	if c.opts.Fault == nil {
		return nil
	}
	if err := c.opts.Fault(ctx, point); err != nil {
		return fmt.Errorf("at %s: %w", point, err)
	}
	return nil
}

// run is the state of one set in the making.
type run struct {
	c        *Coordinator
	plan     Plan
	info     *SetInfo
	log      *slog.Logger
	pending  catalog.Pending
	snaps    []provider.Snapshot
	writers  bool // PrepareSnapshot was sent: writers must get Abort on failure
	guard    *fsfreeze.Guard
	frozen   []string // freezes journaled (made or about to be)
	inflight bool     // a commit may still run: providers cannot be aborted yet
	// recovered: writers had the shadows writable in PostSnapshot (VSS
	// auto-recovery); the shadows get the Auto recovered attribute.
	recovered bool
}

// each sends one writer event to every writer of the set at once and waits
// for all of them. The first failure cancels the others' context and is
// the error returned (classified as a writer error).
func (r *run) each(ctx context.Context, event string, call func(Writer, context.Context, *SetInfo) error) error {
	ws := r.plan.Writers
	if len(ws) == 1 {
		if err := call(ws[0], ctx, r.info); err != nil {
			return writerError(err, ws[0], event)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := call(w, ctx, r.info); err != nil {
				mu.Lock()
				if first == nil {
					first = writerError(err, w, event)
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// postSnapshot sends PostSnapshot with the shadows writable (VSS
// auto-recovery) and makes them read-only again afterwards.
func (r *run) postSnapshot(ctx context.Context) error {
	var opened []provider.Recoverable
	defer func() {
		for _, rc := range opened {
			if err := rc.SetWritable(context.WithoutCancel(ctx), false); err != nil {
				r.log.Error("making a shadow read-only again", "err", err)
			}
		}
	}()
	for i, snap := range r.snaps {
		if rc, ok := snap.(provider.Recoverable); ok {
			if err := rc.SetWritable(ctx, true); err != nil {
				return ProviderError(err, r.plan.Items[i].Provider.Info().Name, "making the shadow of "+r.plan.Items[i].Volume.Path+" writable for the writers")
			}
			opened = append(opened, rc)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, r.c.opts.FreezeTimeout)
	defer cancel()
	if err := r.each(wctx, "PostSnapshot", Writer.PostSnapshot); err != nil {
		return err
	}
	for len(opened) > 0 {
		rc := opened[len(opened)-1]
		if err := rc.SetWritable(ctx, false); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR, err, "making a shadow read-only after PostSnapshot")
		}
		opened = opened[:len(opened)-1]
	}
	r.recovered = true
	return nil
}

// DoSnapshotSet makes the set of plan. The caller holds the slot (Acquire).
func (c *Coordinator) DoSnapshotSet(ctx context.Context, plan Plan) (res Result, err error) {
	if len(plan.Items) == 0 {
		return res, vsserr.New(vsserr.VSS_E_BAD_STATE, "the shadow copy set has no volumes")
	}
	start := time.Now()
	r := &run{c: c, plan: plan, log: c.opts.Log.With("set", plan.SetID.String()), snaps: make([]provider.Snapshot, len(plan.Items))}
	r.info = &SetInfo{ID: plan.SetID, Context: plan.Context, ShadowPaths: map[string]string{}}
	r.pending = catalog.Pending{SetID: plan.SetID, Started: start, Pid: os.Getpid()}
	for _, it := range plan.Items {
		r.info.Volumes = append(r.info.Volumes, it.Volume)
		req := provider.Request{Storage: it.Storage, ShadowID: it.ShadowID}
		r.pending.Items = append(r.pending.Items, catalog.PendingItem{ShadowID: it.ShadowID, Provider: it.Provider.Info().Name, Path: req.Path(), VolumePath: it.Volume.Path})
	}
	if err := c.j.BeginSet(r.pending); err != nil {
		return res, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "journaling the set")
	}
	r.log.Info("creating shadow copy set", "volumes", len(plan.Items), "context", plan.Context.Name())
	defer func() {
		if err != nil {
			r.abort(err)
		}
	}()
	res, err = r.do(ctx)
	r.close()
	if err == nil {
		res.Timings.Total = time.Since(start)
		r.log.Info("shadow copy set created", "hold", res.Timings.Hold, "freeze", res.Timings.Freeze, "total", res.Timings.Total)
	}
	return res, err
}

func (r *run) do(ctx context.Context) (Result, error) {
	c := r.c
	var res Result
	res.NotFrozen = map[string]string{}
	t0 := time.Now()
	if err := c.fault(ctx, PointPrepare); err != nil {
		return res, err
	}
	for i, it := range r.plan.Items {
		snap, err := it.Provider.Prepare(ctx, provider.Request{
			Volume: it.Volume, ShadowID: it.ShadowID, Storage: it.Storage, StorageVolume: it.StorageVolume, Exclude: it.Exclude,
		})
		if err != nil {
			return res, ProviderError(err, it.Provider.Info().Name, "prepare "+it.Volume.Path)
		}
		r.snaps[i] = snap
	}
	writers := r.plan.Context.Writers() && len(r.plan.Writers) > 0
	r.info.Atomic = len(r.plan.Items) > 0
	for _, it := range r.plan.Items {
		if !it.Provider.Info().CrashConsistent {
			r.info.Atomic = false
		}
	}
	if err := c.fault(ctx, PointPrepareSnapshot); err != nil {
		return res, err
	}
	if writers {
		r.writers = true
		wctx, cancel := context.WithTimeout(ctx, c.opts.FreezeTimeout)
		err := r.each(wctx, "PrepareSnapshot", Writer.PrepareSnapshot)
		cancel()
		if err != nil {
			return res, err
		}
	}
	for i, snap := range r.snaps {
		if err := snap.EndPrepare(ctx); err != nil {
			return res, ProviderError(err, r.plan.Items[i].Provider.Info().Name, "end prepare "+r.plan.Items[i].Volume.Path)
		}
	}
	if err := c.fault(ctx, PointEndPrepare); err != nil {
		return res, err
	}
	res.Timings.Prepare = time.Since(t0)
	// Decide what to freeze, and start the guard before the writers freeze:
	// its start-up is not part of any window.
	targets, why := r.freezeTargets()
	res.NotFrozen = why
	if len(targets) > 0 {
		g, err := fsfreeze.StartGuard(ctx)
		if err != nil {
			return res, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "starting the freeze guard")
		}
		r.guard = g
	}
	// Freeze the writers.
	freezeStart := time.Now()
	freezeDeadline := freezeStart.Add(c.opts.FreezeTimeout)
	r.info.FreezeDeadline = freezeDeadline
	if writers {
		fctx, cancel := context.WithDeadline(ctx, freezeDeadline)
		err := r.each(fctx, "Freeze", Writer.Freeze)
		cancel()
		if err != nil {
			return res, err
		}
	}
	if err := c.fault(ctx, PointFreeze); err != nil {
		return res, err
	}
	// Flush: what the applications wrote reaches the disk before the hold,
	// so the hold (and a btrfs snapshot's own flush) is short.
	tf := time.Now()
	if err := r.flush(ctx, targets); err != nil {
		return res, err
	}
	res.Timings.Flush = time.Since(tf)
	if err := c.fault(ctx, PointFlush); err != nil {
		return res, err
	}
	for i, snap := range r.snaps {
		if err := snap.PreCommit(ctx); err != nil {
			return res, ProviderError(err, r.plan.Items[i].Provider.Info().Name, "pre-commit "+r.plan.Items[i].Volume.Path)
		}
	}
	// The hold.
	holdStart := time.Now()
	holdDeadline := holdStart.Add(c.opts.CommitTimeout)
	hctx, hcancel := context.WithDeadline(ctx, holdDeadline)
	defer hcancel()
	if err := r.hold(hctx, targets, holdDeadline); err != nil {
		return res, err
	}
	for _, snap := range r.snaps {
		if hs, ok := snap.(provider.HeldSetter); ok {
			ft := snap.FreezeTarget()
			_, notFrozen := why[ft]
			hs.SetHeld(ft != "" && !notFrozen)
		}
	}
	if err := c.fault(hctx, PointHold); err != nil {
		return res, err
	}
	if err := r.commit(hctx, holdDeadline); err != nil {
		return res, err
	}
	if err := c.fault(hctx, PointCommit); err != nil {
		return res, err
	}
	if err := r.release(ctx); err != nil {
		return res, err
	}
	res.Timings.Hold = time.Since(holdStart)
	if res.Timings.Hold > c.opts.CommitTimeout {
		return res, vsserr.New(vsserr.VSS_E_HOLD_WRITES_TIMEOUT, "the hold lasted %v, more than the commit limit of %v", res.Timings.Hold.Round(time.Millisecond), c.opts.CommitTimeout)
	}
	if err := c.fault(ctx, PointRelease); err != nil {
		return res, err
	}
	for i, snap := range r.snaps {
		if err := snap.PostCommit(ctx); err != nil {
			return res, ProviderError(err, r.plan.Items[i].Provider.Info().Name, "post-commit "+r.plan.Items[i].Volume.Path)
		}
	}
	if err := c.fault(ctx, PointPostCommit); err != nil {
		return res, err
	}
	// Thaw the writers, unless they have been frozen too long already (then
	// they have thawed themselves and the shadow may not be consistent).
	if writers {
		if time.Now().After(freezeDeadline) {
			return res, vsserr.New(vsserr.VSS_E_WRITERERROR_TIMEOUT, "the writers were frozen for %v, more than the freeze limit of %v", time.Since(freezeStart).Round(time.Millisecond), c.opts.FreezeTimeout)
		}
		tctx, cancel := context.WithDeadline(ctx, freezeDeadline)
		err := r.each(tctx, "Thaw", Writer.Thaw)
		cancel()
		if err != nil {
			return res, err
		}
		res.Timings.Freeze = time.Since(freezeStart)
	}
	if err := c.fault(ctx, PointThaw); err != nil {
		return res, err
	}
	for _, it := range r.plan.Items {
		r.info.ShadowPaths[it.Volume.Path] = (&provider.Request{Storage: it.Storage, ShadowID: it.ShadowID}).Path()
	}
	if writers {
		if err := r.postSnapshot(ctx); err != nil {
			return res, err
		}
	}
	if err := c.fault(ctx, PointPostSnapshot); err != nil {
		return res, err
	}
	// The catalog commit: from here on the set exists.
	res.Set, res.Shadows, res.Stats = r.records(time.Now())
	if err := c.fault(ctx, PointCatalogCommit); err != nil {
		return res, err
	}
	extra := catalog.Commit{Storages: r.plan.Storages}
	for _, it := range r.plan.Items {
		extra.Volumes = append(extra.Volumes, catalog.Volume{ID: it.Volume.ID, Path: it.Volume.Path, FSType: it.Volume.FSType, FSUUID: it.Volume.FSUUID})
	}
	if err := c.j.CommitSet(res.Set, res.Shadows, extra); err != nil {
		return res, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "recording the set in the catalog")
	}
	r.snaps = nil // nothing to abort any more
	if err := c.fault(ctx, PointCommitted); err != nil {
		// The set exists; report the fault but do not undo it.
		r.log.Warn("fault after the catalog commit", "err", err)
	}
	return res, nil
}

// freezeTargets applies the safety rules to the filesystems the providers
// ask to freeze: never the root filesystem, never one the service writes to
// (state directory, log), never one a commit of this set writes to (a
// btrfs snapshot or a clone on a frozen filesystem would hang).
func (r *run) freezeTargets() (targets []string, why map[string]string) {
	why = map[string]string{}
	mounts, err := volume.Mounts()
	if err != nil {
		for _, s := range r.snaps {
			if ft := s.FreezeTarget(); ft != "" {
				why[ft] = "cannot read the mount table: " + err.Error()
			}
		}
		return nil, why
	}
	forbidden := map[uint64]string{}
	forbid := func(path, reason string) {
		if fs, err := volume.FilesystemOf(mounts, path); err == nil {
			if _, ok := forbidden[fs]; !ok {
				forbidden[fs] = reason
			}
		}
	}
	forbid("/", "it is the root filesystem")
	for _, p := range r.c.opts.NeverFreeze {
		forbid(p, "the service writes to it ("+p+")")
	}
	if p, err := os.Readlink("/proc/self/fd/2"); err == nil && len(p) > 0 && p[0] == '/' {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			forbid(p, "the service's log is on it")
		}
	}
	for _, s := range r.snaps {
		for _, w := range s.Writes() {
			forbid(w, "a commit of this set writes to it ("+w+")")
		}
	}
	seen := map[uint64]bool{}
	for _, s := range r.snaps {
		ft := s.FreezeTarget()
		if ft == "" {
			continue
		}
		fs, err := volume.FilesystemOf(mounts, ft)
		if err != nil {
			why[ft] = err.Error()
			continue
		}
		if reason, ok := forbidden[fs]; ok {
			why[ft] = reason
			r.log.Info("not freezing the filesystem: the copy is writer-consistent only", "path", ft, "reason", reason)
			continue
		}
		if !seen[fs] {
			seen[fs] = true
			targets = append(targets, ft)
		}
	}
	return targets, why
}

// flush writes the dirty data of the filesystems about to be frozen to disk,
// so that the freeze (which writes it itself otherwise) is short; it is
// bounded by the commit limit (VSS_E_FLUSH_WRITES_TIMEOUT). Filesystems that
// are not frozen are not flushed here: their providers' commits write what
// they capture themselves (a btrfs snapshot flushes its subvolume, a clone
// its file), and a separate flush would only cost a second transaction.
func (r *run) flush(ctx context.Context, targets []string) error {
	if len(targets) == 0 {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		for _, t := range targets {
			if err := provider.SyncFS(t); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	t := time.NewTimer(r.c.opts.CommitTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_FLUSH_WRITES_TIMEOUT, err, "flushing the volumes")
		}
		return nil
	case <-t.C:
		return vsserr.New(vsserr.VSS_E_FLUSH_WRITES_TIMEOUT, "flushing the volumes took more than %v", r.c.opts.CommitTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hold freezes the targets through the guard, journaling each freeze first.
func (r *run) hold(ctx context.Context, targets []string, deadline time.Time) error {
	if len(targets) == 0 {
		return nil
	}
	for _, t := range targets {
		if err := r.c.j.RecordFreeze(catalog.Freeze{Path: t, SetID: r.plan.SetID, Pid: os.Getpid(), Since: time.Now()}); err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "journaling the freeze of %s", t)
		}
		r.frozen = append(r.frozen, t)
	}
	// The guard thaws by itself a little after the commit limit, should
	// this process stop answering.
	if err := r.guard.Freeze(ctx, deadline.Add(time.Second), targets...); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return vsserr.Wrap(vsserr.VSS_E_HOLD_WRITES_TIMEOUT, err, "freezing %v", targets)
		}
		if errors.Is(err, fsfreeze.ErrAlreadyFrozen) {
			return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "another program holds a freeze")
		}
		return vsserr.Wrap(vsserr.VSS_E_PROVIDER_VETO, err, "freezing %v", targets)
	}
	return nil
}

// commit commits every volume inside the hold. When the commit limit
// passes, the hold is released at once and the set fails; the providers are
// aborted only once their commit has returned.
func (r *run) commit(ctx context.Context, deadline time.Time) error {
	done := make(chan error, 1)
	r.inflight = true
	go func() {
		for i, snap := range r.snaps {
			if err := snap.Commit(ctx); err != nil {
				done <- ProviderError(err, r.plan.Items[i].Provider.Info().Name, "commit "+r.plan.Items[i].Volume.Path)
				return
			}
		}
		done <- nil
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		r.inflight = false
		if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return vsserr.Wrap(vsserr.VSS_E_HOLD_WRITES_TIMEOUT, err, "the commit did not end within %v", r.c.opts.CommitTimeout)
		}
		return err
	case <-t.C:
	case <-ctx.Done():
	}
	// Out of time: release the hold first, then wait for the commit to end
	// before anything is aborted.
	r.releaseQuietly()
	select {
	case <-done:
		r.inflight = false
	case <-time.After(time.Minute):
		r.log.Error("a provider commit did not return a minute after its limit; leaving the set to the recovery at the next start")
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ctx.Err()
	}
	return vsserr.New(vsserr.VSS_E_HOLD_WRITES_TIMEOUT, "the commit did not end within the commit limit of %v", r.c.opts.CommitTimeout)
}

// release thaws the held filesystems and clears their journal.
func (r *run) release(ctx context.Context) error {
	if r.guard == nil || len(r.frozen) == 0 {
		return nil
	}
	tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := r.guard.Thaw(tctx)
	if err != nil {
		// Make sure, then fail the set: a hold that ended early (the guard's
		// deadline) does not give a consistent shadow.
		r.releaseQuietly()
		if errors.Is(err, fsfreeze.ErrExpired) {
			return vsserr.Wrap(vsserr.VSS_E_HOLD_WRITES_TIMEOUT, err, "the hold outlasted the commit limit")
		}
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "thawing")
	}
	for _, p := range r.frozen {
		if err := r.c.j.ClearFreeze(p); err != nil {
			r.log.Warn("clearing the freeze journal", "path", p, "err", err)
		}
	}
	r.frozen = nil
	return nil
}

// releaseQuietly thaws whatever this set froze, by every means.
func (r *run) releaseQuietly() {
	if r.guard != nil {
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.guard.Thaw(tctx); err != nil && !errors.Is(err, fsfreeze.ErrExpired) {
			r.log.Warn("guard thaw failed; thawing directly", "err", err)
		}
		cancel()
	}
	for _, p := range r.frozen {
		if err := fsfreeze.Thaw(p); err != nil {
			r.log.Error("thaw failed", "path", p, "err", err)
			continue
		}
		if err := r.c.j.ClearFreeze(p); err != nil {
			r.log.Warn("clearing the freeze journal", "path", p, "err", err)
		}
	}
	r.frozen = nil
}

// abort undoes a set that failed before its catalog commit.
func (r *run) abort(cause error) {
	r.log.Warn("aborting shadow copy set", "err", cause)
	r.releaseQuietly()
	if r.guard != nil {
		if err := r.guard.Close(); err != nil {
			r.log.Warn("closing the freeze guard", "err", err)
		}
		r.guard = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.c.opts.FreezeTimeout)
	defer cancel()
	if r.writers {
		for _, w := range r.plan.Writers {
			if err := w.Abort(ctx, r.info); err != nil {
				r.log.Warn("writer abort failed", "writer", w.Name(), "err", err)
			}
		}
	}
	if r.inflight {
		return // a commit still runs: the journal lets the next start clean up
	}
	clean := true
	for i := len(r.snaps) - 1; i >= 0; i-- {
		if r.snaps[i] == nil {
			continue
		}
		if err := r.snaps[i].Abort(ctx); err != nil {
			clean = false
			r.log.Error("provider abort failed; the next start retries", "volume", r.plan.Items[i].Volume.Path, "err", err)
		}
	}
	if clean {
		if err := r.c.j.DropPending(r.plan.SetID); err != nil {
			r.log.Warn("dropping the set journal", "err", err)
		}
	}
}

// close ends the guard of a finished set.
func (r *run) close() {
	if r.guard != nil {
		if err := r.guard.Close(); err != nil {
			r.log.Warn("closing the freeze guard", "err", err)
		}
		r.guard = nil
	}
}

// records builds the catalog records of the committed set.
func (r *run) records(now time.Time) (catalog.Set, []catalog.Shadow, []provider.Stats) {
	set := catalog.Set{ID: r.plan.SetID, Created: now, Context: r.plan.Context, Count: len(r.plan.Items)}
	var shadows []catalog.Shadow
	var stats []provider.Stats
	for i, it := range r.plan.Items {
		info := it.Provider.Info()
		st := r.snaps[i].Stats()
		stats = append(stats, st)
		attrs := r.plan.Context.Attr() | info.Attributes
		if r.recovered {
			attrs |= vss.AttrAutoRecover
		}
		owner := ""
		if r.plan.Context.AutoRelease() {
			owner = r.plan.Owner
		}
		shadows = append(shadows, catalog.Shadow{
			ID: it.ShadowID, SetID: r.plan.SetID, SetCount: len(r.plan.Items),
			VolumeID: it.Volume.ID, VolumePath: it.Volume.Path, VolumeName: it.Volume.Name(),
			ShadowPath:  (&provider.Request{Storage: it.Storage, ShadowID: it.ShadowID}).Path(),
			StoragePath: it.Storage, StorageVolumeID: it.StorageVolume.ID,
			Provider: info.Name, ProviderID: info.ID, Created: now,
			Context: r.plan.Context, Attributes: attrs,
			OriginatingMachine: r.c.opts.Machine, ServiceMachine: r.c.opts.Machine,
			CrashConsistent: info.CrashConsistent || st.Frozen,
			Owner:           owner,
		})
		set.Shadows = append(set.Shadows, it.ShadowID)
	}
	return set, shadows, stats
}
