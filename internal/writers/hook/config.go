package hook

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// Namespace is the UUID namespace of the default class IDs of hook
// writers: uuid.NewSHA1(Namespace, name).
var Namespace = uuid.MustParse("8d3f2a61-4c1e-5b7a-9e20-6f4d1c8b3a95")

// DefaultDir is where the service looks for hook writer files.
const DefaultDir = "/etc/vss/writers.d"

// The limits of durations in a hook file.
const (
	// DefaultTimeout is a command's limit when the file sets none.
	DefaultTimeout = 30 * time.Second
	// MaxTimeout is the longest limit a file may set.
	MaxTimeout = time.Hour
)

// The on_error policies (the same words as writers.Policy).
const (
	OnErrorFail            = "fail"
	OnErrorContinue        = "continue"
	OnErrorCrashConsistent = "crash-consistent"
)

// maxFileSize bounds a hook file: it is configuration, not data.
const maxFileSize = 1 << 20

// Config is a parsed, checked hook writer file.
type Config struct {
	// File is the name the configuration was parsed under (its path).
	File string
	// Name is the writer name.
	Name string
	// ClassID is the writer class ID.
	ClassID uuid.UUID
	// InstanceID is derived from ClassID, Name and InstanceName.
	InstanceID uuid.UUID
	// InstanceName tells instances of a class apart.
	InstanceName string
	Usage        vssmeta.UsageType
	Source       vssmeta.SourceType
	// OnError is OnErrorFail, OnErrorContinue or OnErrorCrashConsistent.
	OnError string
	// User runs the commands when set (a name or a numeric ID).
	User string
	// Timeout is the default limit of each command.
	Timeout time.Duration
	// Components are the writer's components.
	Components []vssmeta.Component
	// Events maps each event that has a command to it.
	Events map[writers.Event]Command
}

// Command is the command of one event.
type Command struct {
	// Argv is the program (an absolute path) and its arguments.
	Argv []string
	// Timeout is the command's limit.
	Timeout time.Duration
}

// The file's raw shape. Every key is a string so that the checks, not the
// decoder, explain what is wrong with a value.
type rawConfig struct {
	Name         string              `toml:"name"`
	ClassID      string              `toml:"class_id"`
	InstanceName string              `toml:"instance_name"`
	Usage        string              `toml:"usage"`
	Source       string              `toml:"source"`
	OnError      string              `toml:"on_error"`
	User         string              `toml:"user"`
	Timeout      string              `toml:"timeout"`
	Component    []rawComponent      `toml:"component"`
	Events       map[string]rawEvent `toml:"events"`
}

type rawComponent struct {
	Name        string        `toml:"name"`
	LogicalPath string        `toml:"logical_path"`
	Caption     string        `toml:"caption"`
	Type        string        `toml:"type"`
	Files       []rawFileSpec `toml:"files"`
}

type rawFileSpec struct {
	Path      string `toml:"path"`
	Filespec  string `toml:"filespec"`
	Recursive bool   `toml:"recursive"`
}

type rawEvent struct {
	Command []string `toml:"command"`
	Timeout string   `toml:"timeout"`
}

var usages = map[string]vssmeta.UsageType{
	"user-data":             vssmeta.UsageUserData,
	"system-service":        vssmeta.UsageSystemService,
	"bootable-system-state": vssmeta.UsageBootableSystemState,
	"other":                 vssmeta.UsageOther,
}

var sources = map[string]vssmeta.SourceType{
	"transacted-db":     vssmeta.SourceTransactedDB,
	"non-transacted-db": vssmeta.SourceNonTransactedDB,
	"other":             vssmeta.SourceOther,
}

var componentTypes = map[string]vssmeta.ComponentType{
	"file-group": vssmeta.ComponentFileGroup,
	"database":   vssmeta.ComponentDatabase,
}

func keys[V any](m map[string]V) string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}

// ParseError is a problem in a hook file: the file, the line when known
// (0 otherwise) and what is wrong.
type ParseError struct {
	File string
	Line int
	Msg  string
}

// Error renders "file:line: msg".
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Parse reads and checks one hook writer file; name names it in errors.
// It is strict: unknown keys, unknown words, relative paths, bad
// durations and duplicate component names are errors (*ParseError).
func Parse(name string, b []byte) (*Config, error) {
	if len(b) > maxFileSize {
		return nil, &ParseError{File: name, Msg: fmt.Sprintf("file larger than %d bytes", maxFileSize)}
	}
	if !utf8.Valid(b) {
		return nil, &ParseError{File: name, Msg: "not UTF-8 text"}
	}
	var raw rawConfig
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, decodeError(name, err)
	}
	p := &checker{file: name, lines: keyLines(b)}
	cfg := p.check(&raw)
	if p.err != nil {
		return nil, p.err
	}
	return cfg, nil
}

