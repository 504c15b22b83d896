package diskshadow

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// A script line, as DiskShadow reads it:
//
//   - words are separated by white space; keywords are case-insensitive,
//     arguments keep their case;
//   - "…" quotes a word with spaces; inside quotes, "" is one quotation mark;
//   - a word that begins with # (outside quotes) begins a comment that runs
//     to the end of the line;
//   - %NAME% in an argument is an alias or environment variable, replaced
//     when the line runs (after parsing, so that a value never changes how
//     a line parses).

// SyntaxError is a line that does not parse. Line is its number in a
// script (0 for a line typed at the prompt).
type SyntaxError struct {
	Line int
	Msg  string
	// Usage is the syntax of the command, when it is known.
	Usage string
}

// Error renders "line N: msg".
func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func syntaxf(usage, format string, args ...any) error {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...), Usage: usage}
}

// Command is one parsed DiskShadow command. String prints it back in a form
// that ParseLine parses to the same command.
type Command interface {
	String() string
}

// Help is "help [COMMAND…]" (also "?").
type Help struct{ Topic string }

// SetShow is "set" alone: print the current settings.
type SetShow struct{}

// SetContext is "set context {clientaccessible|persistent|volatile} [nowriters]".
type SetContext struct {
	Context   string // "clientaccessible", "persistent" or "volatile"
	NoWriters bool
}

// SetOption is "set option OPTION…".
type SetOption struct{ Options []string }

// SetVerbose is "set verbose {on|off}".
type SetVerbose struct{ On bool }

// SetMetadata is "set metadata FILE".
type SetMetadata struct{ File string }

// LoadMetadata is "load metadata FILE".
type LoadMetadata struct{ File string }

// Writer is "writer {verify|exclude} WRITER-OR-COMPONENT" (and "add exclude
// WRITER").
type Writer struct {
	Exclude bool // exclude, else verify
	Name    string
}

// AddShow is "add" alone: print the volumes and aliases added so far.
type AddShow struct{}

// AddVolume is "add volume PATH [alias NAME] [provider NAME]".
type AddVolume struct{ Path, Alias, Provider string }

// AddAlias is "add alias NAME VALUE".
type AddAlias struct{ Name, Value string }

// Create is "create".
type Create struct{}

// Exec is "exec PROGRAM [ARG…]".
type Exec struct {
	Program string
	Args    []string
}

// Begin is "begin backup" or "begin restore".
type Begin struct{ Restore bool }

// End is "end backup" or "end restore".
type End struct{ Restore bool }

// Expose is "expose SHADOW-ID PATH".
type Expose struct{ Shadow, Path string }

// Unexpose is "unexpose PATH".
type Unexpose struct{ Path string }

// Mask is "mask SET-ID".
type Mask struct{ Set string }

// Break is "break [readonly|writable] SET-ID".
type Break struct {
	Writable bool
	Set      string
}

// Revert is "revert SHADOW-ID".
type Revert struct{ Shadow string }

// Import is "import".
type Import struct{}

// ListWriters is "list writers [metadata|detailed|status]".
type ListWriters struct{ Mode string }

// ListShadows is "list shadows {all | set ID | id ID}".
type ListShadows struct {
	Which string // "all", "set" or "id"
	ID    string
}

// ListProviders is "list providers".
type ListProviders struct{}

// DeleteShadows is "delete shadows {all | volume PATH | oldest PATH | set ID
// | id ID | exposed PATH}".
type DeleteShadows struct {
	Which string // "all", "volume", "oldest", "set", "id" or "exposed"
	Arg   string
}

// Reset is "reset".
type Reset struct{}

// Resync is "resync [DESTINATION]".
type Resync struct{ Dest string }

// ExitCmd is "exit".
type ExitCmd struct{}

// Line is one command of a script with its line number and text.
type Line struct {
	N    int
	Text string
	Cmd  Command
}

// isSep reports whether r separates words.
func isSep(r rune) bool { return unicode.IsSpace(r) }

