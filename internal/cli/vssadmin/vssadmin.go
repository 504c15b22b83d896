// Package vssadmin is the vssadmin command: the Windows administration verbs
// (create, list, delete, resize, revert …) over the shadow copy service,
// with Windows syntax (/for=PATH, verbs in any case) and GNU syntax
// (--for PATH), Windows-like text output and --format json.
package vssadmin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/linuxvss/vss/internal/cli/clisvc"
	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/vss"
	"github.com/linuxvss/vss/internal/vsserr"
)

// Env is what the command runs with.
type Env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Open returns the backend for the global options (set by tests and by
	// main; nil uses OpenBackend).
	Open func(ctx context.Context, g *Globals) (Backend, error)
}

// Globals are the options every verb takes.
type Globals struct {
	StateDir string
	Socket   string
	Config   string
	Format   string
	Verbose  bool
	Embedded bool
}

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Main runs vssadmin and returns its exit status.
func Main(ctx context.Context, env Env) int {
	a := &app{env: env, g: &Globals{}}
	root := a.commands()
	root.SetArgs(Normalize(env.Args))
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if a.backend != nil {
		if cerr := a.backend.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		if a.json() {
			a.printJSONError(vsserr.New(vsserr.E_INVALIDARG, "%s", err.Error()))
		} else {
			fmt.Fprintf(env.Stderr, "Error: Invalid command.\n  %s\n\n%s", err.Error(), commandList)
		}
		return ExitUsage
	}
	if a.json() {
		a.printJSONError(err)
	} else {
		fmt.Fprintf(env.Stderr, "Error: %s\n", vsserr.Message(err))
	}
	return ExitError
}

func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument", "accepts ", "requires "} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

const banner = "vssadmin 1.1 - Volume Shadow Copy Service administrative command-line tool\n(C) Copyright 2026 The linux-vss authors.\n\n"

const commandList = `---- Commands Supported ----

Add ShadowStorage     - Add a new volume shadow copy storage association
Create Shadow         - Create a new volume shadow copy
Delete Shadows        - Delete volume shadow copies
Delete ShadowStorage  - Delete volume shadow copy storage associations
List Providers        - List registered volume shadow copy providers
List Shadows          - List existing volume shadow copies
List ShadowStorage    - List volume shadow copy storage associations
List Volumes          - List volumes eligible for shadow copies
List Writers          - List subscribed volume shadow copy writers
Resize ShadowStorage  - Resize a volume shadow copy storage association
Revert Shadow         - Revert a volume to a shadow copy
Query Reverts         - Query the progress of in-progress revert operations.

Options take the Windows form (/for=PATH) or the GNU form (--for PATH);
every listing takes --format json. Global options: --state-dir DIR
(VSS_STATE_DIR), --socket PATH (VSS_SOCKET), --config FILE (VSS_CONFIG),
--embedded (do not use a running vssd), --verbose.
`

type app struct {
	env     Env
	g       *Globals
	backend Backend
	quiet   bool
}

func (a *app) json() bool { return strings.EqualFold(a.g.Format, "json") }

func (a *app) out() io.Writer { return a.env.Stdout }

func (a *app) open(ctx context.Context) (Backend, error) {
	switch strings.ToLower(a.g.Format) {
	case "", "text", "json":
	default:
		return nil, usagef("--format must be text or json, not %q", a.g.Format)
	}
	if a.backend != nil {
		return a.backend, nil
	}
	open := a.env.Open
	if open == nil {
		open = OpenBackend
	}
	b, err := open(ctx, a.g)
	if err != nil {
		return nil, err
	}
	a.backend = b
	if !a.json() {
		fmt.Fprint(a.out(), banner)
	}
	return b, nil
}

// OpenBackend returns the backend for the global options: the vssd
// answering on the socket, or the embedded service (clisvc.Connect).
func OpenBackend(ctx context.Context, g *Globals) (Backend, error) {
	s, c, err := clisvc.Connect(ctx, &clisvc.Globals{StateDir: g.StateDir, Socket: g.Socket, Config: g.Config, Embedded: g.Embedded, Verbose: g.Verbose}, "vssadmin")
	if err != nil {
		return nil, err
	}
	if c != nil {
		return c, nil
	}
	return s, nil
}

