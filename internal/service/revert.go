package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/coordinator"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vsserr"
)

// PointRevert is the fault point in the middle of a revert (after half of
// the volume's entries), reached in every attempt; an error there stops the
// provider's revert where it is, as a failure of the provider would.
const PointRevert = "revert"

// revertAttempts is how many times a journaled revert is tried before the
// service gives up until its next start.
const revertAttempts = 3

// RevertShadow makes the shadow's volume identical to the shadow. It refuses
// a volume in use unless force (vssadmin /forcedismount). A revert cannot be
// cancelled: once journaled, it runs to its end, if need be after a restart.
func (s *Service) RevertShadow(ctx context.Context, id uuid.UUID, force bool) (err error) {
	defer func() { s.auditf(ctx, "revert-shadow", map[string]any{"id": id, "force": force}, err) }()
	sh, err := s.cat.Shadow(id)
	if err != nil {
		return err
	}
	if !sh.Context.Persistent() {
		return vsserr.New(vsserr.VSS_E_UNSUPPORTED_CONTEXT, "shadow copy {%s} is of the %s context; only persistent shadow copies can be reverted to", sh.ID, sh.Context.Name())
	}
	// No set is made while a volume is being reverted.
	release, err := s.coord.Acquire(ctx, 0)
	if err != nil {
		return err
	}
	defer release()
	s.mu.Lock()
	defer s.mu.Unlock()
	reverts, err := s.cat.Reverts()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	for _, r := range reverts {
		if r.VolumeID == sh.VolumeID {
			return vsserr.New(vsserr.VSS_E_REVERT_IN_PROGRESS, "%s is already being reverted to {%s}", r.VolumePath, r.ShadowID)
		}
	}
	v, err := volume.Resolve(sh.VolumePath)
	if err != nil || v.ID != sh.VolumeID {
		return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "the original volume %s of shadow copy {%s} is not mounted", sh.VolumePath, sh.ID)
	}
	if _, err := os.Stat(sh.ShadowPath); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_OBJECT_NOT_FOUND, err, "shadow copy {%s}", sh.ID)
	}
	exclude := s.storageDirsWithin(v)
	if !force {
		users, err := volumeUsers(v.Path, exclude)
		if err != nil {
			return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "checking whether %s is in use", v.Path)
		}
		if len(users) > 0 {
			return vsserr.New(vsserr.VSS_E_VOLUME_IN_USE, "%s is in use by %s", v.Path, strings.Join(users, ", "))
		}
	}
	r := catalog.Revert{VolumeID: v.ID, VolumePath: v.Path, ShadowID: sh.ID, ShadowPath: sh.ShadowPath, Provider: sh.Provider, Exclude: exclude, Started: time.Now()}
	if err := s.cat.PutRevert(r); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "journaling the revert")
	}
	return s.runRevert(ctx, r, v)
}

// runRevert carries out a journaled revert and clears the journal. A
// revert runs to its end: the requester cannot cancel it, and a failed
// attempt is tried again at once (the provider's revert is idempotent: it
// only touches what still differs), so that a transient failure does not
// leave the volume half-reverted. One that keeps failing keeps its journal,
// and the next start of the service completes it.
func (s *Service) runRevert(ctx context.Context, r catalog.Revert, v *volume.Volume) error {
	p, err := s.providerByName(r.Provider)
	if err != nil {
		return err
	}
	s.log.Info("reverting volume", "volume", v.Path, "shadow", r.ShadowID)
	pause := retryPause
	for attempt := 1; ; attempt++ {
		err = s.revertOnce(ctx, p, &r, v)
		if err == nil || attempt == revertAttempts {
			break
		}
		s.log.Warn("reverting failed; trying again: a revert runs to its end", "volume", v.Path, "shadow", r.ShadowID, "attempt", attempt, "err", err)
		time.Sleep(pause)
		pause *= 2
	}
	if err != nil {
		return vsserr.Wrap(vsserr.CodeOf(err), err, "the revert of %s did not finish; it is journaled, and the next start of the service completes it", v.Path)
	}
	if err := s.cat.FinishRevert(r.VolumeID); err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog: the volume is reverted, but its journal could not be cleared; the next start of the service does it")
	}
	s.log.Info("volume reverted", "volume", v.Path, "shadow", r.ShadowID)
	return nil
}

