package wbadmin

// This file turns -component:WRITER\COMPONENT into writers' components,
// and components into the paths a backup reads and a recovery writes.

import (
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// selected is one component chosen on the command line.
type selected struct {
	writer *vssmeta.WriterMetadata
	comp   *vssmeta.Component
}

// label names the component as the command line does.
func (s selected) label() string { return s.writer.Name + `\` + s.comp.FullPath() }

// writerMatches reports whether w names the writer with this name,
// instance name and IDs: its name, its instance name, "name:instance", or
// its instance or class ID (braces allowed); case does not matter.
func writerMatches(w, name, instance string, ids ...uuid.UUID) bool {
	w = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(w), "{"), "}")
	names := []string{name, name + ":" + instance}
	if instance != "" {
		names = append(names, instance)
	}
	for _, id := range ids {
		names = append(names, id.String())
	}
	return slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, w) })
}

// componentMatches reports whether c names the component with this full
// path (logical path and name) or name.
func componentMatches(c, fullPath, name string) bool {
	return strings.EqualFold(fullPath, c) || strings.EqualFold(name, c)
}

// findComponent resolves spec ("WRITER\COMPONENT", the component given by
// its logical path and name or by its name alone) among the writers'
// documents. An unknown or ambiguous spec is an error that lists what
// there is.
func findComponent(metas []*vssmeta.WriterMetadata, spec string) (selected, error) {
	w, c, ok := strings.Cut(spec, `\`)
	if !ok || w == "" || c == "" {
		return selected{}, vsserr.New(vsserr.E_INVALIDARG, "component %q: give it as WRITER\\COMPONENT", spec)
	}
	var found []selected
	var all []string
	for _, m := range metas {
		for i := range m.Components {
			comp := &m.Components[i]
			all = append(all, m.Name+":"+m.InstanceName+`\`+comp.FullPath())
			if writerMatches(w, m.Name, m.InstanceName, m.InstanceID, m.WriterID) && componentMatches(c, comp.FullPath(), comp.Name) {
				found = append(found, selected{m, comp})
			}
		}
	}
	switch len(found) {
	case 0:
		sort.Strings(all)
		if len(all) == 0 {
			all = []string{"none"}
		}
		return selected{}, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "component %q: no writer has it (the components are: %s)", spec, strings.Join(all, ", "))
	case 1:
		return found[0], nil
	}
	var names []string
	for _, f := range found {
		names = append(names, f.writer.Name+":"+f.writer.InstanceName+`\`+f.comp.FullPath()+" ("+f.writer.InstanceID.String()+")")
	}
	return selected{}, vsserr.New(vsserr.E_INVALIDARG, "component %q is ambiguous: name the writer instance, one of %s", spec, strings.Join(names, ", "))
}

// under reports whether p is dir or lies below it.
func under(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// whole reports whether f is a whole directory tree.
func whole(f vssmeta.File) bool { return f.Recursive && f.Filespec == "*" }

// selection is what a backup reads: whole trees (the -include paths),
// component files, less every writer's excludes.
type selection struct {
	trees    []string
	specs    []vssmeta.File
	excludes []vssmeta.File
}

// keep says whether the live path p (a directory when dir) is backed up.
func (s *selection) keep(p string, dir bool) bool {
	for _, x := range s.excludes {
		if x.Matches(p) {
			return false
		}
	}
	for _, t := range s.trees {
		if under(p, t) {
			return true
		}
	}
	for _, f := range s.specs {
		if f.Matches(p) {
			return true
		}
		// The directories that lead to the component's files.
		if dir && (under(f.Path, p) || f.Recursive && under(p, f.Path)) {
			return true
		}
	}
	return false
}

// roots are the top-most directories of the selection: each is read with
// one walk of its shadow copy.
func (s *selection) roots() []string {
	var all []string
	all = append(all, s.trees...)
	for _, f := range s.specs {
		all = append(all, filepath.Clean(f.Path))
	}
	sort.Strings(all) // a directory sorts before what lies below it
	var out []string
	for _, p := range all {
		if !slices.ContainsFunc(out, func(r string) bool { return under(p, r) }) {
			out = append(out, p)
		}
	}
	return out
}

// componentItems returns the paths of version m that hold the component's
// files: its whole trees, and each file its other specifications match.
func componentItems(files []string, comp *vssmeta.Component) []string {
	var items []string
	for _, f := range comp.Files {
		if whole(f) {
			items = append(items, strings.TrimPrefix(filepath.Clean(f.Path), "/"))
		}
	}
	for _, p := range files {
		live := "/" + p
		for _, f := range comp.Files {
			if !whole(f) && f.Matches(live) && !slices.ContainsFunc(items, func(it string) bool { return under(p, it) }) {
				items = append(items, p)
				break
			}
		}
	}
	return items
}

// renamer returns the Rename function of a restore of comp under newName:
// each whole directory of the component is restored beside itself, the
// first as newName and the others as newName-BASE; files whose names
// begin with the component's name (app.db, app.db-wal) get newName
// instead.
func renamer(comp *vssmeta.Component, newName string) func(string) string {
	type move struct{ from, to string }
	var dirs []move
	var fileDirs []string
	n := 0
	for _, f := range comp.Files {
		d := strings.TrimPrefix(filepath.Clean(f.Path), "/")
		if whole(f) {
			to := newName
			if n > 0 {
				to = newName + "-" + path.Base(d)
			}
			n++
			dirs = append(dirs, move{d, path.Join(path.Dir(d), to)})
		} else {
			fileDirs = append(fileDirs, d)
		}
	}
	return func(p string) string {
		for _, m := range dirs {
			if under(p, m.from) {
				return m.to + strings.TrimPrefix(p, m.from)
			}
		}
		dir, base := path.Split(p)
		if slices.Contains(fileDirs, strings.TrimSuffix(dir, "/")) && strings.HasPrefix(base, comp.Name) {
			return dir + newName + strings.TrimPrefix(base, comp.Name)
		}
		return p
	}
}

// mirrored returns the Mirror function of a restore of comp: the
// component's whole directories hold exactly what the backup has.
func mirrored(comp *vssmeta.Component) func(string) bool {
	var dirs []string
	for _, f := range comp.Files {
		if whole(f) {
			dirs = append(dirs, strings.TrimPrefix(filepath.Clean(f.Path), "/"))
		}
	}
	return func(p string) bool {
		return slices.ContainsFunc(dirs, func(d string) bool { return under(p, d) })
	}
}
