// Package config reads the service configuration (/etc/vss/vssd.toml, or
// the file VSS_CONFIG names) and parses the values the tools take.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/linuxvss/vss/internal/vsserr"
)

// Defaults.
const (
	DefaultStateDir        = "/var/lib/vss"
	DefaultSocket          = "/run/vss/vssd.sock"
	DefaultConfigPath      = "/etc/vss/vssd.toml"
	DefaultHooksDir        = "/etc/vss/writers.d"
	DefaultFreezeTimeout   = 60 * time.Second
	DefaultCommitTimeout   = 10 * time.Second
	DefaultMaxShadowCopies = 64
	MaxMaxShadowCopies     = 512
)

// Config is the service configuration.
type Config struct {
	StateDir        string   `toml:"state_dir"`
	Socket          string   `toml:"socket"`
	FreezeTimeout   Duration `toml:"freeze_timeout"`
	CommitTimeout   Duration `toml:"commit_timeout"`
	MaxShadowCopies int      `toml:"max_shadow_copies"`
	LogLevel        string   `toml:"log_level"`
	// Access names who may do what beyond root (VSS's VssAccessControl).
	Access Access `toml:"access"`
	// Writers configures the built-in and hook writers.
	Writers Writers `toml:"writers"`
}

// Access lists, per right, the users and groups ("@group") that have it.
// Root has every right; everybody may ask the daemon's Info.
type Access struct {
	// List: list shadow copies, volumes, providers, writers, storage.
	List []string `toml:"list"`
	// Create: make shadow copy sets and run requester (backup) sessions.
	Create []string `toml:"create"`
	// Delete: delete and revert shadow copies, change shadow storage, and
	// run restores.
	Delete []string `toml:"delete"`
	// Writers: register writers over the API.
	Writers []string `toml:"writers"`
}

// Writers configures the writers the service runs itself.
type Writers struct {
	// HooksDir holds one hook writer file per writer ("" = the default
	// /etc/vss/writers.d; "-" = none).
	HooksDir string `toml:"hooks_dir"`
	// Timeouts override the per-event limits ("prepare-snapshot" = "2m").
	Timeouts   map[string]Duration `toml:"timeouts"`
	SQLite     []SQLiteWriter      `toml:"sqlite"`
	PostgreSQL []DatabaseWriter    `toml:"postgresql"`
	MariaDB    []DatabaseWriter    `toml:"mariadb"`
}

// SQLiteWriter is a built-in SQLite writer: one component per database.
type SQLiteWriter struct {
	Name    string   `toml:"name"`
	Paths   []string `toml:"paths"`
	OnError string   `toml:"on_error"`
}

// DatabaseWriter is a built-in PostgreSQL or MariaDB writer: one server.
type DatabaseWriter struct {
	Name string `toml:"name"`
	// DSN is the connection string (pgx, or go-sql-driver/mysql).
	DSN string `toml:"dsn"`
	// DataDir is asked from the server when empty.
	DataDir string `toml:"data_dir"`
	// StopCommand and StartCommand stop and start the server for an
	// in-place restore (defaults derived from the server).
	StopCommand  []string `toml:"stop_command"`
	StartCommand []string `toml:"start_command"`
	OnError      string   `toml:"on_error"`
	// BackupMode (PostgreSQL): "auto" (no backup mode on an atomic set of
	// a one-directory cluster) or "always".
	BackupMode string `toml:"backup_mode"`
}

// Duration is a time.Duration written as "60s" in the file.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes a duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		StateDir:        DefaultStateDir,
		Socket:          DefaultSocket,
		FreezeTimeout:   Duration{DefaultFreezeTimeout},
		CommitTimeout:   Duration{DefaultCommitTimeout},
		MaxShadowCopies: DefaultMaxShadowCopies,
		LogLevel:        "info",
	}
}

// Load reads the configuration file at path over the defaults. A missing
// file at the default path is not an error; a missing file that was asked
// for is.
func Load(path string) (Config, error) {
	c := Default()
	explicit := path != ""
	if path == "" {
		path = os.Getenv("VSS_CONFIG")
		explicit = path != ""
	}
	if path == "" {
		path = DefaultConfigPath
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			return c, nil
		}
		return c, vsserr.Wrap(vsserr.E_INVALIDARG, err, "reading the configuration")
	}
	if err := Parse(b, &c); err != nil {
		return c, vsserr.Wrap(vsserr.E_INVALIDARG, err, "configuration %s", path)
	}
	return c, nil
}

// Parse reads TOML text over c and checks the result.
func Parse(b []byte, c *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return fmt.Errorf("unknown setting: %s", sm.String())
		}
		return err
	}
	return c.Check()
}

