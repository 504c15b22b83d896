// Package wbadmin is the wbadmin command: component-based backup and
// restore through the shadow copy service, as Windows Server Backup's
// wbadmin does it. This file reads its command line.
package wbadmin

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/linuxvss/vss/internal/vsserr"
)

// The verbs.
const (
	VerbStartBackup   = "start backup"
	VerbGetVersions   = "get versions"
	VerbGetItems      = "get items"
	VerbStartRecovery = "start recovery"
	VerbVerify        = "verify"
)

var verbs = []string{VerbStartBackup, VerbGetVersions, VerbGetItems, VerbStartRecovery, VerbVerify}

// Kind is the kind of backup asked for.
type Kind string

// The kinds. KindAuto is incremental when the target holds a version, and
// full otherwise (as Windows Server Backup does).
const (
	KindAuto         Kind = ""
	KindFull         Kind = "full"
	KindIncremental  Kind = "incremental"
	KindDifferential Kind = "differential"
)

// Command is a parsed wbadmin command line.
type Command struct {
	Verb         string
	BackupTarget string
	// Include are the paths to back up; Components are
	// "WRITER\COMPONENT" (a writer name or ID, then the component's
	// logical path and name).
	Include    []string
	Components []string
	// VSSFull sends BackupComplete (the writers may mark a differential
	// base); VSSCopy (the default) does not.
	VSSFull bool
	Kind    Kind
	Quiet   bool
	Version string
	// ItemType is File or Component; Items the paths or components.
	ItemType       string
	Items          []string
	RecoveryTarget string
	// Overwrite is Overwrite, CreateCopy or Skip.
	Overwrite string
	NewName   string
	// Format is text or json.
	Format string
	// Global options.
	StateDir, Socket, Config string
	Embedded, Verbose        bool
}

// option describes one option: its canonical name, whether it takes a
// value, and the verbs it belongs to (nil: all).
type option struct {
	name  string
	value bool
	verbs []string
	set   func(c *Command, v string) error
}

func list(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func absPath(what, v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("-%s needs a path", what)
	}
	if !filepath.IsAbs(v) {
		a, err := filepath.Abs(v)
		if err != nil {
			return "", fmt.Errorf("-%s: %w", what, err)
		}
		v = a
	}
	return filepath.Clean(v), nil
}

