package vssmeta

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/uuid"
)

// fullPath joins a logical path and a component name with "\".
func fullPath(logicalPath, name string) string {
	if logicalPath == "" {
		return name
	}
	return logicalPath + `\` + name
}

// FullPath returns the component's logical path and name joined with "\"
// ("Databases\main"), or only its name when it has no logical path.
func (c Component) FullPath() string { return fullPath(c.LogicalPath, c.Name) }

// FullPath returns the component's logical path and name joined with "\",
// or only its name when it has no logical path.
func (c ComponentState) FullPath() string { return fullPath(c.LogicalPath, c.Name) }

// Component returns the component with this logical path and name, or nil.
// The pointer is into m.Components.
func (m *WriterMetadata) Component(logicalPath, name string) *Component {
	if m == nil {
		return nil
	}
	for i := range m.Components {
		if c := &m.Components[i]; c.LogicalPath == logicalPath && c.Name == name {
			return c
		}
	}
	return nil
}

// Matches reports whether the file at the absolute path p is one of f's
// files: p lies in f.Path (anywhere below it when f.Recursive) and its name
// matches f.Filespec (path.Match). With Filespec "*" and Recursive, that is
// everything below f.Path. f.Path itself, relative paths and malformed
// patterns never match.
func (f File) Matches(p string) bool {
	if !filepath.IsAbs(p) || !filepath.IsAbs(f.Path) {
		return false
	}
	p = filepath.Clean(p)
	dir := filepath.Clean(f.Path)
	parent := filepath.Dir(p)
	if p == dir {
		return false
	}
	if f.Recursive {
		if dir != "/" && !strings.HasPrefix(p, dir+"/") {
			return false
		}
	} else if parent != dir {
		return false
	}
	ok, err := path.Match(f.Filespec, filepath.Base(p))
	return err == nil && ok
}

// Roots returns the distinct directories (File.Path) of all components'
// files, sorted: the places the writer's data lives, from which the
// service finds the volumes the writer needs. Excludes are not roots.
func (m *WriterMetadata) Roots() []string {
	if m == nil {
		return nil
	}
	seen := make(map[string]bool)
	var roots []string
	for _, c := range m.Components {
		for _, f := range c.Files {
			if !seen[f.Path] {
				seen[f.Path] = true
				roots = append(roots, f.Path)
			}
		}
	}
	sort.Strings(roots)
	return roots
}

// Writer returns the writer with this instance ID, or nil. The pointer is
// into b.Writers.
func (b *BackupComponents) Writer(instanceID uuid.UUID) *WriterComponents {
	if b == nil {
		return nil
	}
	for i := range b.Writers {
		if w := &b.Writers[i]; w.InstanceID == instanceID {
			return w
		}
	}
	return nil
}

// Component returns the component with this logical path and name, or nil.
// The pointer is into w.Components.
func (w *WriterComponents) Component(logicalPath, name string) *ComponentState {
	if w == nil {
		return nil
	}
	for i := range w.Components {
		if c := &w.Components[i]; c.LogicalPath == logicalPath && c.Name == name {
			return c
		}
	}
	return nil
}

// AddComponent selects a component of the writer w for the backup (VSS
// IVssBackupComponents::AddComponent): it adds the writer (by instance ID)
// if it is not there yet, then the component with its type. It fails when
// w has no such component or the component is not selectable; adding a
// component twice is a no-op.
func (b *BackupComponents) AddComponent(w *WriterMetadata, logicalPath, name string) error {
	if b == nil {
		return errors.New("add component: no backup components document")
	}
	if w == nil {
		return errors.New("add component: no writer metadata")
	}
	c := w.Component(logicalPath, name)
	if c == nil {
		return fmt.Errorf("add component: writer %s has no component %s", quote(w.Name), quote(fullPath(logicalPath, name)))
	}
	if !c.Selectable {
		return fmt.Errorf("add component: component %s of writer %s is not selectable", quote(c.FullPath()), quote(w.Name))
	}
	wc := b.Writer(w.InstanceID)
	if wc == nil {
		b.Writers = append(b.Writers, WriterComponents{
			WriterID:   w.WriterID,
			InstanceID: w.InstanceID,
			Name:       w.Name,
		})
		wc = &b.Writers[len(b.Writers)-1]
	} else if wc.WriterID != w.WriterID {
		return fmt.Errorf("add component: instance %s belongs to writer class %s, not %s", w.InstanceID, wc.WriterID, w.WriterID)
	}
	if wc.Component(logicalPath, name) != nil {
		return nil
	}
	wc.Components = append(wc.Components, ComponentState{
		LogicalPath: logicalPath,
		Name:        name,
		Type:        c.Type,
	})
	return nil
}