// decodeError turns a go-toml error into a ParseError with its line.
func decodeError(file string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		var ks []string
		for _, e := range strict.Errors {
			ks = append(ks, strings.Join(e.Key(), "."))
		}
		line, _ := strict.Errors[0].Position()
		word := "key"
		if len(ks) > 1 {
			word = "keys"
		}
		return &ParseError{File: file, Line: line, Msg: fmt.Sprintf("unknown %s %s", word, strings.Join(ks, ", "))}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if k := de.Key(); len(k) > 0 {
			msg = strings.Join(k, ".") + ": " + msg
		}
		return &ParseError{File: file, Line: line, Msg: msg}
	}
	return &ParseError{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

// keyLines maps the dotted keys of a document ("events.freeze",
// "component.1.files") to the line where they first appear. Array tables
// are numbered from 0.
func keyLines(b []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(b)
	table := ""
	count := map[string]int{}
	// record notes the line of every prefix of n's key below prefix and
	// returns the key and its line.
	record := func(prefix string, n *unstable.Node) (string, int) {
		it := n.Key()
		path := prefix
		line := 0
		for it.Next() {
			k := it.Node()
			if path != "" {
				path += "."
			}
			path += string(k.Data)
			line = p.Shape(k.Raw).Start.Line
			if _, ok := lines[path]; !ok {
				lines[path] = line
			}
		}
		return path, line
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			table, _ = record("", e)
		case unstable.ArrayTable:
			k, line := record("", e)
			table = fmt.Sprintf("%s.%d", k, count[k])
			count[k]++
			if _, ok := lines[table]; !ok {
				lines[table] = line
			}
		case unstable.KeyValue:
			record(table, e)
		}
	}
	return lines
}

// checker checks a raw file and keeps the first problem.
type checker struct {
	file  string
	lines map[string]int
	err   error
}

