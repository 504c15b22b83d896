// Package builtin builds the writers the service runs itself from its
// configuration: the built-in SQLite, PostgreSQL and MariaDB writers
// ([[writers.sqlite]], [[writers.postgresql]], [[writers.mariadb]]) and the
// hook writers of /etc/vss/writers.d (writers.hooks_dir).
package builtin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/linuxvss/vss/internal/config"
	"github.com/linuxvss/vss/internal/service"
	"github.com/linuxvss/vss/internal/writers"
	"github.com/linuxvss/vss/internal/writers/hook"
	"github.com/linuxvss/vss/internal/writers/mariadb"
	"github.com/linuxvss/vss/internal/writers/postgres"
	"github.com/linuxvss/vss/internal/writers/sqlite"
)

// Sources returns the writer sources of a service.
func Sources(log *slog.Logger) []service.WriterSource {
	if log == nil {
		log = slog.Default()
	}
	return []service.WriterSource{
		func(ctx context.Context, cfg config.Config) ([]writers.Registration, []error) {
			return databases(cfg, log)
		},
		func(ctx context.Context, cfg config.Config) ([]writers.Registration, []error) { return hooks(cfg) },
	}
}

func policy(kind, name, s string) (writers.Policy, error) {
	p, err := writers.ParsePolicy(s)
	if err != nil {
		return "", fmt.Errorf("writers.%s %q: %w", kind, name, err)
	}
	return p, nil
}

// databases builds the built-in database writers.
func databases(cfg config.Config, log *slog.Logger) ([]writers.Registration, []error) {
	var regs []writers.Registration
	var errs []error
	add := func(kind, name, onError string, build func() (writers.Writer, error)) {
		p, err := policy(kind, name, onError)
		if err != nil {
			errs = append(errs, err)
			return
		}
		w, err := build()
		if err != nil {
			errs = append(errs, fmt.Errorf("writers.%s %q: %w", kind, name, err))
			return
		}
		regs = append(regs, writers.Registration{Writer: w, Kind: writers.KindBuiltIn, Policy: p})
	}
	for _, c := range cfg.Writers.SQLite {
		add("sqlite", c.Name, c.OnError, func() (writers.Writer, error) {
			return sqlite.New(sqlite.Config{Name: c.Name, Paths: c.Paths}, log.With("writer", "sqlite", "instance", c.Name))
		})
	}
	for _, c := range cfg.Writers.PostgreSQL {
		add("postgresql", c.Name, c.OnError, func() (writers.Writer, error) {
			return postgres.New(postgres.Config{Name: c.Name, DSN: c.DSN, DataDir: c.DataDir, StopCommand: c.StopCommand, StartCommand: c.StartCommand, BackupMode: c.BackupMode},
				log.With("writer", "postgresql", "instance", c.Name))
		})
	}
	for _, c := range cfg.Writers.MariaDB {
		add("mariadb", c.Name, c.OnError, func() (writers.Writer, error) {
			return mariadb.New(mariadb.Config{Name: c.Name, DSN: c.DSN, DataDir: c.DataDir, StopCommand: c.StopCommand, StartCommand: c.StartCommand},
				log.With("writer", "mariadb", "instance", c.Name))
		})
	}
	return regs, errs
}

// hooks loads the hook writers.
func hooks(cfg config.Config) ([]writers.Registration, []error) {
	dir := cfg.Writers.HooksDir
	if dir == "-" {
		return nil, nil
	}
	if dir == "" {
		dir = config.DefaultHooksDir
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	ws, errs := hook.Load(dir)
	var regs []writers.Registration
	for _, w := range ws {
		p, err := writers.ParsePolicy(w.OnError())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		regs = append(regs, writers.Registration{Writer: w, Kind: writers.KindHook, Policy: p})
	}
	return regs, errs
}