func (a *app) commands() *cobra.Command {
	root := &cobra.Command{
		Use:           "vssadmin",
		Short:         "Volume Shadow Copy Service administrative command-line tool",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("no command given")
		},
	}
	root.SetHelpFunc(func(*cobra.Command, []string) { fmt.Fprint(a.out(), banner+commandList) })
	pf := root.PersistentFlags()
	pf.StringVar(&a.g.StateDir, "state-dir", "", "state directory (default /var/lib/vss, or VSS_STATE_DIR)")
	pf.StringVar(&a.g.Socket, "socket", "", "vssd socket (default /run/vss/vssd.sock, or VSS_SOCKET)")
	pf.StringVar(&a.g.Config, "config", "", "configuration file (default /etc/vss/vssd.toml, or VSS_CONFIG)")
	pf.StringVar(&a.g.Format, "format", "text", "output format: text or json")
	pf.BoolVar(&a.g.Verbose, "verbose", false, "log what the service does")
	pf.BoolVar(&a.g.Embedded, "embedded", false, "run the service in this process even if vssd runs")

	group := func(name, short string, subs ...*cobra.Command) *cobra.Command {
		c := &cobra.Command{Use: name, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("%q needs an object (for example %q)", name, name+" "+subs[0].Name())
		}}
		c.AddCommand(subs...)
		return c
	}
	root.AddCommand(
		group("create", "create a shadow copy", a.createShadow()),
		group("list", "list objects", a.listShadows(), a.listWriters(), a.listProviders(), a.listVolumes(), a.listShadowStorage()),
		group("delete", "delete objects", a.deleteShadows(), a.deleteShadowStorage()),
		group("add", "add objects", a.addShadowStorage()),
		group("resize", "resize objects", a.resizeShadowStorage()),
		group("revert", "revert a volume", a.revertShadow()),
		group("query", "query progress", a.queryReverts()),
		&cobra.Command{Use: "help", Run: func(*cobra.Command, []string) { fmt.Fprint(a.out(), banner+commandList) }},
	)
	return root
}

func leaf(use, short string, run func(ctx context.Context) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, args []string) error {
		return run(cmd.Context())
	}}
}

// parseID parses a shadow copy or set ID as vssadmin prints it.
func parseID(what, s string) (uuid.UUID, error) {
	s = strings.TrimSpace(s)
	id, err := uuid.Parse(s)
	if err != nil || (len(s) != 36 && len(s) != 38) || (len(s) == 38 && (s[0] != '{' || s[37] != '}')) {
		return uuid.Nil, vsserr.New(vsserr.E_INVALIDARG, "invalid %s ID %q: expected {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}", what, s)
	}
	return id, nil
}

