// Package catalog is the service's persistent, crash-safe record of volumes,
// shadow copy sets, shadow copies and shadow storage associations, with the
// journals that let a restarted service finish or roll back what a crash
// interrupted (sets being created, freezes, deletions, reverts). It is a
// bbolt database: every change is one transaction, written and synced
// before the call returns.
package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/linuxvss/vss/internal/vsserr"
)

const schemaVersion = "2"

var (
	bMeta      = []byte("meta")
	bShadows   = []byte("shadows")
	bSets      = []byte("sets")
	bVolumes   = []byte("volumes")
	bStorage   = []byte("storage")
	bPending   = []byte("pending")
	bFreezes   = []byte("freezes")
	bDeleting  = []byte("deleting")
	bReverts   = []byte("reverts")
	allBuckets = [][]byte{bMeta, bShadows, bSets, bVolumes, bStorage, bPending, bFreezes, bDeleting, bReverts}
)

// Catalog is an open catalog. It keeps the shadow records in memory once
// read (only this process writes the file: bbolt locks it), so listing and
// planning do not decode them again.
type Catalog struct {
	db *bolt.DB

	mu      sync.Mutex
	loaded  bool
	shadows map[uuid.UUID]Shadow
	sorted  []Shadow // nil when it must be rebuilt
}

// Open opens (or creates) the catalog file at path.
func Open(path string) (*Catalog, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening catalog %s: %w", path, err)
	}
	c := &Catalog{db: db}
	ready := false
	_ = db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return nil
			}
		}
		ready = string(tx.Bucket(bMeta).Get([]byte("version"))) == schemaVersion
		return nil
	})
	if ready {
		return c, nil // nothing to write: no transaction, no sync
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		v := m.Get([]byte("version"))
		if v == nil {
			return m.Put([]byte("version"), []byte(schemaVersion))
		}
		if string(v) != schemaVersion {
			return fmt.Errorf("catalog %s has schema version %s; this program knows %s", path, v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the catalog.
func (c *Catalog) Close() error { return c.db.Close() }

func put(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func get[T any](b *bolt.Bucket, key []byte) (T, bool, error) {
	var v T
	data := b.Get(key)
	if data == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, false, fmt.Errorf("catalog record %x: %w", key, err)
	}
	return v, true, nil
}

func all[T any](db *bolt.DB, bucket []byte) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("catalog record %x: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Meta returns a value of the meta bucket.
func (c *Catalog) Meta(key string) (string, error) {
	var v string
	err := c.db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bMeta).Get([]byte(key)))
		return nil
	})
	return v, err
}

// SetMeta sets a value of the meta bucket ("" deletes it).
func (c *Catalog) SetMeta(key, value string) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		if value == "" {
			return tx.Bucket(bMeta).Delete([]byte(key))
		}
		return tx.Bucket(bMeta).Put([]byte(key), []byte(value))
	})
}

// ---- sets being created ----

// BeginSet journals a set before anything is made for it.
func (c *Catalog) BeginSet(p Pending) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		return put(tx.Bucket(bPending), p.SetID[:], p)
	})
}

// DropPending removes the journal of a set that was rolled back.
func (c *Catalog) DropPending(setID uuid.UUID) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bPending).Delete(setID[:]) })
}

// Pending lists the sets whose creation did not finish.
func (c *Catalog) Pending() ([]Pending, error) { return all[Pending](c.db, bPending) }

// Commit is what a set's commit records besides the set and its shadows.
type Commit struct {
	// Volumes are the volumes of the set.
	Volumes []Volume
	// Storages are associations to record with the set (the default ones
	// a first shadow makes).
	Storages []Storage
}

