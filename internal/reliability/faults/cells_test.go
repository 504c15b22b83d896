package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/testutil"
	"github.com/linuxvss/vss/internal/vsserr"
)

// The faults (the columns of the table).
const (
	fVssdKill      = "vssd SIGKILL"
	fWriterKill    = "writer SIGKILL"
	fWriterHang    = "writer hangs"
	fProviderError = "provider error"
	fStorageFull   = "storage ENOSPC"
	fStateFull     = "state ENOSPC"
)

var faultNames = []string{fVssdKill, fWriterKill, fWriterHang, fProviderError, fStorageFull, fStateFull}

// providerError is the code of an injected provider error.
const providerError = vsserr.VSS_E_UNEXPECTED_PROVIDER_ERROR

type phaseKind int

const (
	kPoint  phaseKind = iota // a fault point of the coordinator (vssadmin create shadow)
	kWriter                  // a writer event (create shadow; diskshadow for BackupComplete)
	kEvict                   // after an eviction (create shadow on a volume at its maximum)
	kDelete                  // vssadmin delete shadows
	kRevert                  // vssadmin revert shadow
)

// phase is a row of the table.
type phase struct {
	name  string
	kind  phaseKind
	point string // the fault point (all kinds but kWriter)
	event string // the writer event (kWriter)
	stage int    // order within a set, for the creating kinds
}

// The stages of a set, in order, that expectations compare with.
const (
	stEvict = iota
	stPrepare
	stPrepareSnapshot
	stWPrepareSnapshot
	stEndPrepare
	stWFreeze
	stFreeze
	stFlush
	stHold
	stCommit
	stRelease
	stPostCommit
	stWThaw
	stThaw
	stWPostSnapshot
	stPostSnapshot
	stCatalogCommit
	stCommitted
	stWBackupComplete
)

// phases returns the rows: every coordinator point and writer event in the
// order a set reaches them, then evict, delete and revert.
func phases() []phase {
	pt := func(p string, st int) phase { return phase{name: p, kind: kPoint, point: p, stage: st} }
	wr := func(ev string, st int) phase { return phase{name: "writer " + ev, kind: kWriter, event: ev, stage: st} }
	ps := []phase{
		pt(coordinator.PointPrepare, stPrepare),
		pt(coordinator.PointPrepareSnapshot, stPrepareSnapshot),
		wr("PrepareSnapshot", stWPrepareSnapshot),
		pt(coordinator.PointEndPrepare, stEndPrepare),
		wr("Freeze", stWFreeze),
		pt(coordinator.PointFreeze, stFreeze),
		pt(coordinator.PointFlush, stFlush),
		pt(coordinator.PointHold, stHold),
		pt(coordinator.PointCommit, stCommit),
		pt(coordinator.PointRelease, stRelease),
		pt(coordinator.PointPostCommit, stPostCommit),
		wr("Thaw", stWThaw),
		pt(coordinator.PointThaw, stThaw),
		wr("PostSnapshot", stWPostSnapshot),
		pt(coordinator.PointPostSnapshot, stPostSnapshot),
		pt(coordinator.PointCatalogCommit, stCatalogCommit),
		pt(coordinator.PointCommitted, stCommitted),
		wr("BackupComplete", stWBackupComplete),
		{name: service.PointEvict, kind: kEvict, point: service.PointEvict, stage: stEvict},
		{name: service.PointDelete, kind: kDelete, point: service.PointDelete},
		{name: service.PointRevert, kind: kRevert, point: service.PointRevert},
	}
	if len(coordinator.Points) != 13 {
		panic(fmt.Sprintf("the coordinator has %d fault points; the harness knows 13: add the new ones", len(coordinator.Points)))
	}
	return ps
}

func (p phase) creates() bool { return p.kind == kPoint || p.kind == kWriter || p.kind == kEvict }

// expectation is what a run of a cell must give.
type expectation struct {
	na       string        // why the cell makes no sense ("" when it does)
	codes    []vsserr.Code // the results the requester may get (0: success)
	vssdDies bool          // the fault kills vssd
	// writerDies: the fault kills the writer.
	writerDies bool
}