// fail records a problem at key (dotted; the nearest known key gives the
// line).
func (c *checker) fail(key, format string, args ...any) {
	if c.err != nil {
		return
	}
	line := 0
	for k := key; k != ""; {
		if l, ok := c.lines[k]; ok {
			line = l
			break
		}
		if strings.HasSuffix(k, "]") { // files[2] → files
			k = k[:strings.LastIndexByte(k, '[')]
			continue
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	c.err = &ParseError{File: c.file, Line: line, Msg: msg}
}

// text checks a free-text value: no control characters.
func (c *checker) text(key, s string) {
	for _, r := range s {
		if unicode.IsControl(r) {
			c.fail(key, "control character in %q", s)
			return
		}
	}
}

func (c *checker) duration(key, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.fail(key, "bad duration %q (write it like \"30s\" or \"2m\")", s)
		return def
	}
	if d <= 0 || d > MaxTimeout {
		c.fail(key, "duration %s out of range (more than 0, at most %v)", s, MaxTimeout)
		return def
	}
	return d
}

func (c *checker) absPath(key, p string) string {
	if p == "" {
		c.fail(key, "empty path")
		return p
	}
	c.text(key, p)
	if !filepath.IsAbs(p) {
		c.fail(key, "path %q is not absolute", p)
	}
	return filepath.Clean(p)
}

func (c *checker) check(r *rawConfig) *Config {
	cfg := &Config{File: c.file, Events: map[writers.Event]Command{}}
	cfg.Name = strings.TrimSpace(r.Name)
	switch {
	case cfg.Name == "":
		c.fail("name", "a writer name is required")
	case len(cfg.Name) > 256:
		c.fail("name", "name longer than 256 bytes")
	}
	c.text("name", cfg.Name)
	if r.ClassID == "" {
		cfg.ClassID = uuid.NewSHA1(Namespace, []byte(cfg.Name))
	} else {
		id, err := uuid.Parse(strings.Trim(r.ClassID, "{}"))
		switch {
		case err != nil:
			c.fail("class_id", "not a GUID: %q", r.ClassID)
		case id == uuid.Nil:
			c.fail("class_id", "the nil GUID is not a class ID")
		}
		cfg.ClassID = id
	}
	cfg.InstanceName = r.InstanceName
	c.text("instance_name", cfg.InstanceName)
	cfg.InstanceID = uuid.NewSHA1(cfg.ClassID, []byte(cfg.Name+"\x00"+cfg.InstanceName))

	cfg.Usage = vssmeta.UsageUserData
	if r.Usage != "" {
		u, ok := usages[r.Usage]
		if !ok {
			c.fail("usage", "unknown usage %q (one of %s)", r.Usage, keys(usages))
		}
		cfg.Usage = u
	}
	cfg.Source = vssmeta.SourceOther
	if r.Source != "" {
		s, ok := sources[r.Source]
		if !ok {
			c.fail("source", "unknown source %q (one of %s)", r.Source, keys(sources))
		}
		cfg.Source = s
	}
	switch r.OnError {
	case "":
		cfg.OnError = OnErrorFail
	case OnErrorFail, OnErrorContinue, OnErrorCrashConsistent:
		cfg.OnError = r.OnError
	default:
		c.fail("on_error", "unknown policy %q (fail, continue or crash-consistent)", r.OnError)
	}
	if r.User != "" {
		if strings.ContainsAny(r.User, ":/ \t") {
			c.fail("user", "bad user name %q", r.User)
		}
		c.text("user", r.User)
		cfg.User = r.User
	}
	cfg.Timeout = c.duration("timeout", r.Timeout, DefaultTimeout)

	names := map[string]bool{}
	for i, rc := range r.Component {
		key := fmt.Sprintf("component.%d", i)
		comp := vssmeta.Component{
			Name: rc.Name, LogicalPath: rc.LogicalPath, Caption: rc.Caption,
			Type: vssmeta.ComponentFileGroup, Selectable: true, SelectableForRestore: true,
		}
		if rc.Name == "" {
			c.fail(key+".name", "a component name is required")
		}
		if names[rc.Name] {
			c.fail(key+".name", "component %q appears twice", rc.Name)
		}
		names[rc.Name] = true
		c.text(key+".name", rc.Name)
		c.text(key+".logical_path", rc.LogicalPath)
		c.text(key+".caption", rc.Caption)
		if rc.Type != "" {
			t, ok := componentTypes[rc.Type]
			if !ok {
				c.fail(key+".type", "unknown component type %q (file-group or database)", rc.Type)
			}
			comp.Type = t
		}
		if len(rc.Files) == 0 {
			c.fail(key+".files", "component %q has no files", rc.Name)
		}
		for j, f := range rc.Files {
			fk := fmt.Sprintf("%s.files[%d]", key, j)
			file := vssmeta.File{Path: c.absPath(fk+".path", f.Path), Filespec: f.Filespec, Recursive: f.Recursive}
			if file.Filespec == "" {
				file.Filespec = "*"
			}
			if strings.Contains(file.Filespec, "/") {
				c.fail(fk+".filespec", "filespec %q names a directory (put it in path)", file.Filespec)
			}
			if _, err := filepath.Match(file.Filespec, ""); err != nil {
				c.fail(fk+".filespec", "bad pattern %q", file.Filespec)
			}
			c.text(fk+".filespec", file.Filespec)
			comp.Files = append(comp.Files, file)
		}
		cfg.Components = append(cfg.Components, comp)
	}

	// Events in a fixed order, so that the first problem reported does
	// not depend on map order.
	evKeys := make([]string, 0, len(r.Events))
	for k := range r.Events {
		evKeys = append(evKeys, k)
	}
	sort.Strings(evKeys)
	for _, k := range evKeys {
		re := r.Events[k]
		key := "events." + k
		ev, err := writers.ParseEvent(k)
		if err != nil {
			c.fail(key, "%v", err)
			continue
		}
		if ev == writers.Identify {
			c.fail(key, "Identify runs no command: the metadata comes from this file")
			continue
		}
		if _, dup := cfg.Events[ev]; dup {
			c.fail(key, "event %v given twice", ev)
			continue
		}
		cmd := Command{Argv: re.Command, Timeout: c.duration(key+".timeout", re.Timeout, cfg.Timeout)}
		switch {
		case len(re.Command) == 0:
			c.fail(key+".command", "a command is required: a list whose first element is the program's absolute path")
		case !filepath.IsAbs(re.Command[0]):
			c.fail(key+".command", "program %q is not an absolute path", re.Command[0])
		}
		for _, a := range re.Command {
			if strings.ContainsRune(a, 0) {
				c.fail(key+".command", "NUL byte in an argument")
			}
		}
		cfg.Events[ev] = cmd
	}
	return cfg
}

// Load reads every *.toml file of dir, in name order, into a writer. A
// file that cannot be read or parsed gives an error naming the file and is
// skipped; so is a file whose writer name another file already used. A
// missing directory is no error: there are no hook writers.
func Load(dir string) ([]*Writer, []error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("hook writers: %w", err)}
	}
	var out []*Writer
	var errs []error
	seen := map[string]string{}
	for _, e := range ents { // os.ReadDir sorts by name
		if !strings.HasSuffix(e.Name(), ".toml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path)
		if err != nil {
			errs = append(errs, &ParseError{File: path, Msg: err.Error()})
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxFileSize {
			errs = append(errs, &ParseError{File: path, Msg: "file larger than " + strconv.Itoa(maxFileSize) + " bytes"})
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, &ParseError{File: path, Msg: err.Error()})
			continue
		}
		cfg, err := Parse(path, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := seen[cfg.Name]; ok {
			errs = append(errs, &ParseError{File: path, Msg: fmt.Sprintf("writer name %q is already used by %s", cfg.Name, prev)})
			continue
		}
		seen[cfg.Name] = path
		out = append(out, New(cfg, nil))
	}
	return out, errs
}
