// Package config reads the service configuration (/etc/vss/vssd.toml, or
// the file VSS_CONFIG names) and parses the values the tools take.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/linuxvss/vss/internal/vsserr"
)

// Defaults.
const (
	DefaultStateDir        = "/var/lib/vss"
	DefaultSocket          = "/run/vss/vssd.sock"
	DefaultConfigPath      = "/etc/vss/vssd.toml"
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
	return nil
}