func codes(cs ...vsserr.Code) []vsserr.Code { return cs }

// expect returns the expectation of a cell on a provider.
func expect(ph phase, fault, prov string) expectation {
	switch fault {
	case fVssdKill:
		// The requester loses its connection: vssd is not reachable.
		return expectation{codes: codes(vsserr.VSS_E_UNEXPECTED), vssdDies: true}
	case fProviderError:
		switch ph.kind {
		case kWriter:
			return expectation{na: "a writer event has no provider step: the points before and after it have the provider errors"}
		case kDelete, kRevert:
			// A journaled delete or revert runs to its end: the service
			// retries the step that failed.
			return expectation{codes: codes(0)}
		}
		if ph.point == coordinator.PointCommitted {
			return expectation{codes: codes(0)} // the set exists: a later failure does not undo it
		}
		return expectation{codes: codes(providerError)}
	case fWriterKill:
		switch ph.kind {
		case kDelete, kRevert:
			return expectation{na: "no writer takes part in a delete or a revert"}
		case kWriter:
			return expectation{codes: codes(vsserr.VSS_E_WRITER_NOT_RESPONDING), writerDies: true}
		}
		// Killed while the service stands at the point: its next event fails.
		if ph.stage < stWPostSnapshot {
			return expectation{codes: codes(vsserr.VSS_E_WRITER_NOT_RESPONDING), writerDies: true}
		}
		return expectation{codes: codes(0), writerDies: true}
	case fWriterHang:
		if ph.kind != kWriter {
			return expectation{na: "a writer hangs in one of its events: see the writer rows"}
		}
		if ph.event == "Freeze" || ph.event == "Thaw" {
			return expectation{codes: codes(vsserr.VSS_E_WRITERERROR_TIMEOUT)}
		}
		return expectation{codes: codes(vsserr.VSS_E_WRITER_NOT_RESPONDING)}
	case fStorageFull:
		switch ph.kind {
		case kDelete:
			return expectation{na: "a delete only gives shadow storage back"}
		case kRevert:
			return expectation{na: "a revert reads the shadow storage and writes the volume"}
		}
		if ph.stage == stWBackupComplete {
			return expectation{codes: codes(0)} // the shadows are made
		}
		if prov == pCopy && ph.stage <= stFlush {
			// The copy (pre-copy, or the changes copied in the commit)
			// does not fit.
			return expectation{codes: codes(vsserr.VSS_E_INSUFFICIENT_STORAGE)}
		}
		return expectation{codes: codes(0, vsserr.VSS_E_INSUFFICIENT_STORAGE)}
	case fStateFull:
		// The state directory is on btrfs: every later write of the
		// catalog fails (journal, freeze record, catalog commit, the end
		// of a delete or revert, the release at the end of a session).
		if ph.point == coordinator.PointCommitted {
			return expectation{codes: codes(0)} // recorded before
		}
		return expectation{codes: codes(vsserr.VSS_E_UNEXPECTED)}
	}
	panic("unknown fault " + fault)
}

// eligible returns the providers a cell may run on (the short mode picks
// one of them).
func eligible(ph phase, fault string, long bool) []string {
	switch {
	case long:
		return providers
	case fault == fStorageFull:
		return []string{pCopy} // its storage is a filesystem of its own
	case ph.point == coordinator.PointHold || ph.point == coordinator.PointCommit:
		return []string{pCopy} // the only one whose filesystem is frozen there
	}
	return providers
}

// run is one run of a cell.
type run struct {
	ph    phase
	fault string
	prov  string
	vol   string
	exp   expectation
	res   result

	before []catalog.Shadow
	target catalog.Shadow   // the shadow deleted or reverted to
	pre    fsutil.TreeState // revert: the volume before
	want   fsutil.TreeState // revert: the shadow
	evict  map[string]bool  // shadows that must be evicted
	appOff int64            // the application's log at the start
	busAt  int              // the writer's lines at the start
	frozen time.Duration    // longest application freeze seen
	stall  time.Duration    // longest gap of the application's log
	notes  []string         // what happened, for the log
	viol   []string         // invariant violations
	undo   []func()         // what the injection changed
	start  time.Time
	took   time.Duration
}

