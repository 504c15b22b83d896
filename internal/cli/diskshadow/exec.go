package diskshadow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/catalog"
	"github.com/linuxvss/vss/internal/cli/clisvc"
	"github.com/linuxvss/vss/internal/provider"
	"github.com/linuxvss/vss/internal/requester"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/volume"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

// ErrExit is what Exec returns for "exit": the caller ends the run (and
// calls Close).
var ErrExit = errors.New("exit")

// Shell is the state of one diskshadow run — the context, the options, the
// volumes and aliases, the writers to verify or exclude, the metadata file,
// the requester session and what it made — and runs commands against a
// Backend. It is not safe for concurrent use.
type Shell struct {
	b      Backend
	out    io.Writer
	errOut io.Writer
	log    *slog.Logger

	ctxWord   string // "volatile", "persistent" or "clientaccessible"
	noWriters bool
	options   []string
	verbose   bool
	metaFile  string
	loaded    *Metadata
	volumes   []volumeEntry
	aliases   []aliasEntry
	verify    []string
	exclude   []string

	backup     bool              // begin backup was given, end backup not yet
	sess       requester.Session // the current backup or restore session
	restoring  bool              // sess is a restore session (begin restore)
	set        *service.CreateResult
	setContext vss.Context
	writers    []requester.WriterInfo // gathered for the set
	components []componentRef         // added to the set
	pruned     bool                   // some of the set's shadow copies were deleted
	env        map[string]savedEnv    // variables this run set, with what they were
}

type volumeEntry struct {
	Path     string // canonical mount or volume path
	Alias    string
	Provider string
}

type aliasEntry struct{ Name, Value string }

type savedEnv struct {
	value string
	had   bool
}

type componentRef struct {
	Writer      string
	Instance    uuid.UUID
	LogicalPath string
	Name        string
}

