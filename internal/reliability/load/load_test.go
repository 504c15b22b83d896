package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/apiclient"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// The load.
const (
	nRequesters = 50
	nReaders    = 200
	maxPerSet   = 3 // volumes in one set: 1 to maxPerSet
	// Memory may grow by this much (either bound) from the first to the
	// last third of the steady part of a phase.
	rssGrowthRatio = 0.30
	rssGrowthBytes = 30 << 20
	// Open descriptors may grow by this many.
	fdGrowth = 32
)

// params are the durations of a run.
type params struct {
	delete, evict time.Duration // the load of each phase
	warmup        time.Duration // left out of the memory comparison
	wait          time.Duration // the autoretry of the waiting requesters
	stall         time.Duration // no progress for this long is a deadlock
}

func loadParams(t *testing.T) params {
	p := params{delete: 20 * time.Second, evict: 15 * time.Second, warmup: 5 * time.Second, wait: 3 * time.Second, stall: 20 * time.Second}
	if os.Getenv("VSS_TEST_MODE") == "long" {
		p = params{delete: 3 * time.Minute, evict: 2 * time.Minute, warmup: 30 * time.Second, wait: 10 * time.Second, stall: 30 * time.Second}
	}
	if v := os.Getenv("VSS_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("VSS_LOAD_DURATION=%q: want a duration such as 90s", v)
		}
		p.delete, p.evict = d, d
		p.warmup = min(p.warmup, d/4)
	}
	return p
}

// phase is one configuration of the service and of the requesters.
type phase struct {
	name string
	// maxShadows is vssd's max_shadow_copies.
	maxShadows int
	// evict: the requesters keep more than fits, and the service evicts
	// the oldest shadows of a full volume. Without it the limit is far
	// above what the requesters keep, nothing is evicted, and every
	// listed set must be whole.
	evict bool
	// backup says which requesters make Backup (auto-release) sets, the
	// others ClientAccessible (persistent) ones.
	backup func(w int) bool
	// keep is how many sets a requester keeps before it deletes its
	// oldest.
	keep func(w int) int
	// reconnect is 1 in how many loops a requester closes its connection
	// and dials again.
	reconnect func(w int) int
}

var (
	// Requesters delete what they made beyond 1 to 3 sets: at most 200
	// sets (one more each while it deletes), so at most 200 shadows per
	// volume, far below 512.
	phaseDelete = phase{
		name:       "delete",
		maxShadows: 512,
		backup:     func(w int) bool { return w%2 == 0 },
		keep:       func(w int) int { return 1 + w%3 },
		reconnect:  func(int) int { return 40 },
	}
	// Persistent requesters keep 3 to 6 sets, more than 12 per volume
	// fit: the service evicts the oldest. Ten (waiting) requesters make
	// Backup sets, which no eviction may take while their session lives,
	// and reconnect often: their sessions end while creates evict and the
	// administrator deletes.
	phaseEvict = phase{
		name:       "evict",
		maxShadows: 12,
		evict:      true,
		backup:     func(w int) bool { return w%5 == 0 },
		keep: func(w int) int {
			if w%5 == 0 {
				return 2
			}
			return 3 + w%4
		},
		reconnect: func(w int) int {
			if w%5 == 0 {
				return 12
			}
			return 40
		},
	}
)

// waits says which requesters ask the service to wait for a busy
// coordinator (autoretry): 20 of the 50.
func waits(w int) bool { return w%5 < 2 }

// ---- operations, outcomes, statistics ----

type opKind int

const (
	opCreateNoWait opKind = iota
	opCreateWait
	opDelete
	opListAll
	opListVolume
	opListVolumes
	opWrite
	opReconnect
	opAdminDelete
	opInfo
	opTick
	opAutoRelease
	nOps
)

func (k opKind) String() string {
	return [...]string{"create (no wait)", "create (autoretry)", "delete set", "list shadows (all)",
		"list shadows (volume)", "list volumes", "write 4 KiB to a volume", "reconnect (ends session)", "delete /oldest (admin)",
		"info (every 50 ms)", "test: 50 ms sleep, late by", "auto-release at the end"}[k]
}

const (
	outOK         = "ok"
	outInProgress = "in-progress"
	outMaxReached = "max-reached" // every shadow of a volume held by a live session
	outEvicted    = "evicted"     // a delete of a set that lost shadows to eviction
	outNotFound   = "not-found"   // the administrator's delete lost a race with another
	outFailed     = "failed"
	outBad        = "inconsistent"
)

// stats are one worker's latencies, by operation and outcome, and its
// slow operations.
type stats struct {
	d    [nOps]map[string][]time.Duration
	slow []slowOp
}

// slowOp is an operation that took more than slowOpLimit.
type slowOp struct {
	kind opKind
	end  time.Time
	took time.Duration
}

const slowOpLimit = time.Second

func (s *stats) add(k opKind, outcome string, d time.Duration) {
	if s.d[k] == nil {
		s.d[k] = map[string][]time.Duration{}
	}
	s.d[k][outcome] = append(s.d[k][outcome], d)
	if d > slowOpLimit && k != opCreateWait && k != opAutoRelease {
		s.slow = append(s.slow, slowOp{kind: k, end: time.Now(), took: d})
	}
}

func (s *stats) merge(o *stats) {
	for k := range o.d {
		for out, ds := range o.d[k] {
			if s.d[k] == nil {
				s.d[k] = map[string][]time.Duration{}
			}
			s.d[k][out] = append(s.d[k][out], ds...)
		}
	}
	s.slow = append(s.slow, o.slow...)
}

// failures collects what went wrong, from every goroutine.
type failures struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (f *failures) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.first) < 30 {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f *failures) report(t *testing.T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.first {
		t.Error(m)
	}
	if f.n > len(f.first) {
		t.Errorf("… and %d more failures", f.n-len(f.first))
	}
}

// ---- the sets the requesters made, as the readers must see them ----

type setRec struct {
	id      uuid.UUID
	ids     []uuid.UUID
	paths   []string // shadow paths
	vols    []string
	ctx     vss.Context
	created time.Time // the create returned
	// delStart is when its delete began (zero: not yet); under registry.mu.
	delStart time.Time
}

type registry struct {
	mu   sync.RWMutex
	live map[uuid.UUID]*setRec
	gone map[uuid.UUID]time.Time // set → when its delete returned
	// released are auto-release sets whose requester closed its
	// connection, and when.
	released map[uuid.UUID]time.Time
	// evicted are shadows a create reported it evicted, or the
	// administrator deleted, and when that call returned.
	evicted map[uuid.UUID]time.Time
	// claims are shadows a listing or a delete missed while no evicting
	// create had said so yet (the first time): at the end, each must have
	// been evicted.
	claims map[uuid.UUID]claim
}

type claim struct {
	shadow uuid.UUID
	set    uuid.UUID
	at     time.Time
	who    string
}

func newRegistry() registry {
	return registry{live: map[uuid.UUID]*setRec{}, gone: map[uuid.UUID]time.Time{},
		released: map[uuid.UUID]time.Time{}, evicted: map[uuid.UUID]time.Time{}, claims: map[uuid.UUID]claim{}}
}

func (r *registry) add(rec *setRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[rec.id] = rec
}

// evict records the shadows a create (made or failed) says it evicted.
func (r *registry) evict(shadows []catalog.Shadow) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sh := range shadows {
		r.evicted[sh.ID] = now
	}
}

func (r *registry) beginDelete(rec *setRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.delStart = time.Now()
}

func (r *registry) endDelete(rec *setRec) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, rec.id)
	r.gone[rec.id] = now
}

// release notes that the connection of the requester that made these
// auto-release sets is about to close.
func (r *registry) release(recs []*setRec) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		delete(r.live, rec.id)
		r.released[rec.id] = now
	}
}

