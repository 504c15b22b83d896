package mariadb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vsserr"
	"github.com/linuxvss/vss/pkg/vssmeta"
)

var errBadConn = driver.ErrBadConn

// layout is where a server keeps its files.
type layout struct {
	version string
	dataDir string
	// The directories below are absolute; empty when the server has no
	// such files (no binary log, no Aria).
	dataHome   string   // innodb_data_home_dir
	dataFiles  []string // names of the system tablespace files
	logDir     string   // innodb_log_group_home_dir
	undoDir    string   // innodb_undo_directory
	ariaLogDir string   // aria_log_dir_path
	binlogBase string   // log_bin_basename
	tmpFile    string   // the temporary tablespace file name
	pidFile    string
	socket     string
}

// layoutLocked asks the server where its files are.
func (w *Writer) layoutLocked(ctx context.Context) (*layout, error) {
	c, err := w.sessionLocked(ctx)
	if err != nil {
		return nil, err
	}
	var (
		dataDir, logDir, undoDir, pidFile, socket, dataPath, tmpPath sql.NullString
		dataHome, binBase                                            sql.NullString
		logBin                                                       sql.NullInt64
	)
	err = c.QueryRowContext(ctx, `SELECT @@datadir, @@innodb_data_home_dir, @@innodb_data_file_path,
		@@innodb_log_group_home_dir, @@innodb_undo_directory, @@innodb_temp_data_file_path,
		@@log_bin, @@log_bin_basename, @@pid_file, @@socket`).Scan(
		&dataDir, &dataHome, &dataPath, &logDir, &undoDir, &tmpPath, &logBin, &binBase, &pidFile, &socket)
	if err != nil {
		if lost(err) {
			w.dropLocked(false)
		}
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "ask the server where its files are")
	}
	l := &layout{version: w.version}
	l.dataDir = filepath.Clean(dataDir.String)
	if w.cfg.DataDir != "" {
		l.dataDir = w.cfg.DataDir
	}
	if !filepath.IsAbs(l.dataDir) {
		return nil, vsserr.New(vsserr.VSS_E_WRITERERROR_NONRETRYABLE, "the server's data directory %q is not absolute", dataDir.String)
	}
	l.dataHome = l.abs(dataHome.String)
	l.dataFiles = fileNames(dataPath.String)
	l.logDir = l.abs(logDir.String)
	l.undoDir = l.abs(undoDir.String)
	if names := fileNames(tmpPath.String); len(names) > 0 {
		l.tmpFile = names[0]
	}
	if logBin.Int64 == 1 && binBase.String != "" {
		l.binlogBase = l.abs(binBase.String)
	}
	if pidFile.String != "" {
		l.pidFile = l.abs(pidFile.String)
	}
	if socket.String != "" {
		l.socket = l.abs(socket.String)
	}
	// Aria is MariaDB's; MySQL has no such variable.
	var aria sql.NullString
	if err := c.QueryRowContext(ctx, "SELECT @@aria_log_dir_path").Scan(&aria); err == nil && aria.String != "" {
		l.ariaLogDir = l.abs(aria.String)
	} else if err != nil && lost(err) {
		w.dropLocked(false)
		return nil, vsserr.Wrap(vsserr.VSS_E_WRITERERROR_RETRYABLE, err, "ask the server where its files are")
	}
	w.lay = l
	return l, nil
}

