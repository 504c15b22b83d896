package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// layout is where a cluster keeps its files.
type layout struct {
	dataDir string
	// tablespaces are the tablespaces outside the data directory.
	tablespaces []tablespace
	// walDir is where pg_wal points when it is a symbolic link out of the
	// data directory; empty otherwise.
	walDir string
}

// tablespace is a user tablespace.
type tablespace struct {
	oid      string
	name     string
	location string
}

// roots are the directories whose volumes a shadow copy set must hold.
func (l *layout) roots() []string {
	r := []string{l.dataDir}
	for _, ts := range l.tablespaces {
		r = append(r, ts.location)
	}
	if l.walDir != "" {
		r = append(r, l.walDir)
	}
	return r
}

// connect opens a session to the server.
func (w *Writer) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(w.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse DSN: %w", err)
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["application_name"] = applicationName
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = 30 * time.Second
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// serverLayout asks the server for its layout over a short session.
func (w *Writer) serverLayout(ctx context.Context) (*layout, error) {
	c, err := w.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	return w.queryLayout(ctx, c)
}

// queryLayout asks the server for its data directory (unless configured)
// and its tablespaces, and reads where pg_wal points.
func (w *Writer) queryLayout(ctx context.Context, c *pgx.Conn) (*layout, error) {
	l := &layout{dataDir: w.cfg.DataDir}
	if l.dataDir == "" {
		if err := c.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&l.dataDir); err != nil {
			return nil, fmt.Errorf("ask for the data directory: %w", err)
		}
		l.dataDir = filepath.Clean(l.dataDir)
	}
	rows, err := c.Query(ctx, `SELECT oid::text, spcname::text, pg_tablespace_location(oid)
		FROM pg_tablespace WHERE pg_tablespace_location(oid) <> '' ORDER BY oid`)
	if err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	for rows.Next() {
		var ts tablespace
		if err := rows.Scan(&ts.oid, &ts.name, &ts.location); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tablespaces: %w", err)
		}
		l.addTablespace(ts)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tablespaces: %w", err)
	}
	if l.walDir, err = walLink(l.dataDir); err != nil {
		return nil, err
	}
	return l, nil
}

// addTablespace adds a tablespace that lies outside the data directory
// (in-place tablespaces have a relative location and are inside it).
func (l *layout) addTablespace(ts tablespace) {
	if !filepath.IsAbs(ts.location) {
		return
	}
	ts.location = filepath.Clean(ts.location)
	if within(ts.location, l.dataDir) {
		return
	}
	l.tablespaces = append(l.tablespaces, ts)
}

// diskLayout reads the layout of a data directory from the disk: the
// symbolic links in pg_tblspc and pg_wal.
func diskLayout(dataDir string) (*layout, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("%s is not a PostgreSQL data directory: %w", dataDir, err)
	}
	l := &layout{dataDir: dataDir}
	ents, err := os.ReadDir(filepath.Join(dataDir, "pg_tblspc"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(dataDir, "pg_tblspc", e.Name()))
		if err != nil {
			return nil, err
		}
		l.addTablespace(tablespace{oid: e.Name(), name: e.Name(), location: target})
	}
	sort.Slice(l.tablespaces, func(i, j int) bool { return l.tablespaces[i].oid < l.tablespaces[j].oid })
	if l.walDir, err = walLink(dataDir); err != nil {
		return nil, err
	}
	return l, nil
}

// walLink returns where DataDir/pg_wal points when it is a symbolic link
// out of the data directory, "" otherwise.
func walLink(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "pg_wal")
	fi, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("read the WAL directory of %s: %w", dataDir, err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return "", nil
	}
	target, err := os.Readlink(p)
	if err != nil {
		return "", fmt.Errorf("read the WAL directory of %s: %w", dataDir, err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(dataDir, target)
	}
	target = filepath.Clean(target)
	if within(target, dataDir) {
		return "", nil
	}
	return target, nil
}

// within reports whether path is root or lies below it (lexically).
func within(path, root string) bool {
	path, root = filepath.Clean(path), filepath.Clean(root)
	if root == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == root || strings.HasPrefix(path, root+"/")
}

// coveringRoot returns the longest of roots that path lies on, and path
// as it matched: with its symbolic links resolved when it exists (a data
// directory reached through a link lives where the link points), as
// written otherwise.
func coveringRoot(path string, roots []string) (root, matched string, ok bool) {
	cands := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != filepath.Clean(path) {
		cands = []string{real, path}
	}
	for _, p := range cands {
		for _, r := range roots {
			if within(p, r) && (!ok || len(filepath.Clean(r)) > len(filepath.Clean(root))) {
				root, matched, ok = r, p, true
			}
		}
		if ok {
			return root, matched, true
		}
	}
	return "", "", false
}

