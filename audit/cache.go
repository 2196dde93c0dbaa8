package audit

import (
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