// abs makes a server path absolute: relative paths (and the empty one)
// are relative to the data directory.
func (l *layout) abs(p string) string {
	if p == "" {
		return l.dataDir
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(l.dataDir, p)
}

// fileNames reads the file names of an InnoDB tablespace path
// ("ibdata1:12M;ibdata2:50M:autoextend").
func fileNames(spec string) []string {
	var names []string
	for _, f := range strings.Split(spec, ";") {
		if name, _, _ := strings.Cut(f, ":"); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// outside reports whether dir holds files outside the data directory.
func (l *layout) outside(dir string) bool {
	return dir != "" && !within(dir, l.dataDir)
}

// roots are the directories the server's files are in: the data directory
// and every log or tablespace directory outside it.
func (l *layout) roots() []string {
	roots := []string{l.dataDir}
	for _, d := range []string{l.dataHome, l.logDir, l.undoDir, l.ariaLogDir, l.binlogDir()} {
		if l.outside(d) && !contains(roots, d) {
			roots = append(roots, d)
		}
	}
	return roots
}

func (l *layout) binlogDir() string {
	if l.binlogBase == "" {
		return ""
	}
	return filepath.Dir(l.binlogBase)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// files are the component's file specifications: the data directory, then
// the data and log files outside it.
func (l *layout) files() []vssmeta.File {
	files := []vssmeta.File{{Path: l.dataDir, Filespec: "*", Recursive: true}}
	if l.outside(l.dataHome) {
		for _, name := range l.dataFiles {
			files = append(files, vssmeta.File{Path: l.dataHome, Filespec: name})
		}
	}
	if l.outside(l.undoDir) {
		files = append(files, vssmeta.File{Path: l.undoDir, Filespec: "undo*"})
	}
	if l.outside(l.logDir) {
		files = append(files, vssmeta.File{Path: l.logDir, Filespec: "ib_logfile*", Log: true})
	}
	if l.outside(l.ariaLogDir) {
		files = append(files, vssmeta.File{Path: l.ariaLogDir, Filespec: "aria_log*", Log: true})
	}
	if d := l.binlogDir(); l.outside(d) {
		files = append(files, vssmeta.File{Path: d, Filespec: filepath.Base(l.binlogBase) + ".*", Log: true})
	}
	return files
}

// excludes are files that must not be backed up: pid files, the socket,
// the temporary tablespace (the server makes it anew at start).
func (l *layout) excludes() []vssmeta.File {
	ex := []vssmeta.File{{Path: l.dataDir, Filespec: "*.pid"}}
	add := func(p string) {
		if p == "" {
			return
		}
		f := vssmeta.File{Path: filepath.Dir(p), Filespec: filepath.Base(p)}
		for _, e := range ex {
			if e == f {
				return
			}
		}
		ex = append(ex, f)
	}
	if !(filepath.Dir(l.pidFile) == l.dataDir && strings.HasSuffix(l.pidFile, ".pid")) {
		add(l.pidFile) // not covered by *.pid
	}
	add(l.socket)
	if l.tmpFile != "" {
		add(l.abs(l.tmpFile))
	}
	return ex
}

// metadata builds the Writer Metadata Document for a layout.
func (w *Writer) metadata(l *layout) *vssmeta.WriterMetadata {
	caption := "MariaDB server at " + l.dataDir
	if l.version != "" {
		caption = "MariaDB " + l.version + " at " + l.dataDir
	}
	return &vssmeta.WriterMetadata{
		WriterID:     ClassID,
		InstanceID:   InstanceID(w.name, l.dataDir),
		Name:         WriterName,
		InstanceName: w.name,
		Usage:        vssmeta.UsageUserData,
		Source:       vssmeta.SourceTransactedDB,
		Schema: vssmeta.SchemaDifferential | vssmeta.SchemaIncremental | vssmeta.SchemaCopy |
			vssmeta.SchemaWriterSupportsNewTarget | vssmeta.SchemaWriterSupportsRestoreWithMove | vssmeta.SchemaRestoreRename,
		Restore: vssmeta.RestoreMethodInfo{
			Method:        vssmeta.RestoreStopStart,
			Service:       "mariadb",
			WriterRestore: vssmeta.WriterRestoreAlways,
		},
		Components: []vssmeta.Component{{
			Type:                 vssmeta.ComponentDatabase,
			LogicalPath:          LogicalPath,
			Name:                 w.name,
			Caption:              caption,
			Flags:                vssmeta.FlagBackupRecovery,
			Selectable:           true,
			SelectableForRestore: true,
			Files:                l.files(),
		}},
		Excludes: l.excludes(),
	}
}

// InstanceID is the instance ID of the writer named name for the server
// with data directory dataDir.
func InstanceID(name, dataDir string) uuid.UUID {
	return uuid.NewSHA1(ClassID, []byte(name+filepath.Clean(dataDir)))
}

// checkVolumes makes sure that the set's volumes hold every directory of
// the server: a shadow copy of only some of them cannot be consistent.
func checkVolumes(l *layout, volumes []string) error {
	type vol struct{ raw, real string }
	var vols []vol
	for _, v := range volumes {
		c := filepath.Clean(v)
		vols = append(vols, vol{c, realPath(c)})
	}
	for _, r := range l.roots() {
		real := realPath(r)
		ok := false
		for _, v := range vols {
			if within(r, v.raw) || within(real, v.real) {
				ok = true
				break
			}
		}
		if !ok {
			return vsserr.New(vsserr.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT,
				"the set's volumes [%s] do not include %s, which holds files of the MariaDB server %q; add its volume to the set",
				strings.Join(volumes, ", "), r, l.dataDir)
		}
	}
	return nil
}

// realPath resolves symbolic links where it can.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}