var options = []option{
	{name: "backuptarget", value: true, verbs: []string{VerbStartBackup, VerbGetVersions, VerbGetItems, VerbStartRecovery, VerbVerify}, set: func(c *Command, v string) (err error) {
		c.BackupTarget, err = absPath("backupTarget", v)
		return err
	}},
	{name: "include", value: true, verbs: []string{VerbStartBackup}, set: func(c *Command, v string) error {
		for _, p := range list(v) {
			a, err := absPath("include", p)
			if err != nil {
				return err
			}
			c.Include = append(c.Include, a)
		}
		return nil
	}},
	{name: "component", value: true, verbs: []string{VerbStartBackup}, set: func(c *Command, v string) error {
		for _, p := range list(v) {
			if !strings.Contains(p, `\`) {
				return fmt.Errorf("-component %q: give WRITER\\COMPONENT", p)
			}
			c.Components = append(c.Components, p)
		}
		return nil
	}},
	{name: "vssfull", verbs: []string{VerbStartBackup}, set: func(c *Command, _ string) error { c.VSSFull = true; return nil }},
	{name: "vsscopy", verbs: []string{VerbStartBackup}, set: func(c *Command, _ string) error { c.VSSFull = false; return nil }},
	{name: "full", verbs: []string{VerbStartBackup}, set: func(c *Command, _ string) error { return c.setKind(KindFull) }},
	{name: "incremental", verbs: []string{VerbStartBackup}, set: func(c *Command, _ string) error { return c.setKind(KindIncremental) }},
	{name: "differential", verbs: []string{VerbStartBackup}, set: func(c *Command, _ string) error { return c.setKind(KindDifferential) }},
	{name: "quiet", set: func(c *Command, _ string) error { c.Quiet = true; return nil }},
	{name: "version", value: true, verbs: []string{VerbGetItems, VerbStartRecovery, VerbVerify}, set: func(c *Command, v string) error {
		if v == "" {
			return fmt.Errorf("-version needs a version identifier (see wbadmin get versions)")
		}
		c.Version = v
		return nil
	}},
	{name: "itemtype", value: true, verbs: []string{VerbStartRecovery}, set: func(c *Command, v string) error {
		switch strings.ToLower(v) {
		case "file":
			c.ItemType = "File"
		case "component", "app":
			c.ItemType = "Component"
		default:
			return fmt.Errorf("-itemType must be File or Component, not %q", v)
		}
		return nil
	}},
	{name: "items", value: true, verbs: []string{VerbStartRecovery}, set: func(c *Command, v string) error {
		c.Items = append(c.Items, list(v)...)
		return nil
	}},
	{name: "recoverytarget", value: true, verbs: []string{VerbStartRecovery}, set: func(c *Command, v string) (err error) {
		c.RecoveryTarget, err = absPath("recoveryTarget", v)
		return err
	}},
	{name: "overwrite", value: true, verbs: []string{VerbStartRecovery}, set: func(c *Command, v string) error {
		switch strings.ToLower(v) {
		case "overwrite":
			c.Overwrite = "Overwrite"
		case "createcopy":
			c.Overwrite = "CreateCopy"
		case "skip":
			c.Overwrite = "Skip"
		default:
			return fmt.Errorf("-overwrite must be Overwrite, CreateCopy or Skip, not %q", v)
		}
		return nil
	}},
	{name: "newname", value: true, verbs: []string{VerbStartRecovery}, set: func(c *Command, v string) error {
		if v == "" || strings.ContainsAny(v, "/\x00") {
			return fmt.Errorf("-newName %q is not a plain name", v)
		}
		c.NewName = v
		return nil
	}},
	{name: "format", value: true, set: func(c *Command, v string) error {
		switch strings.ToLower(v) {
		case "text", "json":
			c.Format = strings.ToLower(v)
		default:
			return fmt.Errorf("--format must be text or json, not %q", v)
		}
		return nil
	}},
	{name: "statedir", value: true, set: func(c *Command, v string) error { c.StateDir = v; return nil }},
	{name: "socket", value: true, set: func(c *Command, v string) error { c.Socket = v; return nil }},
	{name: "config", value: true, set: func(c *Command, v string) error { c.Config = v; return nil }},
	{name: "embedded", set: func(c *Command, _ string) error { c.Embedded = true; return nil }},
	{name: "verbose", set: func(c *Command, _ string) error { c.Verbose = true; return nil }},
}

func (c *Command) setKind(k Kind) error {
	if c.Kind != KindAuto && c.Kind != k {
		return fmt.Errorf("-%s and -%s exclude each other", c.Kind, k)
	}
	c.Kind = k
	return nil
}

// usageError is a command line that does not parse (exit status 2).
func usageError(format string, args ...any) error {
	return vsserr.New(vsserr.E_INVALIDARG, format, args...)
}

// canonical turns an option word into its canonical name: case and dashes
// do not matter (-backupTarget, --backup-target, /BackupTarget).
func canonical(s string) string {
	return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s))
}

// Parse reads a command line (without the program name). Options take the
// Windows form (-name:value, /name:value) or the GNU one (--name value,
// --name=value); verbs and option names are case-insensitive.
func Parse(args []string) (*Command, error) {
	c := &Command{Format: "text"}
	var words []string
	i := 0
	for ; i < len(args) && len(words) < 2; i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") || strings.HasPrefix(a, "/") {
			break
		}
		words = append(words, strings.ToLower(a))
	}
	verb := strings.Join(words, " ")
	if len(words) == 1 && words[0] == "verify" {
		verb = VerbVerify
	}
	if !slices.Contains(verbs, verb) {
		if verb == "" {
			return nil, usageError("no command given (one of: %s)", strings.Join(verbs, ", "))
		}
		return nil, usageError("unknown command %q (one of: %s)", verb, strings.Join(verbs, ", "))
	}
	c.Verb = verb
	seen := map[string]bool{}
	for ; i < len(args); i++ {
		a := args[i]
		var name, value string
		hasValue := false
		switch {
		case strings.HasPrefix(a, "--"):
			name = a[2:]
			if k, v, ok := strings.Cut(name, "="); ok {
				name, value, hasValue = k, v, true
			}
		case strings.HasPrefix(a, "-"), strings.HasPrefix(a, "/"):
			name = a[1:]
			if k, v, ok := strings.Cut(name, ":"); ok {
				name, value, hasValue = k, v, true
			} else if k, v, ok := strings.Cut(name, "="); ok {
				name, value, hasValue = k, v, true
			}
		default:
			return nil, usageError("unexpected argument %q", a)
		}
		key := canonical(name)
		var opt *option
		for k := range options {
			if options[k].name == key {
				opt = &options[k]
			}
		}
		if opt == nil {
			return nil, usageError("unknown option %q for %s", a, verb)
		}
		if opt.verbs != nil && !slices.Contains(opt.verbs, verb) {
			return nil, usageError("option -%s does not apply to %s", name, verb)
		}
		if opt.value && !hasValue {
			if i+1 >= len(args) {
				return nil, usageError("option %s needs a value", a)
			}
			i++
			value, hasValue = args[i], true
		} else if !opt.value && hasValue {
			return nil, usageError("option -%s takes no value", name)
		}
		if seen[key] && key != "include" && key != "component" && key != "items" {
			return nil, usageError("option -%s given twice", name)
		}
		seen[key] = true
		if err := opt.set(c, value); err != nil {
			return nil, usageError("%s", err.Error())
		}
	}
	return c, c.check(seen)
}

// check enforces what each verb needs.
func (c *Command) check(seen map[string]bool) error {
	need := func(key, what string) error {
		if !seen[key] {
			return usageError("%s needs %s", c.Verb, what)
		}
		return nil
	}
	switch c.Verb {
	case VerbStartBackup:
		if err := need("backuptarget", "-backupTarget:DIR"); err != nil {
			return err
		}
		if len(c.Include) == 0 && len(c.Components) == 0 {
			return usageError("start backup needs -include:PATH[,PATH…] or -component:WRITER\\COMPONENT")
		}
		if seen["vssfull"] && seen["vsscopy"] {
			return usageError("-vssFull and -vssCopy exclude each other")
		}
		for _, p := range c.Include {
			if p == c.BackupTarget || strings.HasPrefix(c.BackupTarget+"/", p+"/") && p != "/" {
				return usageError("the backup target %s lies inside the included path %s", c.BackupTarget, p)
			}
		}
	case VerbGetItems, VerbVerify:
		if err := need("version", "-version:VERSION"); err != nil {
			return err
		}
	case VerbStartRecovery:
		for _, k := range [][2]string{{"version", "-version:VERSION"}, {"itemtype", "-itemType:File|Component"}, {"items", "-items:…"}} {
			if err := need(k[0], k[1]); err != nil {
				return err
			}
		}
		if c.NewName != "" && c.ItemType != "Component" {
			return usageError("-newName applies to -itemType:Component")
		}
		if c.Overwrite == "" {
			c.Overwrite = "Overwrite"
		}
	}
	return nil
}
