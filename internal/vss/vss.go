// Package vss holds the VSS vocabulary shared by the service, the catalog and
// the tools: shadow copy attributes and contexts with the bit values of the
// Windows headers, and the words vssadmin prints for them.
package vss

import (
	"fmt"
	"strings"
)

// Attr is a set of VSS_VOLSNAP_ATTR_* bits.
type Attr uint32

// The attribute bits (vss.idl).
const (
	AttrPersistent          Attr = 0x00000001
	AttrNoAutoRecovery      Attr = 0x00000002
	AttrClientAccessible    Attr = 0x00000004
	AttrNoAutoRelease       Attr = 0x00000008
	AttrNoWriters           Attr = 0x00000010
	AttrTransportable       Attr = 0x00000020
	AttrNotSurfaced         Attr = 0x00000040
	AttrNotTransacted       Attr = 0x00000080
	AttrHardwareAssisted    Attr = 0x00010000
	AttrDifferential        Attr = 0x00020000
	AttrPlex                Attr = 0x00040000
	AttrImported            Attr = 0x00080000
	AttrExposedLocally      Attr = 0x00100000
	AttrExposedRemotely     Attr = 0x00200000
	AttrAutoRecover         Attr = 0x00400000
	AttrRollbackRecovery    Attr = 0x00800000
	AttrDelayedPostSnapshot Attr = 0x01000000
	AttrTxFRecovery         Attr = 0x02000000
	AttrFileShare           Attr = 0x04000000
)

var attrWords = []struct {
	bit  Attr
	word string
}{
	{AttrPersistent, "Persistent"},
	{AttrNoAutoRecovery, "No auto recovery"},
	{AttrClientAccessible, "Client-accessible"},
	{AttrNoAutoRelease, "No auto release"},
	{AttrNoWriters, "No writers"},
	{AttrTransportable, "Transportable"},
	{AttrNotSurfaced, "Not surfaced"},
	{AttrNotTransacted, "Not transacted"},
	{AttrHardwareAssisted, "Hardware assisted"},
	{AttrDifferential, "Differential"},
	{AttrPlex, "Plex"},
	{AttrImported, "Imported"},
	{AttrExposedLocally, "Exposed locally"},
	{AttrExposedRemotely, "Exposed remotely"},
	{AttrAutoRecover, "Auto recovered"},
	{AttrRollbackRecovery, "Rollback recovery"},
	{AttrDelayedPostSnapshot, "Delayed post snapshot"},
	{AttrTxFRecovery, "Transactionally consistent"},
	{AttrFileShare, "File share"},
}

// Words returns the attribute words vssadmin prints, in bit order.
func (a Attr) Words() []string {
	var out []string
	for _, w := range attrWords {
		if a&w.bit != 0 {
			out = append(out, w.word)
		}
	}
	return out
}

// String returns the words joined by ", " as in "Attributes: …".
func (a Attr) String() string { return strings.Join(a.Words(), ", ") }

// Context is a VSS_SNAPSHOT_CONTEXT: a combination of attribute bits.
type Context uint32

// The contexts (vss.idl).
const (
	CtxBackup                  Context = 0
	CtxFileShareBackup         Context = Context(AttrNoWriters)
	CtxNASRollback             Context = Context(AttrPersistent | AttrNoAutoRelease | AttrNoWriters)
	CtxAppRollback             Context = Context(AttrPersistent | AttrNoAutoRelease)
	CtxClientAccessible        Context = Context(AttrPersistent | AttrClientAccessible | AttrNoAutoRelease | AttrNoWriters)
	CtxClientAccessibleWriters Context = Context(AttrPersistent | AttrClientAccessible | AttrNoAutoRelease)
	CtxAll                     Context = 0xffffffff
)

var ctxNames = []struct {
	ctx  Context
	name string
}{
	{CtxBackup, "Backup"},
	{CtxFileShareBackup, "FileShareBackup"},
	{CtxNASRollback, "DataVolumeRollback"},
	{CtxAppRollback, "ApplicationRollback"},
	{CtxClientAccessible, "ClientAccessible"},
	{CtxClientAccessibleWriters, "ClientAccessibleWriters"},
}

// Name returns the word vssadmin prints after "Type:".
func (c Context) Name() string {
	for _, n := range ctxNames {
		if n.ctx == c {
			return n.name
		}
	}
	return fmt.Sprintf("Context(0x%x)", uint32(c))
}

// String is Name.
func (c Context) String() string { return c.Name() }

// Attr returns the context's attribute bits.
func (c Context) Attr() Attr { return Attr(c) }

// Persistent reports whether shadows of the context outlive their requester.
func (c Context) Persistent() bool { return Attr(c)&AttrPersistent != 0 }

// AutoRelease reports whether shadows of the context are released when their
// requester ends.
func (c Context) AutoRelease() bool { return Attr(c)&AttrNoAutoRelease == 0 }

// Writers reports whether writers take part in sets of the context.
func (c Context) Writers() bool { return Attr(c)&AttrNoWriters == 0 }

// ParseContext parses a context name (case-insensitive): a vssadmin Type word
// or the DiskShadow words persistent/volatile/clientaccessible.
func ParseContext(s string) (Context, bool) {
	l := strings.ToLower(strings.TrimSpace(s))
	for _, n := range ctxNames {
		if strings.ToLower(n.name) == l {
			return n.ctx, true
		}
	}
	switch l {
	case "persistent", "approllback", "app_rollback":
		return CtxAppRollback, true
	case "volatile", "backup":
		return CtxBackup, true
	case "nasrollback", "nas_rollback":
		return CtxNASRollback, true
	}
	return 0, false
}

// Valid reports whether c can be used to create shadows.
func (c Context) Valid() bool {
	for _, n := range ctxNames {
		if n.ctx == c {
			return true
		}
	}
	return false
}

// MarshalJSON writes the context's name.
func (c Context) MarshalJSON() ([]byte, error) { return []byte(`"` + c.Name() + `"`), nil }

// UnmarshalJSON reads a context name.
func (c *Context) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if v, ok := ParseContext(s); ok {
		*c = v
		return nil
	}
	var x uint32
	if _, err := fmt.Sscanf(s, "Context(0x%x)", &x); err == nil {
		*c = Context(x)
		return nil
	}
	return fmt.Errorf("unknown shadow copy context %q", s)
}

// MarshalJSON writes the attribute words as a list.
func (a Attr) MarshalJSON() ([]byte, error) {
	words := a.Words()
	var b strings.Builder
	b.WriteByte('[')
	for i, w := range words {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + w + `"`)
	}
	b.WriteByte(']')
	return []byte(b.String()), nil
}

// UnmarshalJSON reads a list of attribute words.
func (a *Attr) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	s = strings.TrimPrefix(strings.TrimSuffix(s, "]"), "[")
	var v Attr
	for _, part := range strings.Split(s, ",") {
		w := strings.Trim(strings.TrimSpace(part), `"`)
		if w == "" {
			continue
		}
		found := false
		for _, aw := range attrWords {
			if aw.word == w {
				v |= aw.bit
				found = true
			}
		}
		if !found {
			return fmt.Errorf("unknown shadow copy attribute %q", w)
		}
	}
	*a = v
	return nil
}
