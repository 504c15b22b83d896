package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/btrfsutil"
	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// Expose makes a persistent shadow copy readable at path: a read-only bind
// mount of the shadow on an empty (or new) directory, recorded in the
// catalog (attribute Exposed locally) and mounted again when the service
// starts after a reboot.
func (s *Service) Expose(ctx context.Context, id uuid.UUID, path string) (sh catalog.Shadow, err error) {
	defer func() { s.auditf(ctx, "expose", map[string]any{"shadow": id, "path": path}, err) }()
	if !filepath.IsAbs(path) {
		return sh, vsserr.New(vsserr.E_INVALIDARG, "the expose path %q is not absolute", path)
	}
	path = filepath.Clean(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	sh, err = s.cat.Shadow(id)
	if err != nil {
		return sh, err
	}
	if !sh.Context.Persistent() {
		return sh, vsserr.New(vsserr.VSS_E_UNSUPPORTED_CONTEXT, "shadow copy %s is not persistent (context %s): only persistent shadow copies can be exposed", id, sh.Context.Name())
	}
	if sh.ExposedPath != "" {
		return sh, vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "shadow copy %s is already exposed at %s", id, sh.ExposedPath)
	}
	all, err := s.cat.Shadows()
	if err != nil {
		return sh, err
	}
	for _, o := range all {
		if o.ExposedPath == path {
			return sh, vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "shadow copy %s is already exposed at %s", o.ID, path)
		}
	}
	if volume.Within(path, sh.ShadowPath) || volume.Within(sh.ShadowPath, path) || volume.Within(path, sh.StoragePath) {
		return sh, vsserr.New(vsserr.E_INVALIDARG, "cannot expose %s at %s, inside shadow storage", id, path)
	}
	c := CallerOf(ctx)
	if err := mayMountAt(c, path); err != nil {
		return sh, err
	}
	made, err := mountPoint(path)
	if err != nil {
		return sh, err
	}
	if made && c.Uid != 0 {
		if err := os.Lchown(path, int(c.Uid), int(c.Gid)); err != nil {
			os.Remove(path)
			return sh, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "giving the expose directory to its user")
		}
	}
	if err := bindReadOnly(sh.ShadowPath, path); err != nil {
		if made {
			os.Remove(path)
		}
		return sh, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "exposing %s at %s", id, path)
	}
	sh.ExposedPath, sh.ExposedName, sh.ExposedUid = path, path, c.Uid
	sh.Attributes |= vss.AttrExposedLocally
	if err := s.cat.UpdateShadow(sh); err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		return sh, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	s.log.Info("exposed shadow copy", "shadow", id, "path", path)
	return sh, nil
}

// mayMountAt refuses, for a caller other than root, a mount point it
// could not have made itself: an existing directory must be the caller's,
// a new one must go in a directory the caller may write to (as /tmp). The
// service runs as root and would otherwise mount over (or create) any
// empty directory on the system for whoever may create shadow copies.
func mayMountAt(c Caller, path string) error {
	if c.Uid == 0 {
		return nil
	}
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Uid == c.Uid {
			return nil
		}
		return vsserr.New(vsserr.E_ACCESSDENIED, "uid %d may expose a shadow copy only on a directory of its own, or on a new one where it may make it; %s is not its own", c.Uid, path)
	}
	if !errors.Is(err, unix.ENOENT) {
		return vsserr.Wrap(vsserr.E_INVALIDARG, &os.PathError{Op: "lstat", Path: path, Err: err}, "the expose path")
	}
	dir := filepath.Dir(path)
	if err := unix.Lstat(dir, &st); err != nil {
		return vsserr.Wrap(vsserr.E_INVALIDARG, &os.PathError{Op: "lstat", Path: dir, Err: err}, "the expose path's directory")
	}
	var w uint32
	switch {
	case st.Uid == c.Uid:
		w = unix.S_IWUSR | unix.S_IXUSR
	case st.Gid == c.Gid:
		w = unix.S_IWGRP | unix.S_IXGRP
	default:
		w = unix.S_IWOTH | unix.S_IXOTH
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&w != w {
		return vsserr.New(vsserr.E_ACCESSDENIED, "uid %d may not make %s: it may not write to %s", c.Uid, path, dir)
	}
	return nil
}