// CommitSet records a set, all its shadows and what extra says, and drops
// its journal, in one transaction: the set is in the catalog with all its
// shadows, or not at all.
func (c *Catalog) CommitSet(set Set, shadows []Shadow, extra Commit) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bShadows)
		for i := range shadows {
			if err := sb.Put(shadows[i].ID[:], marshalShadow(&shadows[i])); err != nil {
				return err
			}
		}
		for _, v := range extra.Volumes {
			if err := put(tx.Bucket(bVolumes), v.ID[:], v); err != nil {
				return err
			}
		}
		for _, a := range extra.Storages {
			if err := put(tx.Bucket(bStorage), storageKey(a.For, a.On), a); err != nil {
				return err
			}
		}
		if err := put(tx.Bucket(bSets), set.ID[:], set); err != nil {
			return err
		}
		return tx.Bucket(bPending).Delete(set.ID[:])
	})
	if err == nil {
		c.cached(func(m map[uuid.UUID]Shadow) {
			for _, s := range shadows {
				m[s.ID] = s
			}
		})
	}
	return err
}

// load reads every shadow record into the cache, once.
func (c *Catalog) load() error {
	if c.loaded {
		return nil
	}
	m := map[uuid.UUID]Shadow{}
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bShadows).ForEach(func(k, v []byte) error {
			s, err := unmarshalShadow(v)
			if err != nil {
				return fmt.Errorf("catalog record %x: %w", k, err)
			}
			m[s.ID] = s
			return nil
		})
	})
	if err != nil {
		return err
	}
	c.shadows, c.loaded, c.sorted = m, true, nil
	return nil
}

// cached applies a committed change to the cache (if it is loaded).
func (c *Catalog) cached(change func(map[uuid.UUID]Shadow)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		change(c.shadows)
		c.sorted = nil
	}
}

// ---- shadows ----

// Shadows returns every shadow, ordered by creation time (then set, then
// volume path). The slice is shared with the catalog's cache and with the
// other callers: read it, never modify it (copy what you change). A change
// of the catalog makes a new slice; it never writes into a returned one.
func (c *Catalog) Shadows() ([]Shadow, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return nil, err
	}
	if c.sorted == nil {
		c.sorted = make([]Shadow, 0, len(c.shadows))
		for _, s := range c.shadows {
			c.sorted = append(c.sorted, s)
		}
		SortShadows(c.sorted)
	}
	return c.sorted[:len(c.sorted):len(c.sorted)], nil
}

// SortShadows orders shadows by creation time, set and volume path.
func SortShadows(s []Shadow) {
	sort.Slice(s, func(i, j int) bool {
		a, b := &s[i], &s[j]
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		if a.SetID != b.SetID {
			return bytes.Compare(a.SetID[:], b.SetID[:]) < 0
		}
		return a.VolumePath < b.VolumePath
	})
}

// Shadow returns one shadow.
func (c *Catalog) Shadow(id uuid.UUID) (Shadow, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return Shadow{}, err
	}
	s, ok := c.shadows[id]
	if !ok {
		return s, vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy with ID {%s}", id)
	}
	return s, nil
}

// UpdateShadow rewrites a shadow's record (exposure, owner).
func (c *Catalog) UpdateShadow(s Shadow) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bShadows)
		if b.Get(s.ID[:]) == nil {
			return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy with ID {%s}", s.ID)
		}
		return b.Put(s.ID[:], marshalShadow(&s))
	})
	if err == nil {
		c.cached(func(m map[uuid.UUID]Shadow) { m[s.ID] = s })
	}
	return err
}

// Sets returns every set.
func (c *Catalog) Sets() ([]Set, error) { return all[Set](c.db, bSets) }

// ---- deletion ----