// volumeArg turns a volume given by GUID ({…}, Volume{…}, \\?\Volume{…}\)
// into its path; paths pass through.
func (a *app) volumeArg(ctx context.Context, b Backend, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	t := strings.TrimSuffix(strings.TrimPrefix(s, `\\?\`), `\`)
	t = strings.TrimPrefix(t, "Volume")
	if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
		id, err := parseID("volume", t)
		if err != nil {
			return "", err
		}
		vols, err := b.ListVolumes(ctx)
		if err != nil {
			return "", err
		}
		for _, v := range vols {
			if v.ID == id {
				return v.Path, nil
			}
		}
		return "", vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no volume %s", s)
	}
	return s, nil
}

// selection parses /for, /shadow and /set (the IDs before anything is
// opened, so that a malformed one changes nothing) and opens the backend.
func (a *app) selection(ctx context.Context, forv, shadow, set string) (Backend, service.Selection, error) {
	var sel service.Selection
	var err error
	if shadow != "" {
		if sel.ShadowID, err = parseID("shadow copy", shadow); err != nil {
			return nil, sel, err
		}
	}
	if set != "" {
		if sel.SetID, err = parseID("shadow copy set", set); err != nil {
			return nil, sel, err
		}
	}
	b, err := a.open(ctx)
	if err != nil {
		return nil, sel, err
	}
	sel.For, err = a.volumeArg(ctx, b, forv)
	return b, sel, err
}

// volumePair resolves the /for and /on volumes of a storage command.
func (a *app) volumePair(ctx context.Context, b Backend, forv, on string) (string, string, error) {
	forv, err := a.volumeArg(ctx, b, forv)
	if err != nil {
		return "", "", err
	}
	on, err = a.volumeArg(ctx, b, on)
	return forv, on, err
}

// confirm asks a yes/no question (default no); /quiet answers yes.
func (a *app) confirm(question string) bool {
	if a.quiet {
		return true
	}
	fmt.Fprintf(a.out(), "%s (Y/N): [N]? ", question)
	line, _ := bufio.NewReader(a.env.Stdin).ReadString('\n')
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes"
}

func (a *app) createShadow() *cobra.Command {
	var forv []string
	var autoretry, prov string
	var nowriters bool
	c := leaf("shadow", "create a new volume shadow copy", func(ctx context.Context) error {
		if len(forv) == 0 {
			return usagef("create shadow needs /for=PATH")
		}
		var retry time.Duration
		if autoretry != "" {
			m, err := strconv.Atoi(autoretry)
			if err != nil || m < 0 || m > 7*24*60 {
				return vsserr.New(vsserr.E_INVALIDARG, "invalid /autoretry value %q: give whole minutes from 0 to 10080", autoretry)
			}
			retry = time.Duration(m) * time.Minute
		}
		b, err := a.open(ctx)
		if err != nil {
			return err
		}
		var vols []string
		for _, f := range forv {
			for _, p := range strings.Split(f, ",") {
				p, err := a.volumeArg(ctx, b, strings.TrimSpace(p))
				if err != nil {
					return err
				}
				vols = append(vols, p)
			}
		}
		// As on Windows Server: persistent, client-accessible, and the
		// writers of the volumes take part (ClientAccessibleWriters).
		cx := vss.CtxClientAccessibleWriters
		if nowriters {
			cx = vss.CtxClientAccessible
		}
		res, err := b.CreateShadowSet(ctx, service.CreateRequest{Volumes: vols, Provider: prov, Context: cx, AutoRetry: retry})
		if res != nil && len(res.Evicted) > 0 && !a.json() {
			fmt.Fprintf(a.out(), "Deleted %d older shadow copies to make room.\n", len(res.Evicted))
		}
		if err != nil {
			return err
		}
		return a.printCreate(res)
	})
	f := c.Flags()
	f.StringArrayVar(&forv, "for", nil, "volume to shadow copy (repeat, or separate with commas, for a set)")
	f.StringVar(&autoretry, "autoretry", "", "minutes to wait while another shadow copy is being created")
	f.StringVar(&prov, "provider", "", "provider name or ID (default: chosen by volume type)")
	f.BoolVar(&nowriters, "nowriters", false, "leave the writers out (a crash-consistent ClientAccessible shadow copy)")
	return c
}

func (a *app) listShadows() *cobra.Command {
	var forv, shadow, set string
	c := leaf("shadows", "list existing volume shadow copies", func(ctx context.Context) error {
		b, sel, err := a.selection(ctx, forv, shadow, set)
		if err != nil {
			return err
		}
		shadows, err := b.ListShadows(ctx, sel)
		if err != nil {
			return err
		}
		return a.printShadows(shadows)
	})
	c.Flags().StringVar(&forv, "for", "", "volume")
	c.Flags().StringVar(&shadow, "shadow", "", "shadow copy ID")
	c.Flags().StringVar(&set, "set", "", "shadow copy set ID")
	return c
}

func (a *app) listWriters() *cobra.Command {
	return listCmd(a, "writers", "list subscribed volume shadow copy writers", Backend.ListWriters, a.printWriters)
}

func (a *app) listProviders() *cobra.Command {
	return listCmd(a, "providers", "list registered volume shadow copy providers", Backend.ListProviders, a.printProviders)
}

func (a *app) listVolumes() *cobra.Command {
	return listCmd(a, "volumes", "list volumes eligible for shadow copies", Backend.ListVolumes, a.printVolumes)
}

// listCmd is a listing without options: ask the backend, print the answer.
func listCmd[T any](a *app, use, short string, get func(Backend, context.Context) (T, error), print func(T) error) *cobra.Command {
	return leaf(use, short, func(ctx context.Context) error {
		b, err := a.open(ctx)
		if err != nil {
			return err
		}
		v, err := get(b, ctx)
		if err != nil {
			return err
		}
		return print(v)
	})
}

func (a *app) listShadowStorage() *cobra.Command {
	var forv, on string
	c := leaf("shadowstorage", "list volume shadow copy storage associations", func(ctx context.Context) error {
		if forv != "" && on != "" {
			return usagef("/for and /on cannot be given together")
		}
		b, err := a.open(ctx)
		if err != nil {
			return err
		}
		if forv, on, err = a.volumePair(ctx, b, forv, on); err != nil {
			return err
		}
		st, err := b.ListShadowStorage(ctx, forv, on)
		if err != nil {
			return err
		}
		return a.printStorage(st)
	})
	c.Flags().StringVar(&forv, "for", "", "volume whose shadow copies are stored")
	c.Flags().StringVar(&on, "on", "", "volume that stores them")
	return c
}

func (a *app) deleteShadows() *cobra.Command {
	var forv, shadow string
	var oldest, all bool
	c := leaf("shadows", "delete volume shadow copies", func(ctx context.Context) error {
		n := 0
		for _, set := range []bool{oldest, all, shadow != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			return usagef("delete shadows needs exactly one of /oldest, /all, /shadow=ID")
		}
		if oldest && forv == "" {
			return usagef("/oldest needs /for=PATH")
		}
		b, sel, err := a.selection(ctx, forv, shadow, "")
		if err != nil {
			return err
		}
		sel.Oldest, sel.All = oldest, all
		shadows, err := b.Select(ctx, sel)
		if err != nil {
			return err
		}
		if len(shadows) == 0 {
			return a.noItems()
		}
		if !a.confirm(fmt.Sprintf("Do you really want to delete %d shadow copies", len(shadows))) {
			return nil
		}
		ids := make([]uuid.UUID, len(shadows))
		for i, s := range shadows {
			ids[i] = s.ID
		}
		deleted, err := b.DeleteShadows(ctx, ids)
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(map[string]any{"deleted": deleted, "ids": ids})
		}
		fmt.Fprintf(a.out(), "Successfully deleted the %d shadow copies.\n", deleted)
		return nil
	})
	f := c.Flags()
	f.StringVar(&forv, "for", "", "volume")
	f.StringVar(&shadow, "shadow", "", "shadow copy ID")
	f.BoolVar(&oldest, "oldest", false, "delete the oldest shadow copy of /for")
	f.BoolVar(&all, "all", false, "delete all shadow copies (of /for, if given)")
	f.BoolVar(&a.quiet, "quiet", false, "do not ask for confirmation")
	return c
}

// storageArgs checks and resolves the /for, /on and /maxsize of add and
// resize shadowstorage, and opens the backend.
func (a *app) storageArgs(ctx context.Context, verb, forv, on, maxsize string) (Backend, string, string, config.MaxSize, error) {
	m := config.MaxSize{Unbounded: true}
	if forv == "" || on == "" {
		return nil, "", "", m, usagef("%s shadowstorage needs /for=PATH and /on=PATH", verb)
	}
	if maxsize != "" {
		var err error
		if m, err = config.ParseMaxSize(maxsize); err != nil {
			return nil, "", "", m, err
		}
	}
	b, err := a.open(ctx)
	if err != nil {
		return nil, "", "", m, err
	}
	if forv, on, err = a.volumePair(ctx, b, forv, on); err != nil {
		return nil, "", "", m, err
	}
	return b, forv, on, m, nil
}

func storageFlags(c *cobra.Command, forv, on, maxsize *string) *cobra.Command {
	f := c.Flags()
	f.StringVar(forv, "for", "", "volume whose shadow copies are stored")
	f.StringVar(on, "on", "", "volume that stores them")
	f.StringVar(maxsize, "maxsize", "", "limit: bytes with KB, MB, GB, TB suffix, a percentage, or UNBOUNDED")
	return c
}

func (a *app) addShadowStorage() *cobra.Command {
	var forv, on, maxsize string
	return storageFlags(leaf("shadowstorage", "add a new volume shadow copy storage association", func(ctx context.Context) error {
		b, forv, on, m, err := a.storageArgs(ctx, "add", forv, on, maxsize)
		if err != nil {
			return err
		}
		if err := b.AddShadowStorage(ctx, forv, on, m); err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(map[string]any{"for": forv, "on": on, "max": m.String()})
		}
		fmt.Fprintln(a.out(), "Successfully added the shadow copy storage association")
		return nil
	}), &forv, &on, &maxsize)
}

func (a *app) resizeShadowStorage() *cobra.Command {
	var forv, on, maxsize string
	return storageFlags(leaf("shadowstorage", "resize a volume shadow copy storage association", func(ctx context.Context) error {
		b, forv, on, m, err := a.storageArgs(ctx, "resize", forv, on, maxsize)
		if err != nil {
			return err
		}
		evicted, err := b.ResizeShadowStorage(ctx, forv, on, m)
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(map[string]any{"for": forv, "on": on, "max": m.String(), "deleted": len(evicted)})
		}
		fmt.Fprintln(a.out(), "Successfully resized the shadow copy storage association")
		if len(evicted) > 0 {
			fmt.Fprintf(a.out(), "%d shadow copies were deleted to fit the new maximum size.\n", len(evicted))
		}
		return nil
	}), &forv, &on, &maxsize)
}

func (a *app) deleteShadowStorage() *cobra.Command {
	var forv, on string
	c := leaf("shadowstorage", "delete volume shadow copy storage associations", func(ctx context.Context) error {
		if forv == "" {
			return usagef("delete shadowstorage needs /for=PATH")
		}
		b, err := a.open(ctx)
		if err != nil {
			return err
		}
		if forv, on, err = a.volumePair(ctx, b, forv, on); err != nil {
			return err
		}
		held, err := b.StorageShadows(ctx, forv, on)
		if err != nil {
			return err
		}
		if len(held) > 0 && !a.confirm(fmt.Sprintf("Deleting this shadow copy storage association also deletes its %d shadow copies. Continue", len(held))) {
			return nil
		}
		deleted, err := b.DeleteShadowStorage(ctx, forv, on)
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(map[string]any{"for": forv, "on": on, "deleted": len(deleted)})
		}
		fmt.Fprintln(a.out(), "Successfully deleted the shadow copy storage association(s)")
		if len(deleted) > 0 {
			fmt.Fprintf(a.out(), "Deleted %d shadow copies.\n", len(deleted))
		}
		return nil
	})
	f := c.Flags()
	f.StringVar(&forv, "for", "", "volume whose shadow copies are stored")
	f.StringVar(&on, "on", "", "volume that stores them (default: all)")
	f.BoolVar(&a.quiet, "quiet", false, "do not ask for confirmation")
	return c
}

func (a *app) revertShadow() *cobra.Command {
	var shadow string
	var force bool
	c := leaf("shadow", "revert a volume to a shadow copy", func(ctx context.Context) error {
		if shadow == "" {
			return usagef("revert shadow needs /shadow=ID")
		}
		id, err := parseID("shadow copy", shadow)
		if err != nil {
			return err
		}
		b, err := a.open(ctx)
		if err != nil {
			return err
		}
		shadows, err := b.Select(ctx, service.Selection{ShadowID: id})
		if err != nil {
			return err
		}
		sh := shadows[0]
		if !a.confirm(fmt.Sprintf("Do you really want to revert %s to shadow copy {%s} of %s? Changes since then are lost", sh.VolumePath, sh.ID, formatTime(sh.Created))) {
			return nil
		}
		if err := b.RevertShadow(ctx, id, force); err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(map[string]any{"reverted": sh.VolumePath, "shadow": id})
		}
		fmt.Fprintf(a.out(), "Successfully reverted %s to shadow copy {%s}.\n", sh.VolumePath, id)
		return nil
	})
	f := c.Flags()
	f.StringVar(&shadow, "shadow", "", "shadow copy ID")
	f.BoolVar(&force, "forcedismount", false, "revert even if processes use the volume")
	f.BoolVar(&a.quiet, "quiet", false, "do not ask for confirmation")
	return c
}

func (a *app) queryReverts() *cobra.Command {
	var forv string
	c := leaf("reverts", "query the progress of in-progress revert operations", func(ctx context.Context) error {
		b, err := a.open(ctx)
		if err != nil {
			return err
		}
		if forv, err = a.volumeArg(ctx, b, forv); err != nil {
			return err
		}
		rs, err := b.QueryReverts(ctx, forv)
		if err != nil {
			return err
		}
		return a.printReverts(rs)
	})
	c.Flags().StringVar(&forv, "for", "", "volume")
	return c
}
