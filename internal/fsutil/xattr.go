package fsutil

import (
	"bytes"
	"errors"
	"sort"

	"golang.org/x/sys/unix"
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// xfsACLMirror are the names under which XFS also shows a file's POSIX ACLs
// (to root). The system.posix_acl_* attributes carry the same ACLs, so these
// are neither copied nor compared.
var xfsACLMirror = map[string]bool{"trusted.SGI_ACL_FILE": true, "trusted.SGI_ACL_DEFAULT": true}

// ListXattrs returns the extended attributes of path (not following a final
// symbolic link), sorted by name. A filesystem without xattr support gives
// none.
func ListXattrs(path string) ([]Xattr, error) {
	return readXattrs(
		func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) },
		func(name string, buf []byte) (int, error) { return unix.Lgetxattr(path, name, buf) })
}

// fdXattrs returns the extended attributes of an open file.
func fdXattrs(fd int) ([]Xattr, error) {
	return readXattrs(
		func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		func(name string, buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) })
}

// readXattrs lists and reads extended attributes with the given calls
// (path- or descriptor-based), retrying when they grow meanwhile.
func readXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error)) ([]Xattr, error) {
	for {
		size, err := list(nil)
		if err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
				return nil, nil
			}
			return nil, err
		}
		if size == 0 {
			return nil, nil
		}
		buf := make([]byte, size)
		n, err := list(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var out []Xattr
		for _, name := range bytes.Split(buf[:n], []byte{0}) {
			if len(name) == 0 || xfsACLMirror[string(name)] {
				continue
			}
			v, err := readXattr(string(name), get)
			if errors.Is(err, unix.ENODATA) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, err
			}
			out = append(out, Xattr{Name: string(name), Value: v})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
}

func readXattr(name string, get func(string, []byte) (int, error)) ([]byte, error) {
	for {
		n, err := get(name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		m, err := get(name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:m], nil
	}
}

// SetXattrs makes the extended attributes of path exactly xs: it sets every
// one of xs and removes the others. isLink says path is a symbolic link,
// where only some namespaces are allowed.
func SetXattrs(path string, xs []Xattr, isLink bool) error {
	have, err := ListXattrs(path)
	if err != nil {
		return err
	}
	want := map[string][]byte{}
	for _, x := range xs {
		want[x.Name] = x.Value
	}
	for _, h := range have {
		if v, ok := want[h.Name]; ok && bytes.Equal(v, h.Value) {
			delete(want, h.Name)
			continue
		}
		if _, ok := want[h.Name]; !ok {
			if err := unix.Lremovexattr(path, h.Name); err != nil && !ignorableXattrErr(err, isLink) {
				return err
			}
		}
	}
	for _, x := range xs {
		v, ok := want[x.Name]
		if !ok {
			continue
		}
		if err := unix.Lsetxattr(path, x.Name, v, 0); err != nil && !ignorableXattrErr(err, isLink) {
			return &xattrError{path: path, name: x.Name, err: err}
		}
	}
	return nil
}

type xattrError struct {
	path, name string
	err        error
}

func (e *xattrError) Error() string {
	return "set xattr " + e.name + " on " + e.path + ": " + e.err.Error()
}
func (e *xattrError) Unwrap() error { return e.err }

func ignorableXattrErr(err error, isLink bool) bool {
	if isLink && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP)) {
		return true // user.* is not allowed on symbolic links
	}
	return false
}
