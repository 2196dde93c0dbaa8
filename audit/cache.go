package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Cache keeps verdicts by manifest digest and config digest.
type Cache interface {
	// Get returns the report stored for the image, if any.
	Get(ctx context.Context, manifestDigest, configDigest string) (*Report, bool, error)
	// Put stores a report under its ManifestDigest and ConfigDigest.
	Put(ctx context.Context, r *Report) error
}

var _ Cache = (*BoltCache)(nil)

// BoltCache is a Cache in a bbolt file.
type BoltCache struct {
	db *bolt.DB
}

var verdictBucket = []byte("audit-verdicts")

// VerdictsFile is where, under the data dir, the emulator and the CLI keep
// the verdict cache.
const VerdictsFile = "audit/verdicts.db"

// OpenBoltCache opens (creating if needed) the verdict cache at path. bbolt
// locks the file for one process; this waits a second for it, then fails.
func OpenBoltCache(path string) (*BoltCache, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open verdict cache %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(verdictBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init verdict cache %s: %w", path, err)
	}
	return &BoltCache{db: db}, nil
}

// Close closes the file.
func (c *BoltCache) Close() error { return c.db.Close() }

func cacheKey(manifestDigest, configDigest string) []byte {
	return []byte(manifestDigest + " " + configDigest)
}

// Get implements Cache.
func (c *BoltCache) Get(ctx context.Context, manifestDigest, configDigest string) (*Report, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var raw []byte
	err := c.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(verdictBucket).Get(cacheKey(manifestDigest, configDigest)); v != nil {
			raw = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read verdict: %w", err)
	}
	if raw == nil {
		return nil, false, nil
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, false, fmt.Errorf("decode verdict of %s: %w", manifestDigest, err)
	}
	return &r, true, nil
}

// Put implements Cache.
func (c *BoltCache) Put(ctx context.Context, r *Report) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.ManifestDigest == "" || r.ConfigDigest == "" {
		return errors.New("verdict without digests")
	}
	stored := *r
	stored.Cached = false
	raw, err := json.Marshal(&stored)
	if err != nil {
		return fmt.Errorf("encode verdict: %w", err)
	}
	err = c.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(verdictBucket).Put(cacheKey(r.ManifestDigest, r.ConfigDigest), raw)
	})
	if err != nil {
		return fmt.Errorf("store verdict: %w", err)
	}
	return nil
}

// ManifestCache is a Cache that can also find a verdict by manifest digest
// alone: what a job's submit knows before it reads the image.
type ManifestCache interface {
	Cache
	// GetManifest returns the stored reports of the image with manifest
	// digest md (one per config digest; normally one).
	GetManifest(ctx context.Context, md string) ([]*Report, error)
}

var _ ManifestCache = (*BoltCache)(nil)

// GetManifest implements ManifestCache.
func (c *BoltCache) GetManifest(ctx context.Context, md string) ([]*Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var raws [][]byte
	prefix := []byte(md + " ")
	err := c.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(verdictBucket).Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			raws = append(raws, append([]byte(nil), v...))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read verdicts: %w", err)
	}
	out := make([]*Report, 0, len(raws))
	for _, raw := range raws {
		var r Report
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("decode verdict of %s: %w", md, err)
		}
		out = append(out, &r)
	}
	return out, nil
}

// Cached returns the verdict stored for the image with manifest digest md
// under opts' policy, without reading the image; ok is false when there is
// none (or the cache cannot look up by manifest digest).
func (a *Auditor) Cached(ctx context.Context, md string, opts Options) (*Report, bool, error) {
	mc, ok := a.cache.(ManifestCache)
	if !ok {
		return nil, false, nil
	}
	ro, err := opts.resolve()
	if err != nil {
		return nil, false, fmt.Errorf("audit options: %w", err)
	}
	reps, err := mc.GetManifest(ctx, md)
	if err != nil {
		return nil, false, fmt.Errorf("verdict cache: %w", err)
	}
	for _, r := range reps {
		if r.Policy == ro.policy {
			r.Cached = true
			return r, true, nil
		}
	}
	return nil, false, nil
}