// forget drops a set whose fate is unknown (its delete failed).
func (r *registry) forget(rec *setRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, rec.id)
}

func (r *registry) claim(c claim) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.claims[c.shadow]; !ok {
		r.claims[c.shadow] = c
	}
}

func (r *registry) isEvicted(id uuid.UUID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.evicted[id]
	return ok
}

// shadows counts the shadows of the live sets that are not evicted.
func (r *registry) shadows() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, rec := range r.live {
		for _, id := range rec.ids {
			if _, ok := r.evicted[id]; !ok {
				n++
			}
		}
	}
	return n
}

// ---- activity, for the watchdog ----

type activity struct {
	start        []atomic.Int64 // per worker: when its operation began (0: none)
	kind         []atomic.Int32
	lastCreateOK atomic.Int64
	lastList     atomic.Int64
}

func newActivity(n int) *activity {
	a := &activity{start: make([]atomic.Int64, n), kind: make([]atomic.Int32, n)}
	now := time.Now().UnixNano()
	a.lastCreateOK.Store(now)
	a.lastList.Store(now)
	return a
}

func (a *activity) begin(w int, k opKind) time.Time {
	now := time.Now()
	a.kind[w].Store(int32(k))
	a.start[w].Store(now.UnixNano())
	return now
}

func (a *activity) end(w int) { a.start[w].Store(0) }

// ---- the fixture and the phases ----

type volumeDir struct {
	path   string
	fstype string
}

// fixture is what the phases share: the vssd binary, the volumes and the
// state directory.
type fixture struct {
	exe    string
	p      params
	vols   []volumeDir
	volSet map[string]bool
	dir    string // socket, configuration, log
	state  string
}

// env is one phase.
type env struct {
	*fixture
	t       *testing.T
	ph      phase
	dur     time.Duration
	d       *daemon
	clients []*apiclient.Client // the requesters' current connections
	reg     registry
	act     *activity
	fail    failures
	stopped atomic.Bool
	hung    atomic.Pointer[string]
}

func (e *env) stop() { e.stopped.Store(true) }

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// TestLoad runs the load, in two phases on the same volumes and state
// directory: "delete" (requesters delete what they made; nothing is
// evicted; every listed set is whole), then, after a restart of vssd,
// "evict" (a small max_shadow_copies; the service evicts).
func TestLoad(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "mkfs.xfs", "mkfs.ext4", "losetup")
	began := time.Now()
	f := &fixture{p: loadParams(t), volSet: map[string]bool{}}
	f.exe = buildVssd(t)
	// The volumes: five btrfs, two XFS (reflink), one ext4 (complete copy,
	// stored on the first XFS volume, frozen for the commit).
	for _, fs := range []struct {
		typ  string
		size int64
	}{{"btrfs", 256 << 20}, {"btrfs", 256 << 20}, {"btrfs", 256 << 20}, {"btrfs", 256 << 20}, {"btrfs", 256 << 20},
		{"xfs", 320 << 20}, {"xfs", 320 << 20}, {"ext4", 64 << 20}} {
		v := testutil.NewFS(t, fs.typ, fs.size)
		seed(t, v.Dir, len(f.vols))
		f.vols = append(f.vols, volumeDir{path: v.Dir, fstype: fs.typ})
		f.volSet[v.Dir] = true
	}
	f.dir = t.TempDir()
	f.state = filepath.Join(f.dir, "state")
	t.Logf("%d volumes; %d requesters (%d wait), %d readers; autoretry %v, stall limit %v; setup took %v",
		len(f.vols), nRequesters, nRequesters*2/5, nReaders, f.p.wait, f.p.stall, time.Since(began).Round(time.Millisecond))

	var tables []string
	var carried []*setRec // nil: the first phase did not run
	ok := t.Run(phaseDelete.name, func(t *testing.T) {
		var table string
		carried, table = f.run(t, phaseDelete, f.p.delete, false, nil)
		if carried == nil {
			carried = []*setRec{}
		}
		tables = append(tables, table)
	})
	if ok {
		t.Run(phaseEvict.name, func(t *testing.T) {
			_, table := f.run(t, phaseEvict, f.p.evict, carried != nil, carried)
			tables = append(tables, table)
		})
	} else {
		t.Errorf("the %s phase failed; not running the %s phase", phaseDelete.name, phaseEvict.name)
	}
	if path := os.Getenv("VSS_LOAD_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(strings.Join(tables, "\n")), 0o644); err != nil {
			t.Errorf("VSS_LOAD_TABLE: %v", err)
		}
	}
	t.Logf("total run time %v", time.Since(began).Round(time.Millisecond))
}