func (c componentRef) path() string {
	p := c.Name
	if c.LogicalPath != "" {
		p = c.LogicalPath + `\` + c.Name
	}
	return c.Writer + `:\` + p
}

// NewShell returns a shell on b with the default settings (context
// volatile, no options, verbose off), printing to out and errOut.
func NewShell(b Backend, out, errOut io.Writer, log *slog.Logger) *Shell {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Shell{b: b, out: out, errOut: errOut, log: log, ctxWord: "volatile", env: map[string]savedEnv{}}
}

// Context returns the VSS context of the next create.
func (s *Shell) Context() vss.Context {
	switch s.ctxWord {
	case "persistent":
		if s.noWriters {
			return vss.CtxNASRollback
		}
		return vss.CtxAppRollback
	case "clientaccessible":
		if s.noWriters {
			return vss.CtxClientAccessible
		}
		return vss.CtxClientAccessibleWriters
	}
	if s.noWriters {
		return vss.CtxFileShareBackup
	}
	return vss.CtxBackup
}

// backupType is full within begin backup … end backup, else copy.
func (s *Shell) backupType() vssmeta.BackupType {
	if s.backup {
		return vssmeta.BackupFull
	}
	return vssmeta.BackupCopy
}

func (s *Shell) hasOption(o string) bool { return slices.Contains(s.options, o) }

func (s *Shell) verbosef(format string, args ...any) {
	if s.verbose {
		fmt.Fprintf(s.out, format, args...)
	}
}

func badState(format string, args ...any) error {
	return vsserr.New(vsserr.VSS_E_BAD_STATE, format, args...)
}

func notSupported(format string, args ...any) error {
	return vsserr.New(vsserr.VSS_E_NOT_SUPPORTED, format, args...)
}

// Exec runs one command. "exit" returns ErrExit.
func (s *Shell) Exec(ctx context.Context, c Command) error {
	switch c := c.(type) {
	case Help:
		return printHelp(s.out, c.Topic)
	case SetShow:
		s.printSettings()
		return nil
	case SetContext:
		s.ctxWord, s.noWriters = c.Context, c.NoWriters
		s.verbosef("The context of the next shadow copy set is %s (%s).\n", c.String()[len("set context "):], s.Context().Name())
		return nil
	case SetOption:
		if slices.Contains(c.Options, "transportable") {
			return notSupported("transportable shadow copies (kept for import on another computer) need a hardware provider, and Linux has none: leave out transportable (nothing was changed)")
		}
		s.options = slices.Clone(c.Options)
		return nil
	case SetVerbose:
		s.verbose = c.On
		return nil
	case SetMetadata:
		return s.setMetadata(c)
	case LoadMetadata:
		return s.loadMetadata(c)
	case Writer:
		name := strings.TrimSpace(s.expand(c.Name))
		if name == "" {
			return vsserr.New(vsserr.E_INVALIDARG, "the writer name is empty")
		}
		list := &s.verify
		if c.Exclude {
			list = &s.exclude
		}
		if !slices.ContainsFunc(*list, func(n string) bool { return strings.EqualFold(n, name) }) {
			*list = append(*list, name)
		}
		return nil
	case AddShow:
		s.printAdded()
		return nil
	case AddVolume:
		return s.addVolume(ctx, c)
	case AddAlias:
		s.setAlias(c.Name, s.expand(c.Value))
		return nil
	case Create:
		return s.create(ctx)
	case Exec:
		return s.exec(ctx, c)
	case Begin:
		if c.Restore {
			return s.beginRestore(ctx)
		}
		return s.beginBackup()
	case End:
		if c.Restore {
			return s.endRestore(ctx)
		}
		return s.endBackup(ctx)
	case Expose:
		return s.expose(ctx, c)
	case Unexpose:
		return s.unexpose(ctx, c)
	case Mask:
		if _, err := s.id(c.Set, "shadow copy set"); err != nil {
			return err
		}
		return notSupported("mask removes imported hardware shadow copies; Linux has no transportable shadow copies to import (use delete shadows set ID)")
	case Break:
		return s.breakSet(ctx, c)
	case Revert:
		return s.revert(ctx, c)
	case Import:
		return notSupported("import brings in transportable hardware shadow copies; Linux has none (the shadow copies of this computer are in the catalog already: list shadows all)")
	case ListWriters:
		return s.listWriters(ctx, c.Mode)
	case ListShadows:
		return s.listShadows(ctx, c)
	case ListProviders:
		ps, err := s.b.ListProviders(ctx)
		if err != nil {
			return err
		}
		printProviders(s.out, ps)
		return nil
	case DeleteShadows:
		return s.deleteShadows(ctx, c)
	case Reset:
		err := s.Close(ctx)
		s.resetSettings()
		return err
	case Resync:
		return notSupported("resync copies a shadow copy back onto a hardware LUN; Linux providers have no LUNs (to bring a volume back to a shadow copy, use revert SHADOW-ID)")
	case ExitCmd:
		return ErrExit
	}
	return fmt.Errorf("internal error: no handler for %T", c)
}

// resetSettings puts every setting back to its default.
func (s *Shell) resetSettings() {
	s.ctxWord, s.noWriters, s.options, s.verbose = "volatile", false, nil, false
	s.metaFile, s.loaded = "", nil
	s.volumes, s.aliases, s.verify, s.exclude = nil, nil, nil, nil
	s.backup = false
}

// Close ends the session (BackupShutdown; shadow copies of a volatile
// context are deleted) and gives the environment back the variables this
// run changed. Persistent shadow copies stay.
func (s *Shell) Close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if s.restoring {
		fmt.Fprintln(s.errOut, "Warning: the restore was not ended: its writers got no PostRestore (end restore).")
	}
	if s.backup && s.set != nil {
		fmt.Fprintln(s.errOut, "Warning: the backup was not ended: its writers got no BackupComplete (end backup).")
	}
	if s.sess != nil && s.set != nil && s.setContext.AutoRelease() {
		s.verbosef("Releasing the %d shadow copies of set {%s} (context volatile).\n", len(s.set.Shadows), s.set.Set.ID)
	}
	errs = append(errs, s.endSession(ctx))
	s.restoreEnv()
	return errors.Join(errs...)
}

// endSession ends the current session, if any.
func (s *Shell) endSession(ctx context.Context) error {
	sess, set, cx, pruned := s.sess, s.set, s.setContext, s.pruned
	s.sess, s.restoring, s.set, s.writers, s.components, s.pruned = nil, false, nil, nil, nil, false
	if sess == nil {
		return nil
	}
	var errs []error
	if pruned && set != nil && cx.AutoRelease() && len(set.Shadows) > 0 {
		// Some of the set's shadow copies were deleted by hand: the
		// service's release of the whole set would stop at the first one
		// that is gone, so the others go here.
		ids := make([]uuid.UUID, len(set.Shadows))
		for i, sh := range set.Shadows {
			ids[i] = sh.ID
		}
		if _, err := s.b.DeleteShadows(ctx, ids); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := sess.End(ctx); err != nil && !(pruned && vsserr.CodeOf(err) == vsserr.VSS_E_OBJECT_NOT_FOUND) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// --- aliases and arguments ---

// lookup returns an alias's value, else an environment variable's; names
// are case-insensitive, as on Windows.
func (s *Shell) lookup(name string) (string, bool) {
	for i := len(s.aliases) - 1; i >= 0; i-- {
		if strings.EqualFold(s.aliases[i].Name, name) {
			return s.aliases[i].Value, true
		}
	}
	if v, ok := os.LookupEnv(name); ok {
		return v, true
	}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// setAlias defines an alias and exports it to the environment, so that
// programs started by exec see it.
func (s *Shell) setAlias(name, value string) {
	i := slices.IndexFunc(s.aliases, func(a aliasEntry) bool { return strings.EqualFold(a.Name, name) })
	if i >= 0 {
		s.aliases[i].Value = value
	} else {
		s.aliases = append(s.aliases, aliasEntry{name, value})
	}
	if _, saved := s.env[name]; !saved {
		old, had := os.LookupEnv(name)
		s.env[name] = savedEnv{old, had}
	}
	os.Setenv(name, value)
}

// restoreEnv puts back the environment variables this run set.
func (s *Shell) restoreEnv() {
	for name, e := range s.env {
		if e.had {
			os.Setenv(name, e.value)
		} else {
			os.Unsetenv(name)
		}
	}
	s.env = map[string]savedEnv{}
}

// expand replaces each %NAME% that names an alias or an environment
// variable with its value; anything else is left as it is.
func (s *Shell) expand(arg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(arg, '%')
		if i < 0 {
			break
		}
		j := strings.IndexByte(arg[i+1:], '%')
		if j < 0 {
			break
		}
		name := arg[i+1 : i+1+j]
		if aliasName.MatchString(name) {
			if v, ok := s.lookup(name); ok {
				b.WriteString(arg[:i])
				b.WriteString(v)
				arg = arg[i+2+j:]
				continue
			}
		}
		b.WriteString(arg[:i+1])
		arg = arg[i+1:]
	}
	b.WriteString(arg)
	return b.String()
}

// id expands an ID argument and parses it.
func (s *Shell) id(arg, what string) (uuid.UUID, error) {
	v := strings.TrimSpace(s.expand(arg))
	if id, ok := parseGUID(v); ok {
		return id, nil
	}
	if m := aliasRef.FindString(v); m != "" {
		return uuid.Nil, vsserr.New(vsserr.E_INVALIDARG, "alias %s is not defined (create sets VSS_SHADOW_n and VSS_SHADOW_SET; add alias defines others)", m)
	}
	return uuid.Nil, vsserr.New(vsserr.E_INVALIDARG, "%q is not a %s ID: expected {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}", v, what)
}

// path expands a path argument and makes it absolute.
func (s *Shell) path(arg string) (string, error) {
	p := s.expand(arg)
	if p == "" {
		return "", vsserr.New(vsserr.E_INVALIDARG, "the path %q is empty once its aliases are replaced", arg)
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", vsserr.Wrap(vsserr.E_INVALIDARG, err, "path %s", p)
	}
	return a, nil
}

// aliasOf returns the alias whose value is the ID, if any.
func (s *Shell) aliasOf(id uuid.UUID) string {
	for _, a := range s.aliases {
		if v, ok := parseGUID(strings.TrimSpace(a.Value)); ok && v == id {
			return a.Name
		}
	}
	return ""
}

// --- settings ---

func (s *Shell) setMetadata(c SetMetadata) error {
	p, err := s.path(c.File)
	if err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Dir(p)); err != nil || !st.IsDir() {
		return vsserr.New(vsserr.E_INVALIDARG, "set metadata: the directory of %s does not exist", p)
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return vsserr.New(vsserr.E_INVALIDARG, "set metadata: %s is a directory; give a file name", p)
	}
	s.metaFile = p
	s.verbosef("The metadata will be written to %s after create and end backup.\n", p)
	return nil
}

func (s *Shell) loadMetadata(c LoadMetadata) error {
	p, err := s.path(c.File)
	if err != nil {
		return err
	}
	m, err := ReadMetadata(p)
	if err != nil {
		return err
	}
	s.loaded = m
	fmt.Fprintf(s.out, "The metadata of shadow copy set {%s} (%s backup, %d writers) was loaded from %s.\n",
		m.BCD.SetID, strings.ToLower(m.BCD.BackupType.String()), len(m.Writers), p)
	return nil
}

// --- volumes ---

func (s *Shell) addVolume(ctx context.Context, c AddVolume) error {
	p, err := s.path(c.Path)
	if err != nil {
		return err
	}
	if len(s.volumes) >= service.MaxVolumesPerSet {
		return vsserr.New(vsserr.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, "a shadow copy set holds at most %d volumes", service.MaxVolumesPerSet)
	}
	// The volume is checked now, as on Windows. Through vssd, a user who
	// may not inspect the filesystem (btrfs ioctls need privileges) leaves
	// the check to the service, at create.
	path, desc := "", ""
	if v, err := volume.Resolve(p); err == nil {
		path, desc = v.Path, fmt.Sprintf("%s, %s", v.Name(), v.FSType)
	} else if _, daemon := s.b.(*clisvc.Daemon); daemon && os.Geteuid() != 0 && errors.Is(err, os.ErrPermission) {
		if path, err = volume.Canonical(p); err != nil {
			return err
		}
		desc = "checked at create"
	} else {
		return err
	}
	for _, o := range s.volumes {
		if o.Path == path {
			return vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "volume %s is already added", path)
		}
		if c.Alias != "" && strings.EqualFold(o.Alias, c.Alias) {
			return vsserr.New(vsserr.VSS_E_OBJECT_ALREADY_EXISTS, "alias %s is already used for volume %s", c.Alias, o.Path)
		}
	}
	prov := ""
	if c.Provider != "" {
		pi, err := s.provider(ctx, s.expand(c.Provider))
		if err != nil {
			return err
		}
		prov = pi.Name
	}
	s.volumes = append(s.volumes, volumeEntry{Path: path, Alias: c.Alias, Provider: prov})
	s.verbosef("Volume %s (%s) was added.\n", path, desc)
	return nil
}

// provider finds a registered provider by name or {ID}.
func (s *Shell) provider(ctx context.Context, name string) (provider.Info, error) {
	ps, err := s.b.ListProviders(ctx)
	if err != nil {
		return provider.Info{}, err
	}
	id, isID := parseGUID(strings.TrimSpace(name))
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) || (isID && p.ID == id) {
			return p, nil
		}
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return provider.Info{}, vsserr.New(vsserr.VSS_E_PROVIDER_NOT_REGISTERED, "no provider %q (registered: %s)", name, strings.Join(names, ", "))
}

// providers chooses the provider of each volume: the one given with add
// volume; with option plex a complete copy; with option differential a
// copy-on-write one (btrfs for a btrfs subvolume, reflink for a volume that
// can clone files); else "" (the service chooses by volume type).
func (s *Shell) providers(ctx context.Context) ([]string, error) {
	out := make([]string, len(s.volumes))
	plex, diff := s.hasOption("plex"), s.hasOption("differential")
	var ps []provider.Info
	if plex || diff {
		var err error
		if ps, err = s.b.ListProviders(ctx); err != nil {
			return nil, err
		}
	}
	for i, v := range s.volumes {
		if v.Provider != "" {
			out[i] = v.Provider
			continue
		}
		switch {
		case plex:
			for _, p := range ps {
				if p.Attributes&vss.AttrPlex != 0 {
					out[i] = p.Name
					break
				}
			}
			if out[i] == "" {
				return nil, vsserr.New(vsserr.VSS_E_PROVIDER_NOT_REGISTERED, "option plex: no provider makes complete copies")
			}
		case diff:
			vol, err := volume.Resolve(v.Path)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				if p.Attributes&vss.AttrDifferential == 0 {
					continue
				}
				if (p.Method == provider.RedirectOnWrite && vol.FSType == "btrfs" && vol.Kind != volume.KindDirectory) ||
					(p.Method == provider.CopyOnWrite && vol.Reflink) {
					out[i] = p.Name
					break
				}
			}
			if out[i] == "" {
				return nil, vsserr.New(vsserr.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER,
					"option differential: no copy-on-write provider supports %s (%s): it needs a btrfs subvolume or a filesystem that clones files (XFS with reflink); use set option plex for a complete copy", v.Path, vol.FSType)
			}
		}
	}
	return out, nil
}

// --- create ---

// session returns the current backup session, beginning one if needed.
func (s *Shell) session(ctx context.Context) (requester.Session, error) {
	if s.sess != nil {
		return s.sess, nil
	}
	sess, err := s.b.Requester().InitializeForBackup(ctx, "")
	if err != nil {
		return nil, err
	}
	s.sess = sess
	return sess, nil
}

// matchesWriter reports whether name names the writer (by name, class ID
// or instance ID; braces optional; case-insensitive).
func matchesWriter(name string, st service.WriterStatus) bool {
	n := strings.Trim(strings.TrimSpace(name), "{}")
	return strings.EqualFold(n, st.Name) || strings.EqualFold(n, st.ID.String()) || strings.EqualFold(n, st.InstanceID.String())
}

// componentName splits "WRITER:\LOGICAL\NAME" into the writer and the
// component's full path; ok is false for a plain writer name.
func componentName(name string) (writer, path string, ok bool) {
	w, p, ok := strings.Cut(name, ":")
	if !ok || w == "" {
		return "", "", false
	}
	return strings.TrimSpace(w), strings.Trim(strings.TrimSpace(p), `\`), true
}

func (c componentRef) matches(name string) bool {
	w, p, ok := componentName(name)
	if !ok || !strings.EqualFold(w, c.Writer) {
		return false
	}
	full := c.Name
	if c.LogicalPath != "" {
		full = c.LogicalPath + `\` + c.Name
	}
	return strings.EqualFold(p, full)
}

// onVolumes reports whether a component has files on the set's volumes.
func (s *Shell) onVolumes(c vssmeta.Component) bool {
	for _, f := range c.Files {
		for _, v := range s.volumes {
			if volume.Within(f.Path, v.Path) {
				return true
			}
		}
	}
	return false
}

// selectComponents picks, for the writers gathered, the selectable
// components on the set's volumes (all of them for a writer without files),
// less the excluded components.
func (s *Shell) selectComponents(ws []requester.WriterInfo) []componentRef {
	var out []componentRef
	for _, w := range ws {
		m := w.Metadata
		if m == nil {
			continue
		}
		noFiles := len(m.Roots()) == 0
		for _, c := range m.Components {
			if !c.Selectable || !(noFiles || s.onVolumes(c)) {
				continue
			}
			ref := componentRef{Writer: m.Name, Instance: m.InstanceID, LogicalPath: c.LogicalPath, Name: c.Name}
			if slices.ContainsFunc(s.exclude, ref.matches) {
				continue
			}
			out = append(out, ref)
		}
	}
	return out
}

// writerExcludes are the excluded names that are writers, not components.
func (s *Shell) writerExcludes() []string {
	var out []string
	for _, n := range s.exclude {
		if _, _, comp := componentName(n); !comp || parseable(n) {
			out = append(out, n)
		}
	}
	return out
}

// parseable reports whether a name with a colon is still a writer ID.
func parseable(n string) bool {
	_, ok := parseGUID(strings.TrimSpace(n))
	return ok
}

// checkVerify fails when a writer or component to verify does not take part.
func (s *Shell) checkVerify(parts []requester.WriterInfo) error {
	for _, n := range s.verify {
		if _, _, comp := componentName(n); comp {
			if slices.ContainsFunc(s.components, func(c componentRef) bool { return c.matches(n) }) {
				continue
			}
			return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "writer verify: component \"%s\" is not in the shadow copy set", n)
		}
		if slices.ContainsFunc(parts, func(w requester.WriterInfo) bool { return matchesWriter(n, w.Status) }) {
			continue
		}
		names := make([]string, len(parts))
		for i, w := range parts {
			names[i] = "'" + w.Status.Name + "'"
		}
		taking := "none"
		if len(names) > 0 {
			taking = strings.Join(names, ", ")
		}
		return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "writer verify: writer \"%s\" does not take part in the shadow copy set (writers taking part: %s)", n, taking)
	}
	return nil
}

func (s *Shell) create(ctx context.Context) (err error) {
	if len(s.volumes) == 0 {
		return badState("no volume to shadow copy: add volume PATH first")
	}
	if s.restoring {
		return badState("a restore is in progress: end restore (or reset) before create")
	}
	if s.set != nil {
		if s.backup || s.setContext.AutoRelease() {
			return badState("shadow copy set {%s} was already created in this session: reset ends the session (deleting its volatile shadow copies) before another create", s.set.Set.ID)
		}
		// The persistent set stays; the next one gets a session of its own.
		if err := s.endSession(ctx); err != nil {
			return err
		}
	}
	cx := s.Context()
	if !cx.Writers() && len(s.verify) > 0 {
		return badState("writer verify \"%s\": the context %s leaves all writers out", s.verify[0], cx.Name())
	}
	provs, err := s.providers(ctx)
	if err != nil {
		return err
	}
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	prepared := false
	defer func() {
		if err == nil {
			return
		}
		// Nothing of a failed create stays: the writers get Abort (again,
		// if DoSnapshotSet sent it) and the session ends.
		ctx := context.WithoutCancel(ctx)
		if prepared {
			if _, aerr := sess.AbortBackup(ctx); aerr != nil {
				s.log.Debug("abort backup", "err", aerr)
			}
		}
		if eerr := s.endSession(ctx); eerr != nil {
			s.log.Debug("end session", "err", eerr)
		}
	}()
	if err := sess.SetContext(ctx, cx); err != nil {
		return err
	}
	s.components = nil
	if cx.Writers() {
		if ex := s.writerExcludes(); len(ex) > 0 {
			if err := sess.ExcludeWriters(ctx, ex); err != nil {
				return err
			}
		}
		s.verbosef("Gathering writer metadata...\n")
		ws, err := sess.GatherWriterMetadata(ctx)
		if err != nil {
			return err
		}
		s.writers = ws
		for _, c := range s.selectComponents(ws) {
			if err := sess.AddComponent(ctx, c.Instance, c.LogicalPath, c.Name); err != nil {
				return err
			}
			s.components = append(s.components, c)
			s.verbosef("Component \"%s\" added to the backup.\n", c.path())
		}
	}
	if err := sess.SetBackupState(ctx, len(s.components) > 0, s.backupType(), false); err != nil {
		return err
	}
	setID, err := sess.StartSnapshotSet(ctx)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(s.volumes))
	for i, v := range s.volumes {
		if ids[i], err = sess.AddToSnapshotSet(ctx, v.Path, provs[i]); err != nil {
			return err
		}
	}
	if cx.Writers() {
		s.verbosef("Preparing the writers for a %s backup...\n", strings.ToLower(s.backupType().String()))
		parts, err := sess.PrepareForBackup(ctx)
		prepared = true
		if err != nil {
			return err
		}
		if s.verbose {
			printWriterStatus(s.out, parts)
		}
		if err := s.checkVerify(parts); err != nil {
			return err
		}
	}
	s.verbosef("Creating shadow copy set {%s}...\n", setID)
	res, err := sess.DoSnapshotSet(ctx)
	if res != nil && len(res.Evicted) > 0 {
		fmt.Fprintf(s.out, "Deleted %d older shadow copies to make room.\n", len(res.Evicted))
	}
	if err != nil {
		if res != nil && len(res.Writers) > 0 {
			printWriterResults(s.errOut, res.Writers)
		}
		return err
	}
	s.set, s.setContext = res, cx
	if s.verbose {
		fmt.Fprintf(s.out, "The shadow copy set was made in %s (writes held for %s).\n", res.Timings.Total.Round(time.Millisecond), res.Timings.Hold.Round(time.Microsecond))
		printWriterResults(s.out, res.Writers)
	}
	for _, d := range res.Dropped {
		fmt.Fprintf(s.out, "Note: writer '%s' failed and was left out of the set (its on-error policy); its data is not writer-consistent.\n", d)
	}
	for path, why := range res.NotFrozen {
		fmt.Fprintf(s.out, "Note: %s was not frozen during the commit (%s): its shadow copy is consistent for writers, not crash-consistent.\n", path, why)
	}

	byID := map[uuid.UUID]catalog.Shadow{}
	for _, sh := range res.Shadows {
		byID[sh.ID] = sh
	}
	for i, v := range s.volumes {
		name := v.Alias
		if name == "" {
			name = fmt.Sprintf("VSS_SHADOW_%d", i+1)
		}
		id := ids[i]
		if _, ok := byID[id]; !ok && i < len(res.Shadows) {
			id = res.Shadows[i].ID
		}
		s.setAlias(name, "{"+id.String()+"}")
		fmt.Fprintf(s.out, "Alias %s for shadow ID {%s} set as environment variable.\n", name, id)
	}
	s.setAlias("VSS_SHADOW_SET", "{"+res.Set.ID.String()+"}")
	fmt.Fprintf(s.out, "Alias VSS_SHADOW_SET for shadow set ID {%s} set as environment variable.\n", res.Set.ID)
	fmt.Fprintf(s.out, "\nQuerying all shadow copies with the shadow copy set ID {%s}\n\n", res.Set.ID)
	s.printShadows(res.Shadows)
	if s.metaFile != "" {
		if err := s.saveMetadata(ctx); err != nil {
			// The set is made; the error says the metadata is missing.
			return err
		}
	}
	return nil
}

// --- metadata file ---

func (s *Shell) saveMetadata(ctx context.Context) error {
	if s.sess == nil {
		return badState("no backup session to save")
	}
	doc, err := s.sess.Document(ctx)
	if err != nil {
		return err
	}
	bcd, err := vssmeta.ParseBackupComponents([]byte(doc))
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_INVALID_XML_DOCUMENT, err, "the session's Backup Components Document")
	}
	m := &Metadata{BCD: bcd}
	for _, w := range s.writers {
		if w.Metadata != nil {
			m.Writers = append(m.Writers, w.Metadata)
		}
	}
	if err := WriteMetadata(s.metaFile, m); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "The metadata (Backup Components Document and %d writer metadata documents) was written to %s.\n", len(m.Writers), s.metaFile)
	return nil
}

// --- backup and restore ---

func (s *Shell) beginBackup() error {
	switch {
	case s.backup:
		return badState("begin backup was already given")
	case s.restoring:
		return badState("a restore is in progress: end restore first")
	case s.set != nil:
		return badState("begin backup comes before create (reset starts over)")
	}
	s.backup = true
	s.verbosef("A full backup begins: the writers are told at create, and get BackupComplete at end backup.\n")
	return nil
}

func (s *Shell) endBackup(ctx context.Context) error {
	if !s.backup {
		return badState("no backup in progress: begin backup first")
	}
	if s.set == nil || s.sess == nil {
		return badState("no shadow copy set was created in this backup: create comes before end backup")
	}
	s.backup = false
	var errs []error
	if s.setContext.Writers() {
		for _, c := range s.components {
			if err := s.sess.SetBackupSucceeded(ctx, c.Instance, c.LogicalPath, c.Name, true); err != nil {
				errs = append(errs, err)
			}
		}
		ws, err := s.sess.BackupComplete(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		if s.verbose || err != nil {
			printWriterStatus(s.out, ws)
		}
	}
	if s.metaFile != "" {
		errs = append(errs, s.saveMetadata(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.verbosef("The backup is complete.\n")
	return nil
}

func (s *Shell) beginRestore(ctx context.Context) error {
	switch {
	case s.restoring:
		return badState("begin restore was already given")
	case s.backup:
		return badState("a backup is in progress: end backup (and reset) first")
	case s.sess != nil:
		return badState("the session of shadow copy set {%s} is still open: reset first (volatile shadow copies are deleted)", s.set.Set.ID)
	case s.loaded == nil:
		return badState("no metadata loaded: load metadata FILE first (the file set metadata wrote at the backup)")
	}
	doc, err := s.loaded.BCD.XML()
	if err != nil {
		return vsserr.Wrap(vsserr.VSS_E_UNEXPECTED, err, "the loaded Backup Components Document")
	}
	sess, err := s.b.Requester().InitializeForRestore(ctx, string(doc))
	if err != nil {
		return err
	}
	var selected []componentRef
	for _, w := range s.loaded.BCD.Writers {
		if slices.ContainsFunc(s.exclude, func(n string) bool {
			return matchesWriter(n, service.WriterStatus{Name: w.Name, ID: w.WriterID, InstanceID: w.InstanceID})
		}) {
			continue
		}
		for _, c := range w.Components {
			ref := componentRef{Writer: w.Name, Instance: w.InstanceID, LogicalPath: c.LogicalPath, Name: c.Name}
			if slices.ContainsFunc(s.exclude, ref.matches) {
				continue
			}
			selected = append(selected, ref)
		}
	}
	for _, n := range s.verify {
		ok := slices.ContainsFunc(selected, func(c componentRef) bool {
			return c.matches(n) || strings.EqualFold(strings.Trim(n, "{}"), c.Writer) || strings.EqualFold(strings.Trim(n, "{}"), c.Instance.String())
		})
		if !ok {
			_, _ = sess.End(context.WithoutCancel(ctx))
			return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "writer verify: \"%s\" has no component in the restore", n)
		}
	}
	for _, c := range selected {
		if err := sess.SelectForRestore(ctx, c.Instance, c.LogicalPath, c.Name, "", ""); err != nil {
			_, _ = sess.End(context.WithoutCancel(ctx))
			return err
		}
		s.verbosef("Component \"%s\" selected for restore.\n", c.path())
	}
	s.sess, s.restoring = sess, true
	ws, err := sess.PreRestore(ctx, "")
	if s.verbose || err != nil {
		printWriterStatus(s.out, ws)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "The writers of %d components are ready for their files to be restored (PreRestore); end restore when the files are in place.\n", len(selected))
	return nil
}

func (s *Shell) endRestore(ctx context.Context) error {
	if !s.restoring {
		return badState("no restore in progress: begin restore first")
	}
	ws, err := s.sess.PostRestore(ctx)
	if s.verbose || err != nil {
		printWriterStatus(s.out, ws)
	}
	s.restoring = false
	if eerr := s.endSession(ctx); err == nil {
		err = eerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(s.out, "The restore is complete (PostRestore).")
	return nil
}

// --- exec ---

func (s *Shell) exec(ctx context.Context, c Exec) error {
	prog := s.expand(c.Program)
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = s.expand(a)
	}
	var cmd *exec.Cmd
	if strings.Contains(prog, "/") {
		st, err := os.Stat(prog)
		if err != nil {
			return fmt.Errorf("exec %s: %w", prog, err)
		}
		if st.IsDir() {
			return fmt.Errorf("exec %s: is a directory", prog)
		}
		if st.Mode()&0o111 == 0 {
			// A script that is not executable (backup.cmd): the shell runs it.
			cmd = exec.CommandContext(ctx, "/bin/sh", append([]string{prog}, args...)...)
		} else {
			cmd = exec.CommandContext(ctx, prog, args...)
		}
	} else {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("exec %s: %w", prog, err)
		}
		cmd = exec.CommandContext(ctx, prog, args...)
	}
	cmd.Stdout, cmd.Stderr = s.out, s.errOut
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	s.verbosef("Running %s...\n", strings.Join(append([]string{prog}, args...), " "))
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("exec %s: interrupted: %w", prog, ctx.Err())
	case errors.As(err, &ee):
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return fmt.Errorf("exec %s: killed by signal %s", prog, st.Signal())
		}
		return fmt.Errorf("exec %s: the program exited with status %d", prog, ee.ExitCode())
	}
	return fmt.Errorf("exec %s: %w", prog, err)
}

// --- expose, break, revert ---

func (s *Shell) expose(ctx context.Context, c Expose) error {
	id, err := s.id(c.Shadow, "shadow copy")
	if err != nil {
		return err
	}
	p, err := s.path(c.Path)
	if err != nil {
		return err
	}
	sh, err := s.b.Expose(ctx, id, p)
	if err != nil {
		return err
	}
	at := sh.ExposedPath
	if at == "" {
		at = p
	}
	fmt.Fprintf(s.out, "The shadow copy was successfully exposed as %s.\n", at)
	return nil
}

func (s *Shell) unexpose(ctx context.Context, c Unexpose) error {
	arg := strings.TrimSpace(s.expand(c.Path))
	target := arg
	if _, isID := parseGUID(arg); !isID {
		p, err := s.path(c.Path)
		if err != nil {
			return err
		}
		target = p
	}
	sh, err := s.b.Unexpose(ctx, target)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "The shadow copy {%s} is no longer exposed at %s.\n", sh.ID, target)
	return nil
}

func (s *Shell) breakSet(ctx context.Context, c Break) error {
	id, err := s.id(c.Set, "shadow copy set")
	if err != nil {
		return err
	}
	if s.set != nil && s.set.Set.ID == id && s.setContext.AutoRelease() {
		return badState("shadow copy set {%s} is volatile: it is deleted when the session ends; make it with set context persistent to break it", id)
	}
	out, err := s.b.BreakSet(ctx, id, c.Writable)
	for _, sh := range out {
		mode := "read-only"
		if c.Writable {
			mode = "writable"
		}
		fmt.Fprintf(s.out, "Shadow copy {%s} of %s is now an ordinary %s directory, no longer managed by the shadow copy service: %s\n", sh.ID, sh.VolumePath, mode, sh.ShadowPath)
	}
	if err != nil {
		return err
	}
	if s.set != nil && s.set.Set.ID == id {
		// Broken out of the service: nothing of it is left to release.
		s.set.Shadows = nil
	}
	fmt.Fprintf(s.out, "The shadow copy set {%s} was broken (%d shadow copies).\n", id, len(out))
	return nil
}

func (s *Shell) revert(ctx context.Context, c Revert) error {
	id, err := s.id(c.Shadow, "shadow copy")
	if err != nil {
		return err
	}
	shs, err := s.b.ListShadows(ctx, service.Selection{ShadowID: id})
	if err != nil {
		return err
	}
	if err := s.b.RevertShadow(ctx, id, false); err != nil {
		return err
	}
	vol := ""
	if len(shs) > 0 {
		vol = shs[0].VolumePath
	}
	fmt.Fprintf(s.out, "The volume %s was reverted to shadow copy {%s}.\n", vol, id)
	return nil
}

// --- listings ---

func (s *Shell) listShadows(ctx context.Context, c ListShadows) error {
	var sel service.Selection
	switch c.Which {
	case "all":
		fmt.Fprintf(s.out, "Querying all shadow copies on the computer ...\n\n")
	case "set":
		id, err := s.id(c.ID, "shadow copy set")
		if err != nil {
			return err
		}
		sel.SetID = id
		fmt.Fprintf(s.out, "Querying all shadow copies with the shadow copy set ID {%s}\n\n", id)
	case "id":
		id, err := s.id(c.ID, "shadow copy")
		if err != nil {
			return err
		}
		sel.ShadowID = id
		fmt.Fprintf(s.out, "Querying shadow copy with ID {%s}\n\n", id)
	}
	shs, err := s.b.ListShadows(ctx, sel)
	if err != nil {
		return err
	}
	s.printShadows(shs)
	return nil
}

func (s *Shell) listWriters(ctx context.Context, mode string) error {
	if mode == "status" {
		fmt.Fprintln(s.out, "Listing writer status ...")
		var ws []service.WriterStatus
		if s.sess != nil && s.set != nil {
			infos, err := s.sess.GatherWriterStatus(ctx)
			if err != nil {
				return err
			}
			for _, w := range infos {
				ws = append(ws, w.Status)
			}
		} else {
			var err error
			if ws, err = s.b.ListWriters(ctx); err != nil {
				return err
			}
		}
		printWriterStates(s.out, ws)
		return nil
	}
	// The documents come from Identify, in a session of their own that
	// changes nothing.
	fmt.Fprintln(s.out, "Listing writer metadata ...")
	sess, err := s.b.Requester().InitializeForBackup(ctx, "")
	if err != nil {
		return err
	}
	ws, err := sess.GatherWriterMetadata(ctx)
	if _, eerr := sess.End(context.WithoutCancel(ctx)); err == nil {
		err = eerr
	}
	if err != nil {
		return err
	}
	printWriterMetadata(s.out, ws, mode == "detailed")
	return nil
}

// --- delete ---

func (s *Shell) deleteShadows(ctx context.Context, c DeleteShadows) error {
	var shs []catalog.Shadow
	var err error
	switch c.Which {
	case "all":
		shs, err = s.b.ListShadows(ctx, service.Selection{})
	case "volume", "oldest":
		var p string
		if p, err = s.path(c.Arg); err != nil {
			return err
		}
		if shs, err = s.b.ListShadows(ctx, service.Selection{For: p}); err == nil && c.Which == "oldest" && len(shs) > 1 {
			oldest := shs[0]
			for _, sh := range shs[1:] {
				if sh.Created.Before(oldest.Created) {
					oldest = sh
				}
			}
			shs = []catalog.Shadow{oldest}
		}
	case "set":
		var id uuid.UUID
		if id, err = s.id(c.Arg, "shadow copy set"); err != nil {
			return err
		}
		shs, err = s.b.ListShadows(ctx, service.Selection{SetID: id})
	case "id":
		var id uuid.UUID
		if id, err = s.id(c.Arg, "shadow copy"); err != nil {
			return err
		}
		shs, err = s.b.ListShadows(ctx, service.Selection{ShadowID: id})
	case "exposed":
		arg := strings.TrimSpace(s.expand(c.Arg))
		p, perr := s.path(c.Arg)
		if perr != nil {
			return perr
		}
		var all []catalog.Shadow
		if all, err = s.b.ListShadows(ctx, service.Selection{}); err != nil {
			return err
		}
		for _, sh := range all {
			if sh.ExposedPath != "" && (sh.ExposedPath == p || sh.ExposedName == arg) {
				shs = append(shs, sh)
			}
		}
		if len(shs) == 0 {
			return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy is exposed at %s", p)
		}
	}
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(shs))
	for i, sh := range shs {
		ids[i] = sh.ID
		fmt.Fprintf(s.out, "Deleting shadow copy {%s} on volume %s from provider {%s} [Attributes: 0x%08x]...\n", sh.ID, sh.VolumeName, sh.ProviderID, uint32(sh.Attributes))
	}
	n := 0
	if len(ids) > 0 {
		if n, err = s.b.DeleteShadows(ctx, ids); err != nil {
			return err
		}
	}
	if s.set != nil {
		// What is deleted is not released again when the session ends.
		before := len(s.set.Shadows)
		s.set.Shadows = slices.DeleteFunc(s.set.Shadows, func(sh catalog.Shadow) bool { return slices.Contains(ids, sh.ID) })
		s.pruned = s.pruned || len(s.set.Shadows) != before
	}
	fmt.Fprintf(s.out, "\nNumber of shadow copies deleted: %d\n", n)
	return nil
}
