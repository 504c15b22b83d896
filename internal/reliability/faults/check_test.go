package faults

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/fsutil"
	"github.com/linuxvss/vss/internal/provider"
)

// check checks every invariant after a run (and after the restarts).
func (h *harness) check(r *run) {
	// Nothing frozen: no filesystem …
	if f := h.probeFrozen(); len(f) > 0 {
		r.violate("filesystems frozen after the run: %v", f)
	}
	// … and no application past its deadline.
	h.checkApplication(r)
	// The requester got the right VSS error.
	switch {
	case r.res.exit != 0 && r.res.code == 0:
		r.violate("%s without a VSS error:\n%s%s", r.res, r.res.stdout, r.res.stderr)
	case !containsCode(r.exp.codes, r.res.code):
		var want []string
		for _, c := range r.exp.codes {
			if c == 0 {
				want = append(want, "success")
			} else {
				want = append(want, c.String())
			}
		}
		r.violate("the requester got %s, want %s:\n%s", r.res, strings.Join(want, " or "), strings.TrimSpace(r.res.stderr))
	}
	// The catalog lists exactly what exists on disk.
	listed, err := h.list()
	if err != nil {
		r.violate("listing the shadows: %v", err)
		return
	}
	h.checkCatalog(r, listed)
	h.checkChange(r, listed)
	if r.ph.kind == kRevert {
		h.checkRevert(r)
	}
	// No freeze guard (or other vssd) is left running.
	deadline := time.Now().Add(3 * time.Second)
	for {
		stray := h.strayVssd()
		if len(stray) == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.violate("processes of vssd's binary left running (freeze guards?): %v", stray)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkApplication reads what the writer said about its freezes and the
// application's log, and checks that it runs now.
func (h *harness) checkApplication(r *run) {
	for _, l := range h.bus.since(r.busAt) {
		i := strings.Index(l, " thawed frozen=")
		if i < 0 {
			continue
		}
		var frozen, late time.Duration
		for _, f := range strings.Fields(l[i:]) {
			k, v, _ := strings.Cut(f, "=")
			d, _ := time.ParseDuration(v)
			switch k {
			case "frozen":
				frozen = d
			case "late":
				late = d
			}
		}
		if frozen > r.frozen {
			r.frozen = frozen
		}
		if late > lateSlack {
			r.violate("the application was thawed %v after its freeze deadline (%s)", late, l)
		}
	}
	stall, err := appStall(h.appLog, r.appOff)
	if err != nil {
		r.violate("reading the application's log: %v", err)
	}
	r.stall = stall
	if stall > freezeTimeout+time.Second {
		r.violate("the application stood still for %v (the freeze limit is %v)", stall, freezeTimeout)
	}
	// It runs now.
	st, err := os.Stat(h.appLog)
	if err != nil {
		r.violate("%v", err)
		return
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if st2, err := os.Stat(h.appLog); err == nil && st2.Size() > st.Size() {
			return
		}
		if time.Since(start) > time.Second {
			r.violate("the application is frozen after the run")
			return
		}
	}
}

// appStall returns the longest gap between two lines of one process in the
// application's log from offset off on.
func appStall(path string, off int64) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return 0, err
	}
	last := map[string]int64{}
	var max int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		ns, err := strconv.ParseInt(fs[2], 10, 64)
		if err != nil {
			continue
		}
		if prev, ok := last[fs[0]]; ok && ns-prev > max {
			max = ns - prev
		}
		last[fs[0]] = ns
	}
	return time.Duration(max), sc.Err()
}

// onDisk lists the shadows that exist on disk: the subvolumes of the
// btrfs volume, the entries of every storage directory. Anything else in a
// storage directory, or any other subvolume, is reported.
func (h *harness) onDisk() (map[string]bool, []string) {
	out := map[string]bool{}
	var problems []string
	bt := h.vols[pBtrfs].Dir
	b, err := exec.Command("btrfs", "subvolume", "list", bt).CombinedOutput()
	if err != nil {
		problems = append(problems, fmt.Sprintf("btrfs subvolume list: %v\n%s", err, b))
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		_, p, ok := strings.Cut(l, " path ")
		if !ok {
			continue
		}
		switch {
		case p == provider.StorageDirName:
		case strings.HasPrefix(p, provider.StorageDirName+"/"):
			out[filepath.Join(bt, p)] = true
		default:
			problems = append(problems, "a subvolume that is no shadow copy: "+p)
		}
	}
	for _, d := range []string{bt, h.vols[pReflink].Dir, h.vols[pCopy].Dir, h.store.Dir} {
		dir := filepath.Join(d, provider.StorageDirName)
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			problems = append(problems, err.Error())
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".faults-filler") {
				problems = append(problems, "a filler left behind: "+filepath.Join(dir, e.Name()))
				continue
			}
			out[filepath.Join(dir, e.Name())] = true
			if _, err := uuid.Parse(e.Name()); err != nil {
				problems = append(problems, "not a shadow copy: "+filepath.Join(dir, e.Name()))
			}
		}
	}
	return out, problems
}