// run runs one phase: it starts vssd on the state directory (after a
// restart, the sets carried from the previous phase must be there; they
// are deleted first), runs the load for dur, checks, and stops vssd. It
// returns the sets that are left, and the table of results.
func (f *fixture) run(t *testing.T, ph phase, dur time.Duration, restart bool, carried []*setRec) ([]*setRec, string) {
	e := &env{fixture: f, t: t, ph: ph, dur: dur, reg: newRegistry()}
	e.d = startVssd(t, f.exe, f.dir, f.state, ph.maxShadows)
	admin := dial(t, e.d.socket)
	if !restart {
		ctx, cancel := callCtx()
		ext4, xfs0 := f.vols[7].path, f.vols[5].path
		if err := admin.AddShadowStorage(ctx, ext4, xfs0, config.MaxSize{Unbounded: true}); err != nil {
			t.Fatalf("add shadowstorage /for=%s /on=%s: %v", ext4, xfs0, err)
		}
		vols, err := admin.ListVolumes(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		providers := map[string]string{}
		for _, v := range vols {
			providers[v.Path] = v.Provider
		}
		for _, v := range f.vols {
			t.Logf("volume %s (%s): provider %s", v.path, v.fstype, providers[v.path])
		}
	} else {
		// A restart: the previous phase's persistent sets are there,
		// nothing was left to recover; then they go.
		if log := e.d.logText(); strings.Contains(log, "recovered what the previous run left") {
			t.Errorf("vssd recovered something after an orderly stop:\n%s", log)
		}
		e.checkCatalog("after the restart", admin, carried, 0)
		var old []uuid.UUID
		for _, rec := range carried {
			old = append(old, rec.ids...)
		}
		if len(old) > 0 {
			ctx, cancel := callCtx()
			if n, err := admin.DeleteShadows(ctx, old); err != nil || n != len(old) {
				t.Fatalf("deleting the %d shadows of the previous phase: deleted %d, %v", len(old), n, err)
			}
			cancel()
		}
		e.checkCatalog("after deleting the previous phase's sets", admin, nil, 0)
	}
	t.Logf("vssd pid %d, max_shadow_copies %d; %v of load", e.d.pid, ph.maxShadows, dur)

	e.clients = make([]*apiclient.Client, nRequesters)
	for i := range e.clients {
		e.clients[i] = dial(t, e.d.socket)
	}
	t.Cleanup(func() {
		for _, c := range e.clients {
			if c != nil {
				c.Close() // those a requester dialled again
			}
		}
	})
	readers := make([]*apiclient.Client, nReaders)
	for i := range readers {
		readers[i] = dial(t, e.d.socket)
	}
	heartbeat := dial(t, e.d.socket)

	nWorkers := nRequesters + nReaders + len(f.vols) + 1 // and the administrator
	e.act = newActivity(nWorkers)
	all := make([]stats, nWorkers+2) // and the heartbeat, and the test's own scheduling
	kept := make([][]*setRec, nRequesters)

	// Memory and descriptors of vssd, every second, from the start of the
	// load.
	mem := startSampler(e.d.pid, f.exe, e.reg.shadows)
	defer mem.stop()

	loadStart := time.Now()
	watchdogDone, watchdogExited := make(chan struct{}), make(chan struct{})
	go func() { e.watchdog(watchdogDone); close(watchdogExited) }()
	timer := time.AfterFunc(dur, e.stop)
	var wg sync.WaitGroup
	for i := range e.clients {
		wg.Go(func() { kept[i] = e.requester(i, &all[i]) })
	}
	for i := range readers {
		w := nRequesters + i
		wg.Go(func() { e.reader(w, readers[i], &all[w]) })
	}
	for i, v := range f.vols {
		w := nRequesters + nReaders + i
		wg.Go(func() { e.churn(w, v.path, &all[w]) })
	}
	if ph.evict {
		w := nWorkers - 1
		admin2 := dial(t, e.d.socket)
		wg.Go(func() { e.administrator(w, admin2, &all[w]) })
	}
	wg.Go(func() {
		// A call that takes no lock in vssd: its latency is what the
		// machine and the Go runtime add to every call.
		for !e.stopped.Load() {
			ctx, cancel := callCtx()
			t0 := time.Now()
			_, err := heartbeat.Info(ctx)
			d := time.Since(t0)
			cancel()
			if err != nil {
				all[nWorkers].add(opInfo, outFailed, d)
				if e.hung.Load() == nil {
					e.fail.add("info: %v", err)
				}
			} else {
				all[nWorkers].add(opInfo, outOK, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	wg.Go(func() {
		// How late this process's own goroutines run: what the latencies
		// measured here owe to the machine rather than to vssd.
		for !e.stopped.Load() {
			t0 := time.Now()
			time.Sleep(50 * time.Millisecond)
			all[nWorkers+1].add(opTick, outOK, time.Since(t0)-50*time.Millisecond)
		}
	})
	wg.Wait()
	timer.Stop()
	loadTime := time.Since(loadStart)
	close(watchdogDone)
	<-watchdogExited
	if h := e.hung.Load(); h != nil {
		e.fail.report(t)
		t.Fatalf("deadlock or hang: %s\n(vssd's goroutines are at the end of its log, printed below; the test's in %s)", *h, e.d.stacks)
	}
	t.Logf("load ran %v", loadTime.Round(time.Millisecond))

	// Wind down: half the requesters delete what they kept; the others'
	// sets (Backup and ClientAccessible) stay.
	var left []*setRec
	for i := range kept {
		if (i/2)%2 == 0 && e.clients[i] != nil {
			wg.Go(func() {
				for _, rec := range kept[i] {
					e.deleteSet(i, e.clients[i], rec, &all[i])
				}
			})
		} else {
			left = append(left, kept[i]...)
		}
	}
	wg.Wait()
	e.checkCatalog("after the load", admin, left, 0)

	// Close every connection: the Backup shadows of the requesters that
	// kept theirs are released; the ClientAccessible ones stay.
	var persistent []*setRec
	for _, rec := range left {
		if !rec.ctx.AutoRelease() {
			persistent = append(persistent, rec)
		}
	}
	for _, c := range append(e.clients, readers...) {
		if c != nil {
			c.Close()
		}
	}
	heartbeat.Close()
	released := e.waitReleased(admin, persistent, 30*time.Second)
	for _, rec := range left {
		if rec.ctx.AutoRelease() {
			e.reg.forget(rec)
		}
	}
	var rel stats
	rel.add(opAutoRelease, outOK, released)
	e.checkCatalog("after the connections closed", admin, persistent, 10*time.Second)
	t.Logf("auto-release of %d Backup sets after their connections closed: %v", len(left)-len(persistent), released.Round(time.Millisecond))
	admin.Close()
	samples := mem.stop()

	// An orderly stop, then the catalog file itself.
	if err := e.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := e.d.wait(t, 60*time.Second); code != 0 {
		t.Errorf("vssd exited with status %d after SIGTERM", code)
	}
	if n := countProcs(f.exe); n != 0 {
		t.Errorf("%d processes of the vssd binary (freeze guards?) still run after vssd stopped", n)
	}
	e.checkCatalogFile(filepath.Join(f.state, "catalog.db"), persistent)
	e.checkClaims()
	if errs := e.d.errorLines(); len(errs) > 0 {
		t.Errorf("vssd logged %d errors, the first:\n%s", len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
	}

	// Results.
	var total stats
	for i := range all {
		total.merge(&all[i])
	}
	total.merge(&rel)
	table := fmt.Sprintf("phase %s (max_shadow_copies %d), %v of load:\n%s", ph.name, ph.maxShadows, loadTime.Round(time.Millisecond), e.table(&total, loadStart, loadTime))
	t.Logf("results of the %s", table)
	e.checkMemory(samples, e.d.heapSamples(), loadStart, loadStart.Add(loadTime))
	e.fail.report(t)
	return persistent, table
}

// ---- workers ----

// requester makes sets in a loop until the load stops, deleting its oldest
// set beyond the ones it keeps, and returns the sets it still has.
func (e *env) requester(w int, st *stats) []*setRec {
	c := e.clients[w]
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	ctxType := vss.CtxClientAccessible
	if e.ph.backup(w) {
		ctxType = vss.CtxBackup
	}
	keep, kind := e.ph.keep(w), opCreateNoWait
	if waits(w) {
		kind = opCreateWait
	}
	var mine []*setRec
	for !e.stopped.Load() {
		n := 1 + rng.IntN(maxPerSet)
		var vols []string
		for _, i := range rng.Perm(len(e.vols))[:n] {
			vols = append(vols, e.vols[i].path)
		}
		req := service.CreateRequest{Volumes: vols, Context: ctxType}
		if waits(w) {
			req.AutoRetry = e.p.wait
		}
		ctx, cancel := callCtx()
		t0 := e.act.begin(w, kind)
		res, err := c.CreateShadowSet(ctx, req)
		d := time.Since(t0)
		e.act.end(w)
		cancel()
		if res != nil && len(res.Evicted) > 0 {
			if !e.ph.evict {
				e.fail.add("requester %d: create shadow %v evicted %d shadows, with max_shadow_copies %d", w, vols, len(res.Evicted), e.ph.maxShadows)
			}
			e.reg.evict(res.Evicted)
		}
		switch code := vsserr.CodeOf(err); {
		case err == nil:
			rec, problem := e.created(w, res, vols, ctxType)
			if problem != "" {
				e.fail.add("requester %d: create shadow %v: %s", w, vols, problem)
				st.add(kind, outBad, d)
				break
			}
			st.add(kind, outOK, d)
			e.act.lastCreateOK.Store(time.Now().UnixNano())
			e.reg.add(rec)
			mine = append(mine, rec)
			// The backup program reads from its shadows for a while.
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		case code == vsserr.VSS_E_SNAPSHOT_SET_IN_PROGRESS:
			st.add(kind, outInProgress, d)
			if waits(w) && d < e.p.wait {
				e.fail.add("requester %d asked to wait %v and got %v after %v", w, e.p.wait, err, d)
			}
			if !waits(w) {
				// A program that does not wait tries again a little later.
				time.Sleep(time.Duration(5+rng.IntN(15)) * time.Millisecond)
			}
		case code == vsserr.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED && e.ph.evict && strings.Contains(err.Error(), "none of them may be deleted"):
			// Every shadow of a volume belongs to a live session.
			st.add(kind, outMaxReached, d)
			e.act.lastCreateOK.Store(time.Now().UnixNano())
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		default:
			st.add(kind, outFailed, d)
			if e.hung.Load() == nil {
				e.fail.add("requester %d: create shadow %v (%s, autoretry %v) after %v: %v (%s)", w, vols, ctxType, req.AutoRetry, d, err, code)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(mine) > keep && !e.stopped.Load() {
			e.deleteSet(w, c, mine[0], st)
			mine = mine[1:]
		}
		if rng.IntN(e.ph.reconnect(w)) == 0 && !e.stopped.Load() {
			// The requester ends and starts again: its session ends, and
			// with it its auto-release sets; its persistent ones stay.
			t0 := e.act.begin(w, opReconnect)
			if ctxType.AutoRelease() {
				e.reg.release(mine)
				mine = nil
			}
			c.Close()
			nc, err := apiclient.Dial(context.Background(), e.d.socket, 10*time.Second)
			d := time.Since(t0)
			e.act.end(w)
			if err != nil {
				st.add(opReconnect, outFailed, d)
				e.fail.add("requester %d: connecting again: %v", w, err)
				e.clients[w] = nil
				return mine
			}
			st.add(opReconnect, outOK, d)
			c, e.clients[w] = nc, nc
		}
	}
	return mine
}

// created checks a made set: one shadow per volume asked, on disk (or,
// when the service evicts, just evicted by the next create: then the
// oldest shadow of the volume that no live session holds is the one just
// made; a claim, checked at the end).
func (e *env) created(w int, res *service.CreateResult, vols []string, ctxType vss.Context) (*setRec, string) {
	if res == nil {
		return nil, "no result"
	}
	rec := &setRec{id: res.Set.ID, ctx: ctxType, created: time.Now()}
	if len(res.Shadows) != len(vols) || res.Set.Count != len(vols) {
		return nil, fmt.Sprintf("set %s has %d shadows (count %d) for %d volumes", res.Set.ID, len(res.Shadows), res.Set.Count, len(vols))
	}
	for _, sh := range res.Evicted {
		if sh.Owner != "" && sh.Context.AutoRelease() && e.liveSession(sh) {
			return nil, fmt.Sprintf("evicted shadow %s of a live session", sh.ID)
		}
	}
	got := map[string]bool{}
	for _, sh := range res.Shadows {
		if sh.SetID != res.Set.ID || sh.SetCount != len(vols) || sh.Context != ctxType {
			return nil, fmt.Sprintf("shadow %s: set %s count %d context %s; want set %s count %d context %s",
				sh.ID, sh.SetID, sh.SetCount, sh.Context, res.Set.ID, len(vols), ctxType)
		}
		if _, err := os.Lstat(sh.ShadowPath); err != nil {
			if !e.ph.evict || !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Sprintf("shadow %s of %s is not on disk: %v", sh.ID, sh.VolumePath, err)
			}
			e.reg.claim(claim{shadow: sh.ID, set: sh.SetID, at: time.Now(), who: fmt.Sprintf("requester %d's check of its new set", w)})
		}
		got[sh.VolumePath] = true
		rec.ids = append(rec.ids, sh.ID)
		rec.paths = append(rec.paths, sh.ShadowPath)
		rec.vols = append(rec.vols, sh.VolumePath)
	}
	for _, v := range vols {
		if !got[v] {
			return nil, fmt.Sprintf("set %s has no shadow of %s", res.Set.ID, v)
		}
	}
	return rec, ""
}

// liveSession reports whether an auto-release shadow belongs to a set the
// registry still counts as held by its requester's open connection.
func (e *env) liveSession(sh catalog.Shadow) bool {
	e.reg.mu.RLock()
	defer e.reg.mu.RUnlock()
	rec, ok := e.reg.live[sh.SetID]
	return ok && rec.delStart.IsZero()
}

// deleteSet deletes a whole set and checks its shadows are gone. When the
// service evicts, some of them may be gone already: those the service said
// it evicted are left out, and when the delete finds a shadow missing, it
// deletes what the set still has; what it did not find must turn out to
// have been evicted (a claim, checked at the end).
func (e *env) deleteSet(w int, c *apiclient.Client, rec *setRec, st *stats) {
	e.reg.beginDelete(rec)
	ids := slices.DeleteFunc(slices.Clone(rec.ids), e.reg.isEvicted)
	if len(ids) == 0 {
		e.reg.endDelete(rec) // the service evicted all of it
		return
	}
	outcome := outOK
	if len(ids) < len(rec.ids) {
		outcome = outEvicted
	}
	t0 := e.act.begin(w, opDelete)
	defer e.act.end(w)
	var deleted []uuid.UUID
	for try := 0; len(ids) > 0; try++ {
		ctx, cancel := callCtx()
		n, err := c.DeleteShadows(ctx, ids)
		cancel()
		if err == nil && n == len(ids) {
			deleted = append(deleted, ids...)
			break
		}
		if !e.ph.evict || vsserr.CodeOf(err) != vsserr.VSS_E_OBJECT_NOT_FOUND || try == 3 {
			st.add(opDelete, outFailed, time.Since(t0))
			e.fail.add("requester %d: delete set %s (%d shadows) after %v: deleted %d, %v", w, rec.id, len(ids), time.Since(t0), n, err)
			e.reg.forget(rec)
			return
		}
		// Evicted meanwhile: delete what the set still has.
		outcome = outEvicted
		ctx, cancel = callCtx()
		left, err := c.Select(ctx, service.Selection{SetID: rec.id})
		cancel()
		if vsserr.CodeOf(err) == vsserr.VSS_E_OBJECT_NOT_FOUND {
			left, err = nil, nil
		}
		if err != nil {
			st.add(opDelete, outFailed, time.Since(t0))
			e.fail.add("requester %d: select set %s: %v", w, rec.id, err)
			e.reg.forget(rec)
			return
		}
		ids = ids[:0]
		for _, sh := range left {
			ids = append(ids, sh.ID)
		}
	}
	d := time.Since(t0)
	for i, id := range rec.ids {
		if slices.Contains(deleted, id) {
			if _, err := os.Lstat(rec.paths[i]); !errors.Is(err, os.ErrNotExist) {
				e.fail.add("requester %d: deleted shadow %s is still on disk (%v)", w, rec.paths[i], err)
			}
		} else if !e.reg.isEvicted(id) {
			e.reg.claim(claim{shadow: id, set: rec.id, at: time.Now(), who: fmt.Sprintf("requester %d's delete", w)})
		}
	}
	e.reg.endDelete(rec)
	st.add(opDelete, outcome, d)
}

// reader lists in a loop until the load stops.
func (e *env) reader(w int, c *apiclient.Client, st *stats) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	for n := 0; !e.stopped.Load(); n++ {
		ctx, cancel := callCtx()
		switch {
		case n%50 == 49:
			t0 := e.act.begin(w, opListVolumes)
			vols, err := c.ListVolumes(ctx)
			d := time.Since(t0)
			e.act.end(w)
			if err != nil {
				st.add(opListVolumes, outFailed, d)
				if e.hung.Load() == nil {
					e.fail.add("reader %d: list volumes: %v", w, err)
				}
				break
			}
			seen := 0
			for _, v := range vols {
				if e.volSet[v.Path] {
					seen++
				}
			}
			if seen != len(e.vols) {
				st.add(opListVolumes, outBad, d)
				e.fail.add("reader %d: list volumes shows %d of the %d test volumes", w, seen, len(e.vols))
				break
			}
			st.add(opListVolumes, outOK, d)
		default:
			kind, sel := opListAll, service.Selection{}
			if n%5 == 4 {
				kind, sel.For = opListVolume, e.vols[rng.IntN(len(e.vols))].path
			}
			t0 := e.act.begin(w, kind)
			list, err := c.ListShadows(ctx, sel)
			t1 := time.Now()
			d := t1.Sub(t0)
			e.act.end(w)
			if err != nil {
				st.add(kind, outFailed, d)
				if e.hung.Load() == nil {
					e.fail.add("reader %d: list shadows %+v: %v", w, sel, err)
				}
				break
			}
			e.act.lastList.Store(t1.UnixNano())
			if problem := e.checkListing(list, t0, t1, sel.For, fmt.Sprintf("reader %d", w)); problem != "" {
				st.add(kind, outBad, d)
				e.fail.add("reader %d: list shadows (for %q) of %d shadows: %s", w, sel.For, len(list), problem)
				break
			}
			st.add(kind, outOK, d)
		}
		cancel()
	}
}

// checkListing checks one listing made between t0 and t1 (of the shadows
// of forVol, if given). Without eviction every set is whole; with it, a
// shadow missing from a set must be one the service evicted: either an
// evicting create has said so already, or it is claimed, to be checked at
// the end.
func (e *env) checkListing(list []catalog.Shadow, t0, t1 time.Time, forVol, who string) string {
	ids := make(map[uuid.UUID]bool, len(list))
	sets := map[uuid.UUID][]*catalog.Shadow{}
	perVolume := map[string]int{}
	for i := range list {
		sh := &list[i]
		if ids[sh.ID] {
			return fmt.Sprintf("shadow %s is listed twice", sh.ID)
		}
		ids[sh.ID] = true
		if i > 0 && sh.Created.Before(list[i-1].Created) {
			return fmt.Sprintf("not oldest first: %s (%v) after %s (%v)", sh.ID, sh.Created, list[i-1].ID, list[i-1].Created)
		}
		if !e.volSet[sh.VolumePath] {
			return fmt.Sprintf("shadow %s of unknown volume %s", sh.ID, sh.VolumePath)
		}
		if forVol != "" && sh.VolumePath != forVol {
			return fmt.Sprintf("shadow %s of %s in the listing for %s", sh.ID, sh.VolumePath, forVol)
		}
		if perVolume[sh.VolumePath]++; perVolume[sh.VolumePath] > e.ph.maxShadows {
			return fmt.Sprintf("%s has more than max_shadow_copies (%d) shadows", sh.VolumePath, e.ph.maxShadows)
		}
		sets[sh.SetID] = append(sets[sh.SetID], sh)
	}
	for id, shs := range sets {
		want := shs[0].SetCount
		if forVol != "" {
			want = 1
		}
		if len(shs) > want || len(shs) < want && !e.ph.evict {
			return fmt.Sprintf("half a set: set %s is listed with %d of its %d shadows", id, len(shs), shs[0].SetCount)
		}
		vols := map[string]bool{}
		for _, sh := range shs {
			if !sh.Created.Equal(shs[0].Created) || sh.SetCount != shs[0].SetCount || sh.SetID != id {
				return fmt.Sprintf("set %s: its shadows disagree on the creation time or count", id)
			}
			if vols[sh.VolumePath] {
				return fmt.Sprintf("set %s has two shadows of %s", id, sh.VolumePath)
			}
			vols[sh.VolumePath] = true
		}
	}
	problem, claims := e.checkAgainstRegistry(sets, ids, t0, t1, forVol, who)
	for _, c := range claims {
		e.reg.claim(c)
	}
	return problem
}

// checkAgainstRegistry checks a listing against what the requesters know.
func (e *env) checkAgainstRegistry(sets map[uuid.UUID][]*catalog.Shadow, ids map[uuid.UUID]bool, t0, t1 time.Time, forVol, who string) (string, []claim) {
	e.reg.mu.RLock()
	defer e.reg.mu.RUnlock()
	for id := range sets {
		if at, ok := e.reg.gone[id]; ok && at.Before(t0) {
			return fmt.Sprintf("set %s is listed, but its delete returned %v before the listing began", id, t0.Sub(at)), nil
		}
		if at, ok := e.reg.released[id]; ok && t0.Sub(at) > e.p.stall {
			return fmt.Sprintf("auto-release set %s is still listed %v after its requester's connection closed", id, t0.Sub(at).Round(time.Millisecond)), nil
		}
	}
	for id := range ids {
		if at, ok := e.reg.evicted[id]; ok && at.Before(t0) {
			return fmt.Sprintf("shadow %s is listed, but the create that evicted it returned %v before the listing began", id, t0.Sub(at)), nil
		}
	}
	var claims []claim
	for id, rec := range e.reg.live {
		if !rec.created.Before(t0) || (!rec.delStart.IsZero() && !rec.delStart.After(t1)) {
			continue
		}
		for i, sid := range rec.ids {
			if forVol != "" && rec.vols[i] != forVol || ids[sid] {
				continue
			}
			if _, ok := e.reg.evicted[sid]; ok {
				continue
			}
			if !e.ph.evict {
				return fmt.Sprintf("set %s is missing shadow %s (%s), though its create returned %v before the listing began", id, sid, rec.vols[i], t0.Sub(rec.created)), nil
			}
			claims = append(claims, claim{shadow: sid, set: id, at: t1, who: who})
		}
	}
	return "", claims
}

// checkClaims checks that every shadow a listing or a delete missed was
// evicted by a create.
func (e *env) checkClaims() {
	e.reg.mu.RLock()
	defer e.reg.mu.RUnlock()
	bad := 0
	for _, c := range e.reg.claims {
		if _, ok := e.reg.evicted[c.shadow]; ok {
			continue
		}
		if bad++; bad <= 10 {
			e.t.Errorf("%s missed shadow %s of set %s at %v, and no create said it evicted it", c.who, c.shadow, c.set, c.at.Format(time.StampMilli))
		}
	}
	if bad > 10 {
		e.t.Errorf("… %d shadows missed in all", bad)
	}
	if len(e.reg.claims) > 0 {
		e.t.Logf("%d shadows missing from listings and deletes were all evicted", len(e.reg.claims)-bad)
	}
}

// administrator deletes the oldest shadow of a random volume every 100 ms,
// as vssadmin delete shadows /for=VOLUME /oldest does, whoever holds it.
func (e *env) administrator(w int, c *apiclient.Client, st *stats) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	for !e.stopped.Load() {
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := callCtx()
		vol := e.vols[rng.IntN(len(e.vols))].path
		t0 := e.act.begin(w, opAdminDelete)
		oldest, err := c.Select(ctx, service.Selection{For: vol, Oldest: true})
		var n int
		if err == nil && len(oldest) > 0 {
			n, err = c.DeleteShadows(ctx, ids(oldest))
		}
		d := time.Since(t0)
		e.act.end(w)
		cancel()
		switch {
		case err == nil && len(oldest) == 0:
		case err == nil && n == len(oldest):
			e.reg.evict(oldest)
			st.add(opAdminDelete, outOK, d)
		case vsserr.CodeOf(err) == vsserr.VSS_E_OBJECT_NOT_FOUND:
			st.add(opAdminDelete, outNotFound, d) // another delete was first
		default:
			st.add(opAdminDelete, outFailed, d)
			if e.hung.Load() == nil {
				e.fail.add("administrator: delete shadows /for=%s /oldest: deleted %d, %v", vol, n, err)
			}
		}
	}
}

func ids(shadows []catalog.Shadow) []uuid.UUID {
	var out []uuid.UUID
	for _, sh := range shadows {
		out = append(out, sh.ID)
	}
	return out
}

// churn appends 4 KiB to a file of the volume every 20 ms (wrapping at 256
// KiB), as an application would write while shadows are made.
func (e *env) churn(w int, vol string, st *stats) {
	f, err := os.OpenFile(filepath.Join(vol, "data", "churn.log"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		e.fail.add("writer of %s: %v", vol, err)
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var off int64
	for i := 0; !e.stopped.Load(); i++ {
		copy(buf, fmt.Sprintf("%d %s\n", i, time.Now().Format(time.RFC3339Nano)))
		t0 := e.act.begin(w, opWrite)
		_, err := f.WriteAt(buf, off)
		d := time.Since(t0)
		e.act.end(w)
		if err != nil {
			st.add(opWrite, outFailed, d)
			e.fail.add("writer of %s: %v", vol, err)
			return
		}
		st.add(opWrite, outOK, d)
		if off += int64(len(buf)); off >= 256<<10 {
			off = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchdog stops the load when something hangs: an operation that lasts
// too long, no set made or no listing done for the stall limit. It then
// has vssd print its goroutines (SIGQUIT) and writes the test's own.
func (e *env) watchdog(done <-chan struct{}) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if e.stopped.Load() {
			continue // winding down: the workers finish their last call
		}
		now := time.Now()
		var reason string
		for w := range e.act.start {
			s := e.act.start[w].Load()
			if s == 0 {
				continue
			}
			k := opKind(e.act.kind[w].Load())
			limit := e.p.stall
			if k == opCreateWait {
				limit += e.p.wait
			}
			if took := now.Sub(time.Unix(0, s)); took > limit {
				reason = fmt.Sprintf("worker %d: %s has been running for %v", w, k, took.Round(time.Millisecond))
				break
			}
		}
		if reason == "" {
			if since := now.Sub(time.Unix(0, e.act.lastCreateOK.Load())); since > e.p.stall {
				reason = fmt.Sprintf("no shadow copy set was made for %v", since.Round(time.Millisecond))
			} else if since := now.Sub(time.Unix(0, e.act.lastList.Load())); since > e.p.stall {
				reason = fmt.Sprintf("no listing completed for %v", since.Round(time.Millisecond))
			}
		}
		if reason == "" {
			continue
		}
		e.hung.Store(&reason)
		e.stop()
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		if f, err := os.CreateTemp("", "vss-load-test-stacks-*.txt"); err == nil {
			f.Write(buf)
			f.Close()
			e.d.stacks = f.Name()
		}
		_ = e.d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-e.d.done:
		case <-time.After(10 * time.Second):
			_ = e.d.cmd.Process.Kill()
		}
		return
	}
}

// waitReleased waits until the catalog holds exactly the want sets (the
// auto-release sets of the closed connections gone) and returns how long
// it took.
func (e *env) waitReleased(c *apiclient.Client, want []*setRec, limit time.Duration) time.Duration {
	start := time.Now()
	wantIDs := expected(want, e.reg.isEvicted)
	for {
		ctx, cancel := callCtx()
		list, err := c.ListShadows(ctx, service.Selection{})
		cancel()
		if err != nil {
			e.t.Fatalf("list shadows: %v", err)
		}
		var extra []string
		for _, sh := range list {
			if _, ok := wantIDs[sh.ID]; !ok {
				extra = append(extra, fmt.Sprintf("%s (set %s, %s, owner %q)", sh.ID, sh.SetID, sh.Context, sh.Owner))
			}
		}
		if len(extra) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			e.t.Errorf("%d auto-release shadows are still listed %v after their connections closed: %s", len(extra), limit, strings.Join(extra[:min(len(extra), 5)], ", "))
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- end checks ----

// expected returns the shadows the sets hold, by ID, but those evicted.
func expected(sets []*setRec, evicted func(uuid.UUID) bool) map[uuid.UUID]string {
	m := map[uuid.UUID]string{}
	for _, rec := range sets {
		for i, id := range rec.ids {
			if !evicted(id) {
				m[id] = rec.paths[i]
			}
		}
	}
	return m
}

// checkCatalog checks, through the API, that the catalog holds exactly the
// given sets (but their evicted shadows), and that the storage directories
// hold exactly their shadows. With settle, shadows still being deleted
// (out of the catalog, not yet off the disk: a session's auto-release runs
// after its connection closed) are given that long to go.
func (e *env) checkCatalog(when string, c *apiclient.Client, sets []*setRec, settle time.Duration) {
	e.t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	list, err := c.ListShadows(ctx, service.Selection{})
	if err != nil {
		e.t.Fatalf("%s: list shadows: %v", when, err)
	}
	now := time.Now()
	if problem := e.checkListing(list, now, now, "", when); problem != "" {
		e.t.Errorf("%s: %s", when, problem)
	}
	e.compare(when+", the listing", list, sets)
	deadline := time.Now().Add(settle)
	for {
		problems := e.diskProblems(list)
		if len(problems) == 0 || time.Now().After(deadline) {
			for _, p := range problems {
				e.t.Errorf("%s: %s", when, p)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) compare(what string, list []catalog.Shadow, sets []*setRec) {
	e.t.Helper()
	want := expected(sets, e.reg.isEvicted)
	got := map[uuid.UUID]bool{}
	for _, sh := range list {
		got[sh.ID] = true
		if _, ok := want[sh.ID]; !ok {
			e.t.Errorf("%s has shadow %s (set %s, %s, %s) that no requester holds", what, sh.ID, sh.SetID, sh.VolumePath, sh.Context)
		}
	}
	for id, path := range want {
		if !got[id] {
			e.t.Errorf("%s lacks shadow %s (%s)", what, id, path)
		}
	}
	nsets := 0
	for _, rec := range sets {
		if slices.ContainsFunc(rec.ids, func(id uuid.UUID) bool { _, ok := want[id]; return ok }) {
			nsets++
		}
	}
	e.t.Logf("%s: %d shadows in %d sets, as expected", what, len(want), nsets)
}

// checkDisk checks that the storage directories hold exactly the listed
// shadows.
func (e *env) checkDisk(when string, list []catalog.Shadow) {
	e.t.Helper()
	for _, p := range e.diskProblems(list) {
		e.t.Errorf("%s: %s", when, p)
	}
}

// diskProblems compares the storage directories with the listed shadows.
func (e *env) diskProblems(list []catalog.Shadow) []string {
	inCatalog := map[string]bool{}
	for _, sh := range list {
		inCatalog[sh.ShadowPath] = true
	}
	var problems []string
	onDisk := map[string]bool{}
	for _, v := range e.vols {
		dir := filepath.Join(v.path, provider.StorageDirName)
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			problems = append(problems, err.Error())
		}
		for _, ent := range ents {
			onDisk[filepath.Join(dir, ent.Name())] = true
		}
	}
	for p := range onDisk {
		if !inCatalog[p] {
			problems = append(problems, fmt.Sprintf("orphan in the shadow storage: %s is on disk but not in the catalog", p))
		}
	}
	for p := range inCatalog {
		if !onDisk[p] {
			problems = append(problems, fmt.Sprintf("the catalog lists %s, which is not on disk", p))
		}
	}
	sort.Strings(problems)
	return problems
}

// checkCatalogFile reads the catalog of the stopped vssd: no unfinished
// journal entry, exactly the given sets, each set record naming exactly its
// shadows.
func (e *env) checkCatalogFile(path string, sets []*setRec) {
	e.t.Helper()
	cat, err := catalog.Open(path)
	if err != nil {
		e.t.Errorf("opening the catalog: %v", err)
		return
	}
	defer cat.Close()
	pending, err1 := cat.Pending()
	deleting, err2 := cat.Deleting()
	freezes, err3 := cat.Freezes()
	shadows, err4 := cat.Shadows()
	records, err5 := cat.Sets()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		e.t.Errorf("reading the catalog: %v", err)
		return
	}
	if len(pending)+len(deleting)+len(freezes) != 0 {
		e.t.Errorf("the catalog of the stopped vssd has unfinished work: %d sets being made, %d shadows being deleted, %d freezes", len(pending), len(deleting), len(freezes))
	}
	e.compare("the catalog file", shadows, sets)
	bySet := map[uuid.UUID][]uuid.UUID{}
	for _, sh := range shadows {
		bySet[sh.SetID] = append(bySet[sh.SetID], sh.ID)
	}
	for _, s := range records {
		got := bySet[s.ID]
		delete(bySet, s.ID)
		if len(s.Shadows) > s.Count || len(s.Shadows) < s.Count && !e.ph.evict || len(got) != len(s.Shadows) {
			e.t.Errorf("catalog set %s: count %d, %d shadow IDs, %d shadow records", s.ID, s.Count, len(s.Shadows), len(got))
			continue
		}
		for _, id := range s.Shadows {
			if !slices.Contains(got, id) {
				e.t.Errorf("catalog set %s names shadow %s, which has no record", s.ID, id)
			}
		}
	}
	for id, shs := range bySet {
		e.t.Errorf("catalog: %d shadows of set %s, which has no record", len(shs), id)
	}
	e.checkDisk("after vssd stopped", shadows)
}

// ---- memory ----

type memSample struct {
	at      time.Time
	rss     int64 // bytes
	fds     int
	procs   int // processes of the vssd binary (the daemon and its guards)
	shadows int // in the catalog, as far as the requesters know
}

type sampler struct {
	done    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	samples []memSample
	wg      sync.WaitGroup
}

func startSampler(pid int, exe string, shadows func() int) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if rss, err := vmRSS(pid); err == nil {
				fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
				s.mu.Lock()
				s.samples = append(s.samples, memSample{at: time.Now(), rss: rss, fds: len(fds), procs: countProcs(exe), shadows: shadows()})
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *sampler) stop() []memSample {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// countProcs counts the processes that run the binary exe.
func countProcs(exe string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		if p, err := os.Readlink(filepath.Join("/proc", ent.Name(), "exe")); err == nil && p == exe {
			n++
		}
	}
	return n
}

func median[T int | int64](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// checkMemory checks that vssd's memory stays flat in the steady part of
// the load (after the warm-up, and once the catalog has grown to its usual
// size: what vssd holds grows with it, as every listing in flight carries
// the whole catalog). It compares the medians of the first and the last
// third of two series: the RSS sampled every second, and the Go heap live
// after each garbage collection (vssd's gctrace). Either may grow by 30 %
// or 30 MiB. The RSS swings with the collector's timing (measured here:
// 200 to 375 MiB within seconds while the live heap stayed within 100 to
// 130 MiB), so with fewer than 30 samples (the short phases) its growth
// fails the test only when the live heap grows too.
func (e *env) checkMemory(samples []memSample, heap []heapSample, loadStart, loadEnd time.Time) {
	t := e.t
	var during []memSample
	for _, s := range samples {
		if !s.at.Before(loadStart) && !s.at.After(loadEnd) {
			during = append(during, s)
		}
	}
	if len(during) < 4 {
		t.Logf("too few memory samples (%d) to compare", len(during))
		return
	}
	var late []int
	for _, s := range during[len(during)/2:] {
		late = append(late, s.shadows)
	}
	steadyShadows := median(late)
	steady := loadStart.Add(e.p.warmup)
	for _, s := range during {
		if 10*s.shadows >= 9*steadyShadows {
			if s.at.After(steady) {
				steady = s.at
			}
			break
		}
	}
	var b strings.Builder
	var rss []int64
	var fds []int
	maxProcs := 0
	mark := false
	for _, s := range samples {
		if !mark && !s.at.Before(steady) {
			b.WriteString(" |")
			mark = true
		}
		fmt.Fprintf(&b, " %.0f/%d", mib(s.rss), s.shadows)
		maxProcs = max(maxProcs, s.procs)
		if !s.at.Before(steady) && !s.at.After(loadEnd) {
			rss = append(rss, s.rss)
			fds = append(fds, s.fds)
		}
	}
	t.Logf("vssd RSS (MiB) / shadows in the catalog, every second from the start of the load (| marks the steady part):%s", b.String())
	var live []int64
	for _, h := range heap {
		if !h.at.Before(steady) && !h.at.After(loadEnd) {
			live = append(live, h.live)
		}
	}
	if len(rss) < 6 || len(live) < 6 {
		t.Logf("too few samples in the steady part (%d of the RSS, %d of the heap, from %v into the load) to compare memory", len(rss), len(live), steady.Sub(loadStart).Round(time.Second))
		return
	}
	type verdict struct {
		first, last, growth int64
		ratio               float64
		grows               bool
	}
	judge := func(v []int64) verdict {
		third := len(v) / 3
		r := verdict{first: median(v[:third]), last: median(v[len(v)-third:])}
		r.growth = r.last - r.first
		r.ratio = float64(r.growth) / float64(r.first)
		r.grows = r.growth > rssGrowthBytes && r.ratio > rssGrowthRatio
		return r
	}
	r, h := judge(rss), judge(live)
	third := len(fds) / 3
	fd0, fd1 := median(fds[:third]), median(fds[len(fds)-third:])
	t.Logf("vssd memory in the steady part (from %v into the load, about %d shadows in the catalog), median of the first third → of the last third: RSS (%d samples) %.1f → %.1f MiB (%+.1f MiB, %+.1f%%; min %.1f, max %.1f); Go heap live after GC (%d collections) %.1f → %.1f MiB (%+.1f MiB, %+.1f%%; min %.1f, max %.1f); open descriptors %d → %d; at most %d processes of the vssd binary at once",
		steady.Sub(loadStart).Round(time.Second), steadyShadows,
		len(rss), mib(r.first), mib(r.last), mib(r.growth), 100*r.ratio, mib(slices.Min(rss)), mib(slices.Max(rss)),
		len(live), mib(h.first), mib(h.last), mib(h.growth), 100*h.ratio, mib(slices.Min(live)), mib(slices.Max(live)),
		fd0, fd1, maxProcs)
	limits := fmt.Sprintf("more than %.0f%% and %d MiB", 100*rssGrowthRatio, rssGrowthBytes>>20)
	if h.grows {
		t.Errorf("vssd's live Go heap grows: %.1f MiB → %.1f MiB (%s)", mib(h.first), mib(h.last), limits)
	}
	switch {
	case r.grows && (len(rss) >= 30 || h.grows):
		t.Errorf("vssd's RSS grows: %.1f MiB → %.1f MiB (%s)", mib(r.first), mib(r.last), limits)
	case r.grows:
		t.Logf("vssd's RSS grew %.1f MiB → %.1f MiB (%s) over only %d samples while its live heap stayed flat: the collector's timing, not a leak", mib(r.first), mib(r.last), limits, len(rss))
	}
	if fd1-fd0 > fdGrowth {
		t.Errorf("vssd's open descriptors grow: %d → %d", fd0, fd1)
	}
}

// heapSample is one garbage collection of vssd: the heap live after it.
type heapSample struct {
	at   time.Time
	live int64
}

// gcLine is a line of GODEBUG=gctrace=1: "gc 12 @3.456s 1%: … 194->196->99
// MB, …", the last number the heap live after the collection.
var gcLine = regexp.MustCompile(`^gc \d+ @([0-9.]+)s .* (\d+)->(\d+)->(\d+) MB`)

// heapSamples reads the collections from vssd's log.
func (d *daemon) heapSamples() []heapSample {
	var out []heapSample
	for _, l := range strings.Split(d.logText(), "\n") {
		m := gcLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		secs, err1 := strconv.ParseFloat(m[1], 64)
		live, err2 := strconv.ParseInt(m[4], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, heapSample{at: d.started.Add(time.Duration(secs * float64(time.Second))), live: live << 20})
	}
	return out
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// ---- the table ----

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func (e *env) table(s *stats, loadStart time.Time, loadTime time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s %9s %9s %9s %9s %9s  %s\n", "operation", "count", "ops/s", "p50", "p99", "max", "outcomes")
	row := func(name string, ds []time.Duration, outcomes string) {
		sorted := slices.Clone(ds)
		slices.Sort(sorted)
		var mx time.Duration
		if len(sorted) > 0 {
			mx = sorted[len(sorted)-1]
		}
		fmt.Fprintf(&b, "%-28s %9d %9.1f %9s %9s %9s  %s\n", name, len(ds), float64(len(ds))/loadTime.Seconds(),
			fmtDur(percentile(sorted, 0.50)), fmtDur(percentile(sorted, 0.99)), fmtDur(mx), outcomes)
	}
	sets := 0
	for k := opKind(0); k < nOps; k++ {
		if len(s.d[k]) == 0 {
			continue
		}
		var outs []string
		for o := range s.d[k] {
			outs = append(outs, o)
		}
		sort.Slice(outs, func(i, j int) bool { return rank(outs[i]) < rank(outs[j]) })
		var all []time.Duration
		var counts []string
		for _, o := range outs {
			all = append(all, s.d[k][o]...)
			counts = append(counts, fmt.Sprintf("%s=%d", o, len(s.d[k][o])))
		}
		row(k.String(), all, strings.Join(counts, " "))
		if len(outs) > 1 {
			for _, o := range outs {
				row("  "+o, s.d[k][o], "")
			}
		}
		if k == opCreateNoWait || k == opCreateWait {
			sets += len(s.d[k][outOK])
		}
	}
	deleted := len(s.d[opDelete][outOK]) + len(s.d[opDelete][outEvicted])
	fmt.Fprintf(&b, "sets made: %d (%.1f/s), deleted: %d (%.1f/s)\n", sets, float64(sets)/loadTime.Seconds(), deleted, float64(deleted)/loadTime.Seconds())
	// When the slow operations ended: many at once is a stall.
	bySecond := map[int]int{}
	for _, o := range s.slow {
		bySecond[int(o.end.Sub(loadStart)/time.Second)]++
	}
	var secs []int
	for sec := range bySecond {
		secs = append(secs, sec)
	}
	sort.Slice(secs, func(i, j int) bool {
		return bySecond[secs[i]] > bySecond[secs[j]] || bySecond[secs[i]] == bySecond[secs[j]] && secs[i] < secs[j]
	})
	var top []string
	for _, sec := range secs[:min(len(secs), 8)] {
		top = append(top, fmt.Sprintf("%ds: %d", sec, bySecond[sec]))
	}
	if len(s.slow) == 0 {
		fmt.Fprintf(&b, "operations over %v (waiting creates aside): none\n", slowOpLimit)
	} else {
		fmt.Fprintf(&b, "operations over %v (waiting creates aside): %d; the seconds of the load most of them ended in: %s\n", slowOpLimit, len(s.slow), strings.Join(top, ", "))
	}
	return b.String()
}

func rank(outcome string) int {
	switch outcome {
	case outOK:
		return 0
	case outInProgress:
		return 1
	case outMaxReached:
		return 2
	case outEvicted, outNotFound:
		return 3
	case outFailed:
		return 4
	}
	return 5
}

// ---- fixtures ----

// seed writes a small tree to a volume.
func seed(t *testing.T, dir string, n int) {
	t.Helper()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		b := make([]byte, 8<<10)
		for j := range b {
			b[j] = byte(i*31 + j*7 + n)
		}
		if err := os.WriteFile(filepath.Join(data, "sub", fmt.Sprintf("f%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/f0", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
}

// buildVssd compiles vssd into a temporary directory (with the race
// detector when VSS_LOAD_RACE=1).
func buildVssd(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			testutil.SkipOrFail(t, "needs the go command to build vssd")
		}
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + "/"}
	if os.Getenv("VSS_LOAD_RACE") == "1" {
		args = append(args, "-race") // vssd reports data races in its log
	}
	out, err := exec.Command(gobin, append(args, "github.com/linuxvss/vss/cmd/vssd")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build vssd: %v\n%s", err, out)
	}
	return filepath.Join(dir, "vssd")
}

// daemon is the running vssd.
type daemon struct {
	cmd     *exec.Cmd
	pid     int
	log     string
	socket  string
	state   string
	stacks  string // the test's goroutines, written by the watchdog
	started time.Time
	done    chan struct{}
	err     error
}

// startVssd starts vssd with its socket, configuration and log under dir
// and its state in state, and waits until it answers. It is killed at the
// end of the test, whatever happens; when the test failed, the tail of its
// log is printed and the whole log kept.
func startVssd(t *testing.T, exe, dir, state string, maxShadows int) *daemon {
	t.Helper()
	d := &daemon{socket: filepath.Join(dir, "vssd.sock"), state: state, done: make(chan struct{})}
	cfg := filepath.Join(dir, "vssd.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("max_shadow_copies = %d\nlog_level = \"info\"\n\n[writers]\nhooks_dir = \"-\"\n", maxShadows)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(dir, "vssd-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.log = logf.Name()
	d.cmd = exec.Command(exe, "--socket", d.socket, "--state-dir", d.state, "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Dir = "/"
	// Its goroutines on SIGQUIT, and a line per garbage collection (the
	// live heap).
	d.cmd.Env = append(cleanEnv(), "GOTRACEBACK=all", "GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+",gctrace=1", ","))
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.pid, d.started = d.cmd.Process.Pid, time.Now()
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			d.printLog(t)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return d
		}
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("vssd exited at start: %v\n%s", d.err, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("vssd does not answer on its socket")
		}
	}
}

// printLog prints the warnings and errors of vssd's log and its last
// lines (with the goroutines after a SIGQUIT), and keeps the whole log.
func (d *daemon) printLog(t *testing.T) {
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Logf("vssd log: %v", err)
		return
	}
	kept := ""
	if f, err := os.CreateTemp("", "vss-load-vssd-*.log"); err == nil {
		f.Write(b)
		f.Close()
		kept = f.Name()
	}
	lines := slices.DeleteFunc(strings.Split(string(b), "\n"), gcLine.MatchString)
	var notable []string
	tail := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "SIGQUIT") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			tail = len(lines) - i
			break
		}
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			notable = append(notable, l)
		}
	}
	if len(notable) > 100 {
		notable = append(notable[:100], fmt.Sprintf("… %d more", len(notable)-100))
	}
	tail = max(tail, 60)
	if tail > len(lines) {
		tail = len(lines)
	}
	t.Logf("vssd log (whole in %s): warnings and errors:\n%s\nlast %d lines (but the collector's):\n%s", kept, strings.Join(notable, "\n"), tail, strings.Join(lines[len(lines)-tail:], "\n"))
}

// logText returns vssd's log.
func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// errorLines returns the errors (and data races) vssd logged.
func (d *daemon) errorLines() []string {
	var out []string
	for _, l := range strings.Split(d.logText(), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "DATA RACE") {
			out = append(out, l)
		}
	}
	return out
}

// wait waits for vssd to exit and returns its exit status.
func (d *daemon) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("vssd did not exit within %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		t.Fatalf("vssd: %v", d.err)
	}
	return 0
}

// cleanEnv is the environment without what would point vssd elsewhere or
// inject faults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "VSS_SOCKET" || k == "VSS_STATE_DIR" || k == "VSS_CONFIG" || k == "VSS_FAULT" || k == "NOTIFY_SOCKET" || k == "GOTRACEBACK" || strings.HasPrefix(k, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// dial connects a client, closed at the end of the test.
func dial(t *testing.T, socket string) *apiclient.Client {
	t.Helper()
	c, err := apiclient.Dial(context.Background(), socket, 10*time.Second)
	if err != nil {
		t.Fatalf("connecting to vssd: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
