package fakeobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
)

// A key may be 1,024 bytes, but a file name only NAME_MAX (255). A key
// segment that cannot be a file name is stored under an alias,
// aliasPrefix + hex(sha256(segment)), and the segment itself is recorded in
// .meta/<bucket>/long/<hh>/<sha256 of the alias's path in the bucket>, so
// that listings can name and sort the alias by its segment. The record is
// written durably before the alias is created and removed after it is gone:
// after a crash an alias always has its record (a record may outlive its
// alias, which is harmless).
//
// Segments that merely begin with aliasPrefix are aliased too: no user name
// can then pose as an alias, and no key has to be refused for its name.
// Normal segments keep the plain-file layout at no extra cost.
const (
	aliasPrefix  = "%long-"
	aliasMetaDir = "long"

	// maxCachedSegs bounds the cache of segments by alias name.
	maxCachedSegs = 4096
)

// segCache holds the segments behind alias names that listings have read.
// An alias name is the hash of its segment, so the mapping holds wherever
// the alias lies and never goes stale; it spares a page of a listing one
// file read per alias it passes.
type segCache struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *segCache) get(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[name]
	return s, ok
}

func (c *segCache) put(name, seg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedSegs {
		c.m = make(map[string]string)
	}
	c.m[name] = seg
}

// needsAlias reports whether seg cannot be stored as a file name of its own.
func needsAlias(seg string) bool {
	return len(seg) > maxSegmentLen || strings.HasPrefix(seg, aliasPrefix)
}

func aliasName(seg string) string {
	sum := sha256.Sum256([]byte(seg))
	return aliasPrefix + hex.EncodeToString(sum[:])
}

// diskKey is the path, under its bucket's directory, of key or of a key's
// folder (a key with its last segments cut off).
func diskKey(key string) string {
	if len(key) <= maxSegmentLen && !strings.Contains(key, aliasPrefix) {
		return key // the common case: no segment needs an alias
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		if needsAlias(s) {
			segs[i] = aliasName(s)
		}
	}
	return strings.Join(segs, "/")
}

// aliasRecordPath is where the segment behind the alias at diskRel (a path
// under the bucket's directory) is recorded. It is keyed by the alias's
// path, not by its segment, so that it can go with the alias.
func aliasRecordPath(bucket, diskRel string) string {
	sum := sha256.Sum256([]byte(diskRel))
	h := hex.EncodeToString(sum[:])
	return path.Join(metaDir, bucket, aliasMetaDir, h[:2], h)
}

// ensureAliases records the segments of every alias on the disk path of
// keyPath (a key without its trailing "/"), before any of them is created.
func (b *backend) ensureAliases(bucket, keyPath string) error {
	if diskKey(keyPath) == keyPath {
		return nil
	}
	segs := strings.Split(keyPath, "/")
	disk := make([]string, 0, len(segs))
	for _, s := range segs {
		if !needsAlias(s) {
			disk = append(disk, s)
			continue
		}
		disk = append(disk, aliasName(s))
		rec := aliasRecordPath(bucket, strings.Join(disk, "/"))
		// Usually there already: the folder of an earlier key.
		if raw, err := b.root.ReadFile(rec); err == nil && string(raw) == s {
			continue
		}
		if err := b.writeFileAtomic(rec, []byte(s)); err != nil {
			return diskError("record long key segment", err)
		}
	}
	return nil
}

// aliasSegment returns the key segment behind the alias name at diskRel;
// false for a name with no valid record (a file placed by hand, which S3
// cannot address).
func (b *backend) aliasSegment(bucket, diskRel, name string) (string, bool) {
	if seg, ok := b.segs.get(name); ok {
		return seg, true
	}
	raw, err := b.root.ReadFile(aliasRecordPath(bucket, diskRel))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.log.Warn("fakeobs: read long key segment", "bucket", bucket, "path", diskRel, "err", err)
		}
		return "", false
	}
	seg := string(raw)
	if aliasName(seg) != name || !needsAlias(seg) || strings.Contains(seg, "/") {
		return "", false
	}
	b.segs.put(name, seg)
	return seg, true
}

// dropAlias removes the record of the alias at diskPath (bucket/…) once
// nothing lies there any more; other paths are left alone.
func (b *backend) dropAlias(bucket, diskPath string) error {
	if !strings.HasPrefix(path.Base(diskPath), aliasPrefix) {
		return nil
	}
	if _, err := b.root.Lstat(diskPath); !errors.Is(err, fs.ErrNotExist) {
		return nil // still there (a folder of other keys), or unknown
	}
	rel := strings.TrimPrefix(diskPath, bucket+"/")
	if err := b.root.Remove(aliasRecordPath(bucket, rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fakeobs: drop long key segment of %s/%s: %w", bucket, rel, err)
	}
	return nil
}