// revertOnce is one attempt of a revert, with its progress in the journal.
func (s *Service) revertOnce(ctx context.Context, p provider.Provider, r *catalog.Revert, v *volume.Volume) error {
	// Only this process dying stops a revert; the fault point (tests) stops
	// it as a failing provider would.
	rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	var mu sync.Mutex
	last := time.Now()
	faulted := false
	var faultErr error
	progress := func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		r.Done, r.Total = done, total
		if s.opts.Fault != nil && !faulted && total > 0 && done*2 >= total {
			faulted = true
			if faultErr = s.opts.Fault(ctx, PointRevert); faultErr != nil {
				cancel(faultErr)
			}
		}
		if time.Since(last) > time.Second || done == total {
			last = time.Now()
			if err := s.cat.PutRevert(*r); err != nil {
				s.log.Warn("updating the revert journal", "err", err)
			}
		}
	}
	err := p.Revert(rctx, r.ShadowPath, v, provider.RevertOptions{Exclude: r.Exclude, Progress: progress})
	mu.Lock()
	defer mu.Unlock()
	if err != nil || faultErr != nil {
		// How far it got, for query reverts.
		if err := s.cat.PutRevert(*r); err != nil {
			s.log.Warn("updating the revert journal", "err", err)
		}
	}
	if faultErr != nil {
		return faultErr
	}
	if err != nil {
		return coordinator.ProviderError(err, r.Provider, "revert "+v.Path)
	}
	return nil
}

// QueryReverts lists the reverts in progress.
func (s *Service) QueryReverts(ctx context.Context, forPath string) ([]catalog.Revert, error) {
	all, err := s.cat.Reverts()
	if err != nil {
		return nil, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	if forPath == "" {
		return all, nil
	}
	v, err := volume.Resolve(forPath)
	if err != nil {
		return nil, err
	}
	var out []catalog.Revert
	for _, r := range all {
		if r.VolumeID == v.ID {
			out = append(out, r)
		}
	}
	return out, nil
}

// storageDirsWithin lists the storage directories inside volume v, which a
// revert leaves alone.
func (s *Service) storageDirsWithin(v *volume.Volume) []string {
	dirs := []string{filepath.Join(v.Path, provider.StorageDirName)}
	all, _ := s.cat.Storages()
	for _, a := range all {
		d := filepath.Join(a.OnPath, provider.StorageDirName)
		if volume.Within(d, v.Path) && d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// volumeUsers lists the processes (other than this one) that have a file,
// a working directory, a root or a mapping inside dir (like fuser -m).
func volumeUsers(dir string, exclude []string) ([]string, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	inside := func(p string) bool {
		p = strings.TrimSuffix(p, " (deleted)")
		if !volume.Within(p, dir) {
			return false
		}
		for _, e := range exclude {
			if volume.Within(p, e) {
				return false
			}
		}
		return true
	}
	seen := map[string]bool{}
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		using := false
		for _, l := range []string{"cwd", "root", "exe"} {
			if t, err := os.Readlink(filepath.Join(base, l)); err == nil && inside(t) && !(l == "root" && t == "/") {
				using = true
			}
		}
		if fds, err := os.ReadDir(filepath.Join(base, "fd")); err == nil && !using {
			for _, fd := range fds {
				if t, err := os.Readlink(filepath.Join(base, "fd", fd.Name())); err == nil && inside(t) {
					using = true
					break
				}
			}
		}
		if !using {
			if maps, err := os.ReadFile(filepath.Join(base, "maps")); err == nil {
				for _, line := range strings.Split(string(maps), "\n") {
					if i := strings.Index(line, "/"); i >= 0 && inside(line[i:]) {
						using = true
						break
					}
				}
			}
		}
		if using {
			comm, _ := os.ReadFile(filepath.Join(base, "comm"))
			seen[fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid)] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}