// mountPoint makes sure path is an empty directory to mount on; made says
// it was created.
func mountPoint(path string) (made bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(path, 0o755); err != nil {
			return false, vsserr.Wrap(vsserr.E_INVALIDARG, err, "creating the expose directory")
		}
		return true, nil
	}
	if err != nil {
		return false, vsserr.Wrap(vsserr.E_INVALIDARG, err, "the expose path")
	}
	if !fi.IsDir() {
		return false, vsserr.New(vsserr.E_INVALIDARG, "the expose path %s is not a directory", path)
	}
	names, err := readNames(path)
	if err != nil {
		return false, vsserr.Wrap(vsserr.E_INVALIDARG, err, "the expose path")
	}
	if len(names) > 0 {
		return false, vsserr.New(vsserr.E_INVALIDARG, "the expose path %s is not empty", path)
	}
	return false, nil
}

// bindReadOnly mounts src on dst, read-only, not propagated.
func bindReadOnly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind mount " + src, Path: dst, Err: err}
	}
	if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(dst, unix.MNT_DETACH)
		return &os.PathError{Op: "read-only remount", Path: dst, Err: err}
	}
	_ = unix.Mount("", dst, "", unix.MS_PRIVATE, "")
	return nil
}

// Unexpose undoes Expose; path is the mount point (or the shadow's ID).
func (s *Service) Unexpose(ctx context.Context, path string) (sh catalog.Shadow, err error) {
	defer func() { s.auditf(ctx, "unexpose", map[string]any{"path": path}, err) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.cat.Shadows()
	if err != nil {
		return sh, err
	}
	clean := filepath.Clean(path)
	found := false
	for _, o := range all {
		if o.ExposedPath != "" && (o.ExposedPath == clean || strings.Trim(strings.ToLower(path), "{}") == o.ID.String()) {
			sh, found = o, true
			break
		}
	}
	if !found {
		return sh, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy is exposed at %s", path)
	}
	// Who may expose at a place may unexpose there: root, or the owner of
	// the directory the shadow is mounted on.
	// Who exposed may unexpose (and root).
	if c := CallerOf(ctx); c.Uid != 0 && c.Uid != sh.ExposedUid {
		return sh, vsserr.New(vsserr.E_ACCESSDENIED, "uid %d may unexpose only what it exposed; %s was exposed by uid %d", c.Uid, sh.ExposedPath, sh.ExposedUid)
	}
	if err := unexpose(sh); err != nil {
		return sh, err
	}
	sh.ExposedPath, sh.ExposedName, sh.ExposedUid = "", "", 0
	sh.Attributes &^= vss.AttrExposedLocally
	if err := s.cat.UpdateShadow(sh); err != nil {
		return sh, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "catalog")
	}
	s.log.Info("unexposed shadow copy", "shadow", sh.ID, "path", path)
	return sh, nil
}

// unexpose unmounts an exposed shadow (lazily if it is busy).
func unexpose(sh catalog.Shadow) error {
	if sh.ExposedPath == "" {
		return nil
	}
	err := unix.Unmount(sh.ExposedPath, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(sh.ExposedPath, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "unmounting the exposed shadow copy %s at %s", sh.ID, sh.ExposedPath)
	}
	return nil
}