func (r *run) violate(format string, args ...any) {
	r.viol = append(r.viol, fmt.Sprintf(format, args...))
}

// walkOpts leaves out what is not the volume's data: the shadow storage,
// the probe, the fillers.
func walkOpts() fsutil.WalkOptions {
	return fsutil.WalkOptions{Exclude: func(rel string) bool {
		return rel == ".vss" || rel == probeName || strings.HasPrefix(rel, ".faults-filler")
	}}
}

// prepare sets up what the cell's operation needs.
func (h *harness) prepare(r *run) {
	t := h.t
	switch r.ph.kind {
	case kDelete:
		all, err := h.list()
		if err != nil {
			t.Fatal(err)
		}
		if len(onVolume(all, r.vol)) == 0 {
			h.create(r.vol)
		}
	case kRevert:
		id := h.create(r.vol)
		all, err := h.list()
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range all {
			if sh.ID.String() == id {
				r.target = sh
			}
		}
		h.seq++
		mutate(t, r.vol, int64(h.seq))
		if r.pre, err = fsutil.StateOf(t.Context(), r.vol, walkOpts()); err != nil {
			t.Fatal(err)
		}
		if r.want, err = fsutil.StateOf(t.Context(), r.target.ShadowPath, walkOpts()); err != nil {
			t.Fatal(err)
		}
		if len(fsutil.Diff(r.want, r.pre)) == 0 {
			t.Fatal("the mutation changed nothing")
		}
	case kEvict:
		for {
			all, err := h.list()
			if err != nil {
				t.Fatal(err)
			}
			if len(onVolume(all, r.vol)) >= maxShadows {
				break
			}
			h.create(r.vol)
		}
	}
	var err error
	if r.before, err = h.list(); err != nil {
		t.Fatal(err)
	}
	if r.ph.kind == kDelete {
		vs := onVolume(r.before, r.vol)
		r.target = vs[len(vs)-1]
	}
	// The shadows an eviction must take: the oldest, down to one less than
	// the maximum (none of them is held by a live session here).
	r.evict = map[string]bool{}
	if r.ph.creates() {
		vs := onVolume(r.before, r.vol)
		for i := 0; i < len(vs)-maxShadows+1; i++ {
			r.evict[vs[i].ID.String()] = true
		}
	}
}