// Check validates the values.
func (c *Config) Check() error {
	if c.StateDir == "" || c.StateDir[0] != '/' {
		return fmt.Errorf("state_dir must be an absolute path, not %q", c.StateDir)
	}
	if c.Socket == "" || c.Socket[0] != '/' {
		return fmt.Errorf("socket must be an absolute path, not %q", c.Socket)
	}
	if c.FreezeTimeout.Duration <= 0 || c.FreezeTimeout.Duration > time.Hour {
		return fmt.Errorf("freeze_timeout must be between 0 and 1h, not %v", c.FreezeTimeout)
	}
	if c.CommitTimeout.Duration <= 0 || c.CommitTimeout.Duration > 10*time.Minute {
		return fmt.Errorf("commit_timeout must be between 0 and 10m, not %v", c.CommitTimeout)
	}
	if c.MaxShadowCopies < 1 || c.MaxShadowCopies > MaxMaxShadowCopies {
		return fmt.Errorf("max_shadow_copies must be between 1 and %d, not %d", MaxMaxShadowCopies, c.MaxShadowCopies)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	for right, names := range map[string][]string{"list": c.Access.List, "create": c.Access.Create, "delete": c.Access.Delete, "writers": c.Access.Writers} {
		for _, n := range names {
			if err := checkPrincipal(n); err != nil {
				return fmt.Errorf("access.%s: %w", right, err)
			}
		}
	}
	for k, d := range c.Writers.Timeouts {
		if !writerEvents[strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(k))] {
			return fmt.Errorf("writers.timeouts: %q is not a writer event (prepare-backup, prepare-snapshot, freeze, thaw, post-snapshot, abort, backup-complete, backup-shutdown, pre-restore, post-restore, identify)", k)
		}
		if d.Duration <= 0 || d.Duration > time.Hour {
			return fmt.Errorf("writers.timeouts.%s must be between 0 and 1h, not %v", k, d)
		}
	}
	names := map[string]bool{}
	check := func(kind, name, onError string) error {
		if name == "" {
			return fmt.Errorf("writers.%s: a writer needs a name", kind)
		}
		if names[kind+"/"+name] {
			return fmt.Errorf("writers.%s: two writers are named %q", kind, name)
		}
		names[kind+"/"+name] = true
		switch onError {
		case "", "fail", "continue", "crash-consistent":
		default:
			return fmt.Errorf("writers.%s %q: on_error must be fail, continue or crash-consistent, not %q", kind, name, onError)
		}
		return nil
	}
	for _, w := range c.Writers.SQLite {
		if err := check("sqlite", w.Name, w.OnError); err != nil {
			return err
		}
		if len(w.Paths) == 0 {
			return fmt.Errorf("writers.sqlite %q: paths is empty", w.Name)
		}
		for _, p := range w.Paths {
			if p == "" || p[0] != '/' {
				return fmt.Errorf("writers.sqlite %q: database path %q is not absolute", w.Name, p)
			}
		}
	}
	for kind, ws := range map[string][]DatabaseWriter{"postgresql": c.Writers.PostgreSQL, "mariadb": c.Writers.MariaDB} {
		for _, w := range ws {
			if err := check(kind, w.Name, w.OnError); err != nil {
				return err
			}
			if w.DSN == "" {
				return fmt.Errorf("writers.%s %q: dsn is empty", kind, w.Name)
			}
			if w.DataDir != "" && w.DataDir[0] != '/' {
				return fmt.Errorf("writers.%s %q: data_dir %q is not absolute", kind, w.Name, w.DataDir)
			}
			switch {
			case w.BackupMode == "" || (kind == "postgresql" && (w.BackupMode == "auto" || w.BackupMode == "always")):
			case kind == "postgresql":
				return fmt.Errorf("writers.postgresql %q: backup_mode must be auto or always, not %q", w.Name, w.BackupMode)
			default:
				return fmt.Errorf("writers.%s %q: backup_mode is a PostgreSQL setting", kind, w.Name)
			}
		}
	}
	return nil
}

// writerEvents are the writer events' names (internal/writers), lower
// case without dashes.
var writerEvents = map[string]bool{"identify": true, "preparebackup": true, "preparesnapshot": true, "freeze": true, "thaw": true,
	"postsnapshot": true, "abort": true, "backupcomplete": true, "backupshutdown": true, "prerestore": true, "postrestore": true}

// checkPrincipal checks a user or "@group" name of the access lists.
func checkPrincipal(n string) error {
	name := strings.TrimPrefix(n, "@")
	if name == "" || len(name) > 256 || strings.ContainsAny(name, " \t\n:/,") {
		return fmt.Errorf("%q is not a user name or @group", n)
	}
	return nil
}