// restoreExposures mounts again the exposed shadows whose mount is gone (a
// reboot), and forgets the exposures that cannot be restored.
func (s *Service) restoreExposures(shadows []catalog.Shadow) error {
	mounts, err := volume.Mounts()
	if err != nil {
		return err
	}
	mounted := map[string]bool{}
	for _, m := range mounts {
		mounted[m.MountPoint] = true
	}
	var errs []error
	for _, sh := range shadows {
		if sh.ExposedPath == "" || mounted[sh.ExposedPath] {
			continue
		}
		if _, err := mountPoint(sh.ExposedPath); err == nil {
			if err := bindReadOnly(sh.ShadowPath, sh.ExposedPath); err == nil {
				s.log.Info("exposed a shadow copy again", "shadow", sh.ID, "path", sh.ExposedPath)
				continue
			}
		}
		s.log.Warn("an exposed shadow copy cannot be exposed again; forgetting the exposure", "shadow", sh.ID, "path", sh.ExposedPath)
		sh.ExposedPath, sh.ExposedName, sh.ExposedUid = "", "", 0
		sh.Attributes &^= vss.AttrExposedLocally
		errs = append(errs, s.cat.UpdateShadow(sh))
	}
	return errors.Join(errs...)
}

// BreakSet takes a set's shadow copies out of the service (DiskShadow's
// break): each is moved out of the shadow storage to a directory beside it,
// "<storage parent>/shadow-{ID}", left read-only or made writable, and
// dropped from the catalog. They are then ordinary directories (btrfs
// subvolumes) the service no longer manages.
func (s *Service) BreakSet(ctx context.Context, setID uuid.UUID, writable bool) (out []catalog.Shadow, err error) {
	defer func() { s.auditf(ctx, "break-set", map[string]any{"set": setID, "writable": writable}, err) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.cat.Shadows()
	if err != nil {
		return nil, err
	}
	var mine []catalog.Shadow
	for _, sh := range all {
		if sh.SetID == setID {
			mine = append(mine, sh)
		}
	}
	if len(mine) == 0 {
		return nil, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy set %s", setID)
	}
	for _, sh := range mine {
		if sh.ExposedPath != "" {
			return nil, vsserr.New(vsserr.VSS_E_BAD_STATE, "shadow copy %s is exposed at %s: unexpose it first", sh.ID, sh.ExposedPath)
		}
	}
	ids := make([]uuid.UUID, len(mine))
	for i, sh := range mine {
		ids[i] = sh.ID
	}
	// Out of the catalog first (through the deletion journal, which the
	// moves then empty): a crash in between leaves a journal entry whose
	// path is gone, which the next start clears.
	moved, err := s.cat.BeginDelete(ids)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, sh := range moved {
		dst := filepath.Join(filepath.Dir(sh.StoragePath), "shadow-"+sh.ID.String())
		// A read-only btrfs snapshot cannot move to another directory:
		// open it for the move.
		sub, _ := btrfsutil.IsSubvolume(sh.ShadowPath)
		if sub {
			if err := btrfsutil.SetReadOnly(sh.ShadowPath, false); err != nil {
				errs = append(errs, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "moving shadow copy %s out of the storage", sh.ID))
				continue
			}
		}
		if err := os.Rename(sh.ShadowPath, dst); err != nil {
			if sub {
				_ = btrfsutil.SetReadOnly(sh.ShadowPath, true)
			}
			errs = append(errs, vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "moving shadow copy %s out of the storage", sh.ID))
			continue
		}
		switch {
		case sub && !writable:
			errs = append(errs, btrfsutil.SetReadOnly(dst, true))
		case writable && !sub:
			errs = append(errs, makeWritable(dst))
		}
		errs = append(errs, s.cat.FinishDelete(sh.ID))
		sh.ShadowPath, sh.StoragePath = dst, ""
		out = append(out, sh)
		s.log.Info("broke a shadow copy out of the service", "shadow", sh.ID, "path", dst, "writable", writable)
	}
	return out, errors.Join(errs...)
}

// makeWritable makes a broken-out copy writable: its top directory gets
// its owner's write bit.
func makeWritable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, fi.Mode().Perm()|0o200); err != nil {
		return fmt.Errorf("making %s writable: %w", path, err)
	}
	return nil
}