// BeginDelete moves shadows from the catalog to the deletion journal, in one
// transaction; the sets they leave empty go too. From here on they are not
// listed; a restarted service finishes deleting them.
func (c *Catalog) BeginDelete(ids []uuid.UUID) ([]Shadow, error) {
	var moved []Shadow
	err := c.db.Update(func(tx *bolt.Tx) error {
		sb, db, setb := tx.Bucket(bShadows), tx.Bucket(bDeleting), tx.Bucket(bSets)
		for _, id := range ids {
			rec := sb.Get(id[:])
			if rec == nil {
				return vsserr.New(vsserr.VSS_E_OBJECT_NOT_FOUND, "no shadow copy with ID {%s}", id)
			}
			s, err := unmarshalShadow(rec)
			if err != nil {
				return fmt.Errorf("catalog record %x: %w", id[:], err)
			}
			if err := db.Put(id[:], marshalShadow(&s)); err != nil {
				return err
			}
			if err := sb.Delete(id[:]); err != nil {
				return err
			}
			set, ok, err := get[Set](setb, s.SetID[:])
			if err != nil {
				return err
			}
			if ok {
				keep := set.Shadows[:0]
				for _, x := range set.Shadows {
					if x != id {
						keep = append(keep, x)
					}
				}
				set.Shadows = keep
				if len(keep) == 0 {
					err = setb.Delete(set.ID[:])
				} else {
					err = put(setb, set.ID[:], set)
				}
				if err != nil {
					return err
				}
			}
			moved = append(moved, s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.cached(func(m map[uuid.UUID]Shadow) {
		for _, s := range moved {
			delete(m, s.ID)
		}
	})
	return moved, nil
}

// FinishDelete drops a shadow from the deletion journal once it is gone.
func (c *Catalog) FinishDelete(id uuid.UUID) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bDeleting).Delete(id[:]) })
}

// Deleting lists the shadows whose deletion did not finish.
func (c *Catalog) Deleting() ([]Shadow, error) {
	var out []Shadow
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bDeleting).ForEach(func(k, v []byte) error {
			s, err := unmarshalShadow(v)
			if err != nil {
				return fmt.Errorf("catalog record %x: %w", k, err)
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}

// ---- volumes ----

// Volumes lists the recorded volumes.
func (c *Catalog) Volumes() ([]Volume, error) { return all[Volume](c.db, bVolumes) }

// ---- storage associations ----

func storageKey(forID, onID uuid.UUID) []byte {
	k := make([]byte, 32)
	copy(k, forID[:])
	copy(k[16:], onID[:])
	return k
}

// PutStorage records (or replaces) an association.
func (c *Catalog) PutStorage(s Storage) error {
	return c.db.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(bStorage), storageKey(s.For, s.On), s) })
}

// Storages lists the associations.
func (c *Catalog) Storages() ([]Storage, error) {
	out, err := all[Storage](c.db, bStorage)
	sort.Slice(out, func(i, j int) bool {
		if out[i].ForPath != out[j].ForPath {
			return out[i].ForPath < out[j].ForPath
		}
		return out[i].OnPath < out[j].OnPath
	})
	return out, err
}

// DeleteStorage removes an association.
func (c *Catalog) DeleteStorage(forID, onID uuid.UUID) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bStorage).Delete(storageKey(forID, onID)) })
}

// ---- freezes ----

// RecordFreeze journals a freeze before it is made.
func (c *Catalog) RecordFreeze(f Freeze) error {
	return c.db.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(bFreezes), []byte(f.Path), f) })
}

// ClearFreeze removes a freeze from the journal once it is undone.
func (c *Catalog) ClearFreeze(path string) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bFreezes).Delete([]byte(path)) })
}

// Freezes lists the recorded freezes.
func (c *Catalog) Freezes() ([]Freeze, error) { return all[Freeze](c.db, bFreezes) }

// ---- reverts ----

// PutRevert journals (or updates) a revert in progress.
func (c *Catalog) PutRevert(r Revert) error {
	return c.db.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(bReverts), r.VolumeID[:], r) })
}

// FinishRevert removes a completed revert from the journal.
func (c *Catalog) FinishRevert(volumeID uuid.UUID) error {
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bReverts).Delete(volumeID[:]) })
}

// Reverts lists the reverts in progress.
func (c *Catalog) Reverts() ([]Revert, error) { return all[Revert](c.db, bReverts) }

// ErrClosed is returned after Close.
var ErrClosed = errors.New("catalog closed")