// onVolume returns the shadows of vol, oldest first.
func onVolume(all []catalog.Shadow, vol string) []catalog.Shadow {
	var out []catalog.Shadow
	for _, sh := range all {
		if sh.VolumePath == vol {
			out = append(out, sh)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// operation runs the cell's requester.
func (h *harness) operation(r *run) result {
	switch r.ph.kind {
	case kDelete:
		return h.vssadmin("delete", "shadows", "/shadow={"+r.target.ID.String()+"}", "/quiet")
	case kRevert:
		return h.vssadmin("revert", "shadow", "/shadow={"+r.target.ID.String()+"}", "/quiet", "/forcedismount")
	}
	if r.ph.kind == kWriter && r.ph.event == "BackupComplete" {
		return h.diskshadowBackup(r.vol)
	}
	return h.vssadmin("create", "shadow", "--for", r.vol)
}

// trigger is how the harness learns that the moment to act has come.
type trigger int

const (
	tNone   trigger = iota // the fault acts by itself (kill, error, a writer's kill or hang)
	tPoint                 // vssd waits at the point (wait action) for the harness
	tWriter                // the writer pauses in its event for the harness
)

// arm sets up the fault and returns how the harness must act.
func (h *harness) arm(r *run) trigger {
	h.clearFaultDir()
	if r.ph.kind == kWriter {
		switch r.fault {
		case fWriterKill:
			h.setControl(r.ph.event + " kill\n")
			return tNone
		case fWriterHang:
			h.setControl(r.ph.event + " hang\n")
			return tNone
		}
		h.setControl(r.ph.event + " pause\n")
		return tWriter
	}
	switch r.fault {
	case fVssdKill:
		h.setFault(r.ph.point + "=kill")
		return tNone
	case fProviderError:
		// A provider step fails once (#1): a transient failure.
		h.setFault(fmt.Sprintf("%s=error:%s#1", r.ph.point, providerError.Hex()))
		return tNone
	}
	h.setFault(r.ph.point + "=wait:30s")
	return tPoint
}

// act injects the fault at the moment the trigger said.
func (h *harness) act(r *run) {
	switch r.fault {
	case fVssdKill:
		h.d.cmd.Process.Kill()
		<-h.d.done
		r.notes = append(r.notes, "vssd killed")
	case fWriterKill:
		h.w.cmd.Process.Kill()
		<-h.w.done
		r.notes = append(r.notes, "writer killed")
	case fStorageFull:
		// The filler goes into the storage directory, which no shadow
		// holds (a filler at the volume's root would be captured by the
		// shadows made meanwhile, and removing it would free nothing).
		// btrfs and reflink keep their shadows on the volume.
		where := filepath.Join(r.vol, provider.StorageDirName)
		if r.prov == pCopy {
			where = filepath.Join(h.store.Dir, provider.StorageDirName)
			if r.ph.stage <= stFlush {
				// The volume changes before the hold: the commit has
				// something to copy.
				p := filepath.Join(r.vol, "data", "grown.bin")
				if err := os.WriteFile(p, testutil.RandomBytes(int64(h.seq), 1<<20), 0o644); err != nil {
					r.violate("growing the volume: %v", err)
				}
				r.undo = append(r.undo, func() { os.Remove(p) })
			}
		}
		undo, err := fill(where)
		r.undo = append(r.undo, undo)
		if err != nil {
			r.violate("filling %s: %v", where, err)
		}
		r.notes = append(r.notes, "filled "+where)
	case fStateFull:
		undo, err := fill(h.statefs.Dir)
		r.undo = append(r.undo, undo)
		if err != nil {
			r.violate("filling %s: %v", h.statefs.Dir, err)
		}
		r.notes = append(r.notes, "filled the state filesystem")
	}
}

// runCell runs one cell once: operation, fault, restart, checks.
func (h *harness) runCell(ph phase, fault, prov string) *run {
	r := &run{ph: ph, fault: fault, prov: prov, vol: h.vols[prov].Dir, exp: expect(ph, fault, prov), start: time.Now()}
	h.seq++
	h.prepare(r)
	if st, err := os.Stat(h.appLog); err == nil {
		r.appOff = st.Size()
	}
	r.busAt = h.bus.mark()
	trig := h.arm(r)
	done := make(chan result, 1)
	go func() { done <- h.operation(r) }()
	var res result
	switch trig {
	case tPoint:
		reached := filepath.Join(h.faultDir, ph.point)
		tick := time.NewTicker(2 * time.Millisecond)
	wait:
		for {
			if _, err := os.Stat(reached); err == nil {
				h.act(r)
				os.WriteFile(reached+".go", nil, 0o644)
				break
			}
			select {
			case res = <-done:
				r.violate("the point %s was not reached (%s)", ph.point, res)
				break wait
			case <-tick.C:
			}
		}
		tick.Stop()
	case tWriter:
		stop := make(chan struct{})
		got := make(chan bool, 1)
		go func() {
			_, ok := h.bus.wait(r.busAt, func(l string) bool { return strings.HasSuffix(l, " at "+ph.event) }, 60*time.Second, stop)
			got <- ok
		}()
		select {
		case ok := <-got:
			if ok {
				h.act(r)
			} else {
				r.violate("the writer did not reach %s", ph.event)
			}
			h.setControl("")
		case res = <-done:
			close(stop)
			r.violate("the writer did not reach %s (%s)", ph.event, res)
		}
	}
	if res.cmd == "" {
		res = <-done
	}
	r.res = res
	r.took = time.Since(r.start)
	if r.ph.event == "BackupComplete" && h.d.alive() {
		// The fault lasts until the service has ended the requester's
		// session (releasing its volatile set), not only its last call.
		h.waitLog(`msg="deleted shadow copy" .*reason=auto-release|msg="ending a session"`, 5*time.Second)
	}
	// Disarm (a hung writer stays hung until the checks are done).
	h.setFault("")
	if fault != fWriterHang {
		h.setControl("")
	}
	for _, u := range r.undo {
		u()
	}
	if r.ph.event == "BackupComplete" && h.d.alive() {
		// A release that failed (full state directory) is retried by the
		// service once it can: give it a moment.
		h.waitReleased(r, 5*time.Second)
	}
	// Restart what died.
	if r.exp.vssdDies {
		select {
		case <-h.d.done:
		case <-time.After(10 * time.Second):
		}
	}
	if r.exp.writerDies {
		select {
		case <-h.w.done:
		case <-time.After(10 * time.Second):
		}
	}
	if !h.d.alive() {
		if !r.exp.vssdDies {
			r.violate("vssd died: %s", tail(h.d.log, 20))
		}
		from := h.bus.mark()
		h.startVssd()
		r.notes = append(r.notes, "vssd restarted")
		if h.w.alive() {
			h.waitRegistered(from)
		}
	} else if r.exp.vssdDies {
		r.violate("vssd was not killed")
	}
	if !h.w.alive() {
		if !r.exp.writerDies {
			r.violate("the writer died: %s", h.w.stderr.String())
		}
		h.startWriter()
		r.notes = append(r.notes, "writer restarted")
	} else if r.exp.writerDies {
		r.violate("the writer was not killed")
	}
	h.check(r)
	if fault == fWriterHang {
		from := h.bus.mark()
		h.setControl("")
		h.bus.wait(from, func(l string) bool { return strings.HasSuffix(l, " unhang "+ph.event) }, 10*time.Second, nil)
		time.Sleep(200 * time.Millisecond) // the events queued behind the hang
	}
	if len(r.viol) > 0 {
		// Start the next cell from a clean state: a new vssd recovers
		// whatever this run left behind.
		h.restartVssd()
		r.notes = append(r.notes, "vssd restarted to clean up")
	}
	return r
}

// restartVssd kills vssd and starts it again (its start recovers), and
// waits for the writer to register with it.
func (h *harness) restartVssd() {
	from := h.bus.mark()
	h.restartVssdOnly()
	if h.w.alive() {
		h.waitRegistered(from)
	} else {
		h.startWriter()
	}
}

// restartVssdOnly kills vssd and starts it again.
func (h *harness) restartVssdOnly() {
	h.d.cmd.Process.Kill()
	<-h.d.done
	h.startVssd()
}

// waitReleased waits until no shadow of the run's volume is listed that
// was not there before, and the disk matches the catalog.
func (h *harness) waitReleased(r *run, timeout time.Duration) {
	before := map[string]bool{}
	for _, sh := range r.before {
		before[sh.ID.String()] = true
	}
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(50 * time.Millisecond) {
		listed, err := h.list()
		if err != nil {
			return
		}
		left := false
		paths := map[string]bool{}
		for _, sh := range listed {
			paths[sh.ShadowPath] = true
			if !before[sh.ID.String()] {
				left = true
			}
		}
		disk, _ := h.onDisk()
		same := len(disk) == len(paths)
		for p := range disk {
			same = same && paths[p]
		}
		if !left && same {
			return
		}
	}
}

// waitLog waits until the current vssd's log has a line matching re.
func (h *harness) waitLog(re string, timeout time.Duration) bool {
	rx := regexp.MustCompile(re)
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(h.d.log); err == nil && rx.Match(b) {
			return true
		}
	}
	return false
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// wantNew is how many new shadows the run must leave in the catalog.
func (r *run) wantNew() int {
	switch {
	case !r.ph.creates():
		return 0
	case r.ph.kind == kWriter && r.ph.event == "BackupComplete":
		return 0 // a volatile set: released when the session ends
	case r.fault == fVssdKill:
		if r.ph.stage >= stCommitted {
			return 1
		}
		return 0
	case r.res.exit == 0:
		return 1
	}
	return 0
}

func containsCode(cs []vsserr.Code, c vsserr.Code) bool { return slices.Contains(cs, c) }
