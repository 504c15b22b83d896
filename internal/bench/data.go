package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/linuxvss/vss/internal/btrfsutil"
)

// randomSource returns a fast deterministic source of incompressible bytes.
func randomSource(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// dataFile names the i-th data file of a filled directory.
func dataFile(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("f%04d.dat", i)) }

// fillData writes total bytes of random data into dir as files of fileSize
// bytes (really written, no holes), then syncs the filesystem. It returns
// the number of files.
func fillData(ctx context.Context, dir string, total, fileSize int64, seed uint64) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	src := randomSource(seed)
	buf := make([]byte, 1<<20)
	n := int((total + fileSize - 1) / fileSize)
	for i := 0; i < n; i++ {
		f, err := os.Create(dataFile(dir, i))
		if err != nil {
			return i, err
		}
		size := min(fileSize, total-int64(i)*fileSize)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if err := ctx.Err(); err != nil {
				f.Close()
				return i, err
			}
			chunk := buf[:min(int64(len(buf)), size-off)]
			_, _ = src.Read(chunk)
			if _, err := f.Write(chunk); err != nil {
				f.Close()
				return i, fmt.Errorf("filling %s: %w", dir, err)
			}
		}
		if err := f.Close(); err != nil {
			return i, err
		}
	}
	return n, syncFS(dir)
}

// fillTree writes files small files (sizes from 512 B to 64 KiB) into
// dirs subdirectories of dir, then syncs the filesystem, and returns the
// bytes written.
func fillTree(ctx context.Context, dir string, files, dirs int, seed uint64) (int64, error) {
	src := randomSource(seed)
	sizes := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, 64<<10)
	var total int64
	for i := 0; i < files; i++ {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return total, err
			}
		}
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i%dirs))
		if i < dirs {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return total, err
			}
		}
		data := buf[:512+sizes.IntN(len(buf)-512+1)]
		_, _ = src.Read(data)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%05d", i)), data, 0o644); err != nil {
			return total, fmt.Errorf("filling %s: %w", dir, err)
		}
		total += int64(len(data))
	}
	return total, syncFS(dir)
}

// change describes how a benchmark modifies data files: bytes in total,
// either contiguous from the start of the first file (spilling into the
// next files), or scattered as pieces of piece bytes spread evenly over all
// files.
type change struct {
	bytes int64
	piece int64 // 0: contiguous
}

// apply overwrites the data files (nfiles of fileSize bytes in dir) with
// fresh random bytes as c says, fsyncing every file it touched, and
// returns how many files it touched.
func (c change) apply(ctx context.Context, dir string, nfiles int, fileSize int64, seed uint64) (int, error) {
	if c.bytes == 0 {
		return 0, nil
	}
	src := randomSource(seed)
	buf := make([]byte, 1<<20)
	type write struct {
		file int
		off  int64
		n    int64
	}
	var writes []write
	if c.piece == 0 {
		for left, i := c.bytes, 0; left > 0; i++ {
			if i == nfiles {
				return 0, fmt.Errorf("change of %s is larger than the data", FormatBytes(c.bytes))
			}
			n := min(left, fileSize)
			for off := int64(0); off < n; off += int64(len(buf)) {
				writes = append(writes, write{i, off, min(int64(len(buf)), n-off)})
			}
			left -= n
		}
	} else {
		pieces := int((c.bytes + c.piece - 1) / c.piece)
		perFile := (pieces + nfiles - 1) / nfiles
		stride := fileSize / int64(perFile)
		if stride < c.piece {
			return 0, fmt.Errorf("%d pieces of %s do not fit in %d files", pieces, FormatBytes(c.piece), nfiles)
		}
		for k := 0; k < pieces; k++ {
			writes = append(writes, write{k % nfiles, int64(k/nfiles) * stride, c.piece})
		}
	}
	touched := map[int]*os.File{}
	defer func() {
		for _, f := range touched {
			f.Close()
		}
	}()
	for _, w := range writes {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		f, ok := touched[w.file]
		if !ok {
			var err error
			if f, err = os.OpenFile(dataFile(dir, w.file), os.O_WRONLY, 0); err != nil {
				return 0, err
			}
			touched[w.file] = f
		}
		chunk := buf[:w.n]
		_, _ = src.Read(chunk)
		if _, err := f.WriteAt(chunk, w.off); err != nil {
			return 0, err
		}
	}
	for _, f := range touched {
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return len(touched), nil
}

// syncFS writes the dirty data of the filesystem holding path to disk.
func syncFS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}

// settleBtrfs commits the btrfs filesystem at dir and waits until the
// subvolumes deleted on it are cleaned up, so that this background work
// does not land in the next timed round. (Without the commit, `btrfs
// subvolume sync` waits for the next periodic commit, up to 30 s.)
func settleBtrfs(ctx context.Context, dir string) error {
	if err := btrfsutil.Sync(dir); err != nil {
		return fmt.Errorf("btrfs sync %s: %w", dir, err)
	}
	return runQuiet(ctx, "btrfs", "subvolume", "sync", dir)
}