// tokenize splits a line into words (see the package comment on lines).
func tokenize(line string) ([]string, error) {
	var toks []string
	i := 0
	for {
		for i < len(line) {
			r, n := utf8.DecodeRuneInString(line[i:])
			if !isSep(r) {
				break
			}
			i += n
		}
		if i >= len(line) || line[i] == '#' {
			return toks, nil
		}
		var b strings.Builder
		quoted := false
		for i < len(line) {
			r, n := utf8.DecodeRuneInString(line[i:])
			if quoted {
				if r == '"' {
					if i+1 < len(line) && line[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					quoted = false
					i++
					continue
				}
			} else if isSep(r) {
				break
			} else if r == '"' {
				quoted = true
				i++
				continue
			}
			b.WriteString(line[i : i+n])
			i += n
		}
		if quoted {
			return nil, errors.New(`a quotation mark (") is not closed`)
		}
		toks = append(toks, b.String())
	}
}

// quote returns a word as it must be written for tokenize to read it back.
func quote(s string) string {
	need := s == "" || s[0] == '#'
	if !need {
		for _, r := range s {
			if isSep(r) || r == '"' {
				need = true
				break
			}
		}
	}
	if !need {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// words joins keywords (printed as they are) and arguments (quoted).
func words(keywords string, args ...string) string {
	var b strings.Builder
	b.WriteString(keywords)
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(quote(a))
	}
	return b.String()
}

func (c Help) String() string {
	if c.Topic == "" {
		return "help"
	}
	return words("help", c.Topic)
}
func (SetShow) String() string { return "set" }
func (c SetContext) String() string {
	s := "set context " + c.Context
	if c.NoWriters {
		s += " nowriters"
	}
	return s
}
func (c SetOption) String() string { return "set option " + strings.Join(c.Options, " ") }
func (c SetVerbose) String() string {
	if c.On {
		return "set verbose on"
	}
	return "set verbose off"
}
func (c SetMetadata) String() string  { return words("set metadata", c.File) }
func (c LoadMetadata) String() string { return words("load metadata", c.File) }
func (c Writer) String() string {
	if c.Exclude {
		return words("writer exclude", c.Name)
	}
	return words("writer verify", c.Name)
}
func (AddShow) String() string { return "add" }
func (c AddVolume) String() string {
	s := words("add volume", c.Path)
	if c.Alias != "" {
		s += " alias " + c.Alias
	}
	if c.Provider != "" {
		s += " " + words("provider", c.Provider)
	}
	return s
}
func (c AddAlias) String() string { return words("add alias "+c.Name, c.Value) }
func (Create) String() string     { return "create" }
func (c Exec) String() string     { return words("exec", append([]string{c.Program}, c.Args...)...) }
func (c Begin) String() string {
	if c.Restore {
		return "begin restore"
	}
	return "begin backup"
}
func (c End) String() string {
	if c.Restore {
		return "end restore"
	}
	return "end backup"
}
func (c Expose) String() string   { return words("expose", c.Shadow, c.Path) }
func (c Unexpose) String() string { return words("unexpose", c.Path) }
func (c Mask) String() string     { return words("mask", c.Set) }
func (c Break) String() string {
	if c.Writable {
		return words("break writable", c.Set)
	}
	return words("break readonly", c.Set)
}
func (c Revert) String() string      { return words("revert", c.Shadow) }
func (Import) String() string        { return "import" }
func (c ListWriters) String() string { return "list writers " + c.Mode }
func (c ListShadows) String() string {
	if c.Which == "all" {
		return "list shadows all"
	}
	return words("list shadows "+c.Which, c.ID)
}
func (ListProviders) String() string { return "list providers" }
func (c DeleteShadows) String() string {
	if c.Which == "all" {
		return "delete shadows all"
	}
	return words("delete shadows "+c.Which, c.Arg)
}
func (Reset) String() string { return "reset" }
func (c Resync) String() string {
	if c.Dest == "" {
		return "resync"
	}
	return words("resync", c.Dest)
}
func (ExitCmd) String() string { return "exit" }

// is reports whether word is the keyword kw (case-insensitive).
func is(word, kw string) bool { return strings.EqualFold(word, kw) }

// oneOf returns the keyword of kws that word is, or "".
func oneOf(word string, kws ...string) string {
	for _, k := range kws {
		if is(word, k) {
			return k
		}
	}
	return ""
}

var aliasName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
var aliasRef = regexp.MustCompile(`%[A-Za-z_][A-Za-z0-9_]*%`)

// checkAlias checks an alias name: an environment variable name.
func checkAlias(usage, name string) error {
	if !aliasName.MatchString(name) {
		return syntaxf(usage, "%q is not a valid alias name: use letters, digits and _, not beginning with a digit", name)
	}
	return nil
}

// parseGUID parses an ID written {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX},
// with or without the braces.
func parseGUID(s string) (uuid.UUID, bool) {
	switch {
	case len(s) == 38 && s[0] == '{' && s[37] == '}':
		s = s[1:37]
	case len(s) != 36:
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

// checkID checks an ID argument: a GUID, or a word holding a %ALIAS%
// (whose value is checked when the line runs).
func checkID(usage, what, s string) error {
	if aliasRef.MatchString(s) {
		return nil
	}
	if _, ok := parseGUID(s); !ok {
		return syntaxf(usage, "%q is not a %s ID: give {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX} (braces optional) or a %%ALIAS%%", s, what)
	}
	return nil
}

// Usage lines of the commands (also in help).
const (
	usageSetContext   = "set context {clientaccessible | persistent | volatile} [nowriters]"
	usageSetOption    = "set option {[differential | plex] [transportable] [[rollbackrecover] [txfrecover] | [noautorecovery]]}"
	usageSetVerbose   = "set verbose {on | off}"
	usageSetMetadata  = "set metadata FILE"
	usageSet          = "set [context … | option … | verbose … | metadata …]"
	usageLoadMetadata = "load metadata FILE"
	usageWriter       = "writer {verify | exclude} {WRITER-NAME | {WRITER-ID} | \"WRITER-NAME:\\LOGICAL-PATH\\COMPONENT\"}"
	usageAddVolume    = "add volume PATH [alias NAME] [provider {NAME | {PROVIDER-ID}}]"
	usageAddAlias     = "add alias NAME VALUE"
	usageAddExclude   = "add exclude WRITER-NAME"
	usageAdd          = "add [volume … | alias … | exclude …]"
	usageCreate       = "create"
	usageExec         = "exec PROGRAM [ARGUMENT…]"
	usageBegin        = "begin {backup | restore}"
	usageEnd          = "end {backup | restore}"
	usageExpose       = "expose {SHADOW-ID | %ALIAS%} PATH"
	usageUnexpose     = "unexpose PATH"
	usageMask         = "mask {SET-ID | %ALIAS%}"
	usageBreak        = "break [readonly | writable] {SET-ID | %ALIAS%}"
	usageRevert       = "revert {SHADOW-ID | %ALIAS%}"
	usageImport       = "import"
	usageListWriters  = "list writers [metadata | detailed | status]"
	usageListShadows  = "list shadows {all | set SET-ID | id SHADOW-ID}"
	usageList         = "list {writers [metadata | detailed | status] | shadows {all | set ID | id ID} | providers}"
	usageDelete       = "delete shadows {all | volume PATH | oldest PATH | set SET-ID | id SHADOW-ID | exposed PATH}"
	usageReset        = "reset"
	usageResync       = "resync [DESTINATION]"
	usageExit         = "exit"
)

// noMore fails when a command has words left over.
func noMore(usage string, rest []string) error {
	if len(rest) > 0 {
		return syntaxf(usage, "unexpected %q", rest[0])
	}
	return nil
}

// ParseLine parses one line. A blank or comment line gives a nil Command
// and no error. The error of a line that does not parse is a *SyntaxError.
func ParseLine(line string) (Command, error) {
	toks, err := tokenize(line)
	if err != nil {
		return nil, &SyntaxError{Msg: err.Error()}
	}
	if len(toks) == 0 {
		return nil, nil
	}
	return parseWords(toks)
}

func parseWords(t []string) (Command, error) {
	verb, args := t[0], t[1:]
	switch {
	case is(verb, "help"), verb == "?":
		return Help{Topic: strings.Join(args, " ")}, nil
	case is(verb, "set"):
		return parseSet(args)
	case is(verb, "load"):
		if len(args) == 0 || !is(args[0], "metadata") {
			return nil, syntaxf(usageLoadMetadata, "load what? (load metadata FILE)")
		}
		if len(args) < 2 || args[1] == "" {
			return nil, syntaxf(usageLoadMetadata, "load metadata needs a FILE")
		}
		return LoadMetadata{File: args[1]}, noMore(usageLoadMetadata, args[2:])
	case is(verb, "writer"):
		if len(args) == 0 {
			return nil, syntaxf(usageWriter, "writer needs verify or exclude")
		}
		k := oneOf(args[0], "verify", "exclude")
		if k == "" {
			return nil, syntaxf(usageWriter, "writer %q: expected verify or exclude", args[0])
		}
		if len(args) < 2 {
			return nil, syntaxf(usageWriter, "writer %s needs a writer or component name", k)
		}
		return Writer{Exclude: k == "exclude", Name: strings.Join(args[1:], " ")}, nil
	case is(verb, "add"):
		return parseAdd(args)
	case is(verb, "create"):
		return Create{}, noMore(usageCreate, args)
	case is(verb, "exec"):
		if len(args) == 0 {
			return nil, syntaxf(usageExec, "exec needs a PROGRAM")
		}
		if args[0] == "" {
			return nil, syntaxf(usageExec, "exec: the PROGRAM is empty")
		}
		return Exec{Program: args[0], Args: args[1:]}, nil
	case is(verb, "begin"), is(verb, "end"):
		usage := usageBegin
		if is(verb, "end") {
			usage = usageEnd
		}
		if len(args) == 0 {
			return nil, syntaxf(usage, "%s backup or %s restore?", strings.ToLower(verb), strings.ToLower(verb))
		}
		k := oneOf(args[0], "backup", "restore")
		if k == "" {
			return nil, syntaxf(usage, "%q: expected backup or restore", args[0])
		}
		if err := noMore(usage, args[1:]); err != nil {
			return nil, err
		}
		if is(verb, "end") {
			return End{Restore: k == "restore"}, nil
		}
		return Begin{Restore: k == "restore"}, nil
	case is(verb, "expose"):
		if len(args) < 2 {
			return nil, syntaxf(usageExpose, "expose needs a SHADOW-ID and a PATH")
		}
		if err := checkID(usageExpose, "shadow copy", args[0]); err != nil {
			return nil, err
		}
		if args[1] == "" {
			return nil, syntaxf(usageExpose, "expose: the PATH is empty")
		}
		return Expose{Shadow: args[0], Path: args[1]}, noMore(usageExpose, args[2:])
	case is(verb, "unexpose"):
		if len(args) < 1 || args[0] == "" {
			return nil, syntaxf(usageUnexpose, "unexpose needs the PATH where a shadow copy is exposed")
		}
		return Unexpose{Path: args[0]}, noMore(usageUnexpose, args[1:])
	case is(verb, "mask"):
		if len(args) < 1 {
			return nil, syntaxf(usageMask, "mask needs a SET-ID")
		}
		if err := checkID(usageMask, "shadow copy set", args[0]); err != nil {
			return nil, err
		}
		return Mask{Set: args[0]}, noMore(usageMask, args[1:])
	case is(verb, "break"):
		c := Break{}
		if len(args) > 0 {
			if k := oneOf(args[0], "readonly", "writable"); k != "" {
				c.Writable = k == "writable"
				args = args[1:]
			}
		}
		if len(args) < 1 {
			return nil, syntaxf(usageBreak, "break needs a SET-ID")
		}
		if err := checkID(usageBreak, "shadow copy set", args[0]); err != nil {
			return nil, err
		}
		c.Set = args[0]
		return c, noMore(usageBreak, args[1:])
	case is(verb, "revert"):
		if len(args) < 1 {
			return nil, syntaxf(usageRevert, "revert needs a SHADOW-ID")
		}
		if err := checkID(usageRevert, "shadow copy", args[0]); err != nil {
			return nil, err
		}
		return Revert{Shadow: args[0]}, noMore(usageRevert, args[1:])
	case is(verb, "import"):
		return Import{}, noMore(usageImport, args)
	case is(verb, "list"):
		return parseList(args)
	case is(verb, "delete"):
		return parseDelete(args)
	case is(verb, "reset"):
		return Reset{}, noMore(usageReset, args)
	case is(verb, "resync"):
		c := Resync{}
		if len(args) > 0 {
			c.Dest = args[0]
			if c.Dest == "" {
				return nil, syntaxf(usageResync, "resync: the DESTINATION is empty")
			}
			args = args[1:]
		}
		return c, noMore(usageResync, args)
	case is(verb, "exit"):
		return ExitCmd{}, noMore(usageExit, args)
	}
	return nil, &SyntaxError{Msg: fmt.Sprintf("unknown command %q: type HELP for the list of commands", verb)}
}

// Options of set option, in their canonical spelling.
var optionWords = []string{"differential", "plex", "transportable", "rollbackrecover", "txfrecover", "noautorecovery"}

func parseSet(args []string) (Command, error) {
	if len(args) == 0 {
		return SetShow{}, nil
	}
	switch oneOf(args[0], "context", "option", "verbose", "metadata") {
	case "context":
		if len(args) < 2 {
			return nil, syntaxf(usageSetContext, "set context needs clientaccessible, persistent or volatile")
		}
		k := oneOf(args[1], "clientaccessible", "persistent", "volatile")
		if k == "" {
			return nil, syntaxf(usageSetContext, "set context %q: expected clientaccessible, persistent or volatile", args[1])
		}
		c := SetContext{Context: k}
		rest := args[2:]
		if len(rest) > 0 && is(rest[0], "nowriters") {
			c.NoWriters = true
			rest = rest[1:]
		}
		return c, noMore(usageSetContext, rest)
	case "option":
		if len(args) < 2 {
			return nil, syntaxf(usageSetOption, "set option needs at least one option")
		}
		var opts []string
		has := map[string]bool{}
		for _, a := range args[1:] {
			k := oneOf(a, optionWords...)
			if k == "" && is(a, "noautorecover") { // Windows' documentation spells it so
				k = "noautorecovery"
			}
			if k == "" {
				return nil, syntaxf(usageSetOption, "set option %q: expected one of %s", a, strings.Join(optionWords, ", "))
			}
			if !has[k] {
				has[k] = true
				opts = append(opts, k)
			}
		}
		if has["differential"] && has["plex"] {
			return nil, syntaxf(usageSetOption, "set option: differential and plex exclude each other")
		}
		if has["noautorecovery"] && (has["rollbackrecover"] || has["txfrecover"]) {
			return nil, syntaxf(usageSetOption, "set option: noautorecovery excludes rollbackrecover and txfrecover")
		}
		return SetOption{Options: opts}, nil
	case "verbose":
		if len(args) < 2 {
			return nil, syntaxf(usageSetVerbose, "set verbose needs on or off")
		}
		k := oneOf(args[1], "on", "off")
		if k == "" {
			return nil, syntaxf(usageSetVerbose, "set verbose %q: expected on or off", args[1])
		}
		return SetVerbose{On: k == "on"}, noMore(usageSetVerbose, args[2:])
	case "metadata":
		if len(args) < 2 || args[1] == "" {
			return nil, syntaxf(usageSetMetadata, "set metadata needs a FILE")
		}
		return SetMetadata{File: args[1]}, noMore(usageSetMetadata, args[2:])
	}
	return nil, syntaxf(usageSet, "set %q: expected context, option, verbose or metadata", args[0])
}

func parseAdd(args []string) (Command, error) {
	if len(args) == 0 {
		return AddShow{}, nil
	}
	switch oneOf(args[0], "volume", "alias", "exclude") {
	case "volume":
		if len(args) < 2 || args[1] == "" {
			return nil, syntaxf(usageAddVolume, "add volume needs a PATH")
		}
		c := AddVolume{Path: args[1]}
		rest := args[2:]
		for len(rest) > 0 {
			k := oneOf(rest[0], "alias", "provider")
			if k == "" {
				return nil, syntaxf(usageAddVolume, "add volume: unexpected %q (expected alias or provider)", rest[0])
			}
			if len(rest) < 2 || rest[1] == "" {
				return nil, syntaxf(usageAddVolume, "add volume: %s needs a NAME", k)
			}
			switch k {
			case "alias":
				if c.Alias != "" {
					return nil, syntaxf(usageAddVolume, "add volume: alias is given twice")
				}
				if err := checkAlias(usageAddVolume, rest[1]); err != nil {
					return nil, err
				}
				c.Alias = rest[1]
			case "provider":
				if c.Provider != "" {
					return nil, syntaxf(usageAddVolume, "add volume: provider is given twice")
				}
				c.Provider = rest[1]
			}
			rest = rest[2:]
		}
		return c, nil
	case "alias":
		if len(args) < 3 {
			return nil, syntaxf(usageAddAlias, "add alias needs a NAME and a VALUE")
		}
		if err := checkAlias(usageAddAlias, args[1]); err != nil {
			return nil, err
		}
		return AddAlias{Name: args[1], Value: args[2]}, noMore(usageAddAlias, args[3:])
	case "exclude":
		if len(args) < 2 {
			return nil, syntaxf(usageAddExclude, "add exclude needs a writer name")
		}
		return Writer{Exclude: true, Name: strings.Join(args[1:], " ")}, nil
	}
	return nil, syntaxf(usageAdd, "add %q: expected volume, alias or exclude", args[0])
}

func parseList(args []string) (Command, error) {
	if len(args) == 0 {
		return nil, syntaxf(usageList, "list what? (writers, shadows or providers)")
	}
	switch oneOf(args[0], "writers", "shadows", "providers") {
	case "writers":
		c := ListWriters{Mode: "metadata"}
		if len(args) > 1 {
			k := oneOf(args[1], "metadata", "detailed", "status")
			if k == "" {
				return nil, syntaxf(usageListWriters, "list writers %q: expected metadata, detailed or status", args[1])
			}
			c.Mode = k
		}
		if len(args) > 2 {
			return nil, noMore(usageListWriters, args[2:])
		}
		return c, nil
	case "shadows":
		if len(args) < 2 {
			return nil, syntaxf(usageListShadows, "list shadows needs all, set ID or id ID")
		}
		k := oneOf(args[1], "all", "set", "id")
		if k == "" {
			return nil, syntaxf(usageListShadows, "list shadows %q: expected all, set or id", args[1])
		}
		if k == "all" {
			return ListShadows{Which: "all"}, noMore(usageListShadows, args[2:])
		}
		if len(args) < 3 {
			return nil, syntaxf(usageListShadows, "list shadows %s needs an ID", k)
		}
		what := "shadow copy"
		if k == "set" {
			what = "shadow copy set"
		}
		if err := checkID(usageListShadows, what, args[2]); err != nil {
			return nil, err
		}
		return ListShadows{Which: k, ID: args[2]}, noMore(usageListShadows, args[3:])
	case "providers":
		return ListProviders{}, noMore(usageList, args[1:])
	}
	return nil, syntaxf(usageList, "list %q: expected writers, shadows or providers", args[0])
}

func parseDelete(args []string) (Command, error) {
	if len(args) == 0 || !is(args[0], "shadows") {
		return nil, syntaxf(usageDelete, "delete what? (delete shadows …)")
	}
	if len(args) < 2 {
		return nil, syntaxf(usageDelete, "delete shadows needs all, volume, oldest, set, id or exposed")
	}
	k := oneOf(args[1], "all", "volume", "oldest", "set", "id", "exposed")
	if k == "" {
		return nil, syntaxf(usageDelete, "delete shadows %q: expected all, volume, oldest, set, id or exposed", args[1])
	}
	if k == "all" {
		return DeleteShadows{Which: "all"}, noMore(usageDelete, args[2:])
	}
	if len(args) < 3 || args[2] == "" {
		return nil, syntaxf(usageDelete, "delete shadows %s needs an argument", k)
	}
	switch k {
	case "set":
		if err := checkID(usageDelete, "shadow copy set", args[2]); err != nil {
			return nil, err
		}
	case "id":
		if err := checkID(usageDelete, "shadow copy", args[2]); err != nil {
			return nil, err
		}
	}
	return DeleteShadows{Which: k, Arg: args[2]}, noMore(usageDelete, args[3:])
}

// MaxLineLength bounds a script line.
const MaxLineLength = 64 << 10

// ParseScript reads and checks a whole script before anything runs: every
// line that does not parse is reported ("line N: …", all of them joined),
// and then no line is returned. Blank and comment lines are left out;
// Windows line ends (CR LF) and a UTF-8 byte order mark are accepted.
func ParseScript(r io.Reader) ([]Line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineLength)
	var out []Line
	var errs []error
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if n == 1 {
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		text = strings.TrimRight(text, "\r")
		cmd, err := ParseLine(text)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) {
				se.Line = n
			}
			errs = append(errs, err)
			continue
		}
		if cmd != nil {
			out = append(out, Line{N: n, Text: strings.TrimSpace(text), Cmd: cmd})
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			errs = append(errs, &SyntaxError{Line: n + 1, Msg: fmt.Sprintf("the line is longer than %d bytes", MaxLineLength)})
		} else {
			errs = append(errs, fmt.Errorf("reading the script: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