// checkCatalog compares the catalog with the disk.
func (h *harness) checkCatalog(r *run, listed []catalogShadow) {
	disk, problems := h.onDisk()
	for _, p := range problems {
		r.violate("%s", p)
	}
	inCatalog := map[string]bool{}
	for _, sh := range listed {
		inCatalog[sh.ShadowPath] = true
		if !disk[sh.ShadowPath] {
			r.violate("listed but not on disk: {%s} %s", sh.ID, sh.ShadowPath)
		}
	}
	var orphans []string
	for p := range disk {
		if !inCatalog[p] {
			orphans = append(orphans, p)
		}
	}
	sort.Strings(orphans)
	for _, p := range orphans {
		r.violate("on disk but not in the catalog (orphan): %s", p)
	}
}

// checkChange checks what the operation changed in the catalog: the new
// set (or none), the evicted or deleted shadows.
func (h *harness) checkChange(r *run, listed []catalogShadow) {
	before := map[string]catalogShadow{}
	for _, sh := range r.before {
		before[sh.ID.String()] = sh
	}
	now := map[string]bool{}
	var added []catalogShadow
	for _, sh := range listed {
		now[sh.ID.String()] = true
		if _, ok := before[sh.ID.String()]; !ok {
			added = append(added, sh)
		}
	}
	if want := r.wantNew(); len(added) != want {
		r.violate("%d new shadow copies, want %d", len(added), want)
	}
	for _, sh := range added {
		if sh.VolumePath != r.vol {
			r.violate("a new shadow copy of %s, not of %s", sh.VolumePath, r.vol)
		}
	}
	mustGo := map[string]bool{}
	for id := range r.evict {
		mustGo[id] = true
	}
	if r.ph.kind == kDelete {
		mustGo[r.target.ID.String()] = true
	}
	for id, sh := range before {
		switch {
		case mustGo[id] && now[id]:
			r.violate("shadow {%s} of %s should be gone (%s)", id, sh.VolumePath, map[bool]string{true: "evicted", false: "deleted"}[r.evict[id]])
		case !mustGo[id] && !now[id]:
			r.violate("shadow {%s} of %s vanished", id, sh.VolumePath)
		}
	}
}

// checkRevert checks that the volume is as it was or as the shadow was,
// and as the shadow was when the revert succeeded or was completed; and
// that no revert is left in progress.
func (h *harness) checkRevert(r *run) {
	got, err := fsutil.StateOf(h.t.Context(), r.vol, walkOpts())
	if err != nil {
		r.violate("reading the volume: %v", err)
		return
	}
	dWant, dPre := fsutil.Diff(r.want, got), fsutil.Diff(r.pre, got)
	switch {
	case len(dWant) > 0 && len(dPre) > 0:
		r.violate("the volume is in between: %d differences from the shadow copy (%s), %d from before the revert", len(dWant), first(dWant), len(dPre))
	case len(dWant) > 0 && (r.res.exit == 0 || r.fault == fVssdKill):
		// A revert that succeeded, or that a restart completed.
		r.violate("the revert is not complete: %d differences from the shadow copy (%s)", len(dWant), first(dWant))
	}
	q := h.vssadmin("query", "reverts")
	if !strings.Contains(q.stdout, "No items found") {
		if r.res.exit != 0 && r.fault == fStateFull && len(dWant) == 0 {
			// The volume is reverted, but the full catalog could not
			// record it: as the error says, the next start does.
			h.restartVssd()
			r.notes = append(r.notes, "vssd restarted to clear the revert journal")
			q = h.vssadmin("query", "reverts")
			if strings.Contains(q.stdout, "No items found") {
				return
			}
		}
		r.violate("a revert is still in progress after the run:\n%s", q.stdout)
	}
}

func first(d []string) string {
	if len(d) == 0 {
		return ""
	}
	if len(d[0]) > 200 {
		return d[0][:200] + "…"
	}
	return d[0]
}

// finalCheck restarts vssd once more, stops it, and reads the catalog
// itself: every journal (sets in the making, deletions, freezes, reverts)
// must be settled, and the catalog must list exactly what is on disk.
func (h *harness) finalCheck() []string {
	var v []string
	h.w.cmd.Process.Kill()
	<-h.w.done
	h.restartVssdOnly()
	h.d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.d.done:
	case <-time.After(40 * time.Second):
		v = append(v, "vssd did not stop on SIGTERM")
		h.d.cmd.Process.Kill()
		<-h.d.done
	}
	cat, err := catalog.Open(filepath.Join(h.stateDir, "catalog.db"))
	if err != nil {
		return append(v, err.Error())
	}
	defer cat.Close()
	pending, err1 := cat.Pending()
	deleting, err2 := cat.Deleting()
	freezes, err3 := cat.Freezes()
	reverts, err4 := cat.Reverts()
	shadows, err5 := cat.Shadows()
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			v = append(v, err.Error())
		}
	}
	if len(pending)+len(deleting)+len(freezes)+len(reverts) > 0 {
		v = append(v, fmt.Sprintf("journals not settled: %d sets in the making, %d deletions, %d freezes, %d reverts", len(pending), len(deleting), len(freezes), len(reverts)))
	}
	r := &run{}
	h.checkCatalog(r, shadows)
	return append(v, r.viol...)
}