// shadowOf maps a live path to the same path inside the shadow copy of
// the volume it lies on.
func shadowOf(path string, shadows map[string]string) (string, error) {
	roots := make([]string, 0, len(shadows))
	for v := range shadows {
		roots = append(roots, v)
	}
	root, p, ok := coveringRoot(path, roots)
	if !ok {
		return "", fmt.Errorf("%s lies on no volume of the shadow copy set", path)
	}
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(shadows[root], rel), nil
}

// parseWALName splits a WAL segment file name into its timeline and
// segment number.
func parseWALName(name string, segSize int64) (tli uint32, segno uint64, err error) {
	if len(name) != 24 {
		return 0, 0, fmt.Errorf("%q is not a WAL segment file name", name)
	}
	var f [3]uint64
	for i := range f {
		if f[i], err = strconv.ParseUint(name[8*i:8*i+8], 16, 32); err != nil {
			return 0, 0, fmt.Errorf("%q is not a WAL segment file name", name)
		}
	}
	per, err := segmentsPerID(segSize)
	if err != nil {
		return 0, 0, err
	}
	if f[2] >= per {
		return 0, 0, fmt.Errorf("%q: segment %X is beyond %d segments of %d bytes", name, f[2], per, segSize)
	}
	return uint32(f[0]), f[1]*per + f[2], nil
}

func segmentsPerID(segSize int64) (uint64, error) {
	if segSize < 1<<20 || segSize > 1<<30 || segSize&(segSize-1) != 0 {
		return 0, fmt.Errorf("bad WAL segment size %d", segSize)
	}
	return 0x100000000 / uint64(segSize), nil
}

// walFileName is PostgreSQL's XLogFileName.
func walFileName(tli uint32, segno uint64, segSize int64) string {
	per, _ := segmentsPerID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/per, segno%per)
}

// walSegments lists the WAL segment file names from first through last.
func walSegments(first, last string, segSize int64) ([]string, error) {
	t1, s1, err := parseWALName(first, segSize)
	if err != nil {
		return nil, err
	}
	t2, s2, err := parseWALName(last, segSize)
	if err != nil {
		return nil, err
	}
	if t1 != t2 {
		return nil, fmt.Errorf("the backup spans timelines %d and %d", t1, t2)
	}
	if s2 < s1 {
		return nil, fmt.Errorf("WAL segment %s comes before %s", last, first)
	}
	names := make([]string, 0, s2-s1+1)
	for s := s1; s <= s2; s++ {
		names = append(names, walFileName(t1, s, segSize))
	}
	return names, nil
}

// parseLSN reads an LSN as PostgreSQL prints it ("16/B374D848").
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("%q is not an LSN", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN", s)
	}
	return h<<32 | l, nil
}

// mapEntry is one line of a tablespace_map: a tablespace OID and the
// directory its pg_tblspc link points to.
type mapEntry struct {
	oid  string
	path string
}

// parseTablespaceMap reads a tablespace_map as the server does
// (read_tablespace_map): lines "<oid> <path>", where a backslash escapes
// the next character (a newline, a carriage return or a backslash in the
// path).
func parseTablespaceMap(s string) ([]mapEntry, error) {
	var out []mapEntry
	var line strings.Builder
	escaped := false
	flush := func() error {
		l := line.String()
		line.Reset()
		if l == "" {
			return nil
		}
		oid, path, ok := strings.Cut(l, " ")
		if !ok || oid == "" || path == "" || strings.Trim(oid, "0123456789") != "" {
			return fmt.Errorf("invalid tablespace_map line %q", l)
		}
		out = append(out, mapEntry{oid: oid, path: path})
		return nil
	}
	for _, r := range s {
		switch {
		case escaped:
			line.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '\n' || r == '\r':
			if err := flush(); err != nil {
				return nil, err
			}
		default:
			line.WriteRune(r)
		}
	}
	if escaped {
		return nil, errors.New("tablespace_map ends in a backslash")
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// formatTablespaceMap writes entries as pg_backup_stop does, escaping
// newlines, carriage returns and backslashes in the paths.
func formatTablespaceMap(entries []mapEntry) string {
	var b strings.Builder
	esc := strings.NewReplacer(`\`, `\\`, "\n", "\\\n", "\r", "\\\r")
	for _, e := range entries {
		b.WriteString(e.oid)
		b.WriteByte(' ')
		b.WriteString(esc.Replace(e.path))
		b.WriteByte('\n')
	}
	return b.String()
}

// rewriteTablespaceMap replaces every path of a tablespace_map with
// mapPath's answer.
func rewriteTablespaceMap(m string, mapPath func(oid, path string) (string, error)) (string, error) {
	entries, err := parseTablespaceMap(m)
	if err != nil {
		return "", err
	}
	for i, e := range entries {
		if entries[i].path, err = mapPath(e.oid, e.path); err != nil {
			return "", err
		}
	}
	return formatTablespaceMap(entries), nil
}
