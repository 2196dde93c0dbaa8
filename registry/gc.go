package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// GCStats reports what a GC removed.
type GCStats struct {
	BlobsDeleted   int   `json:"blobsDeleted"`
	BytesFreed     int64 `json:"bytesFreed"`
	UploadsDeleted int   `json:"uploadsDeleted"`
	// BlobsKept and BytesKept are the unreferenced blobs written within
	// the grace period, left for pushes in flight.
	BlobsKept int           `json:"blobsKept"`
	BytesKept int64         `json:"bytesKept"`
	Grace     time.Duration `json:"grace"`
}

// totalSize is the stored size of manifest d with everything it references.
func (s *store) totalSize(d digest, depth int) (int64, error) {
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, fmt.Errorf("stat manifest: %w", err)
	}
	m, err := s.manifest(d)
	if err != nil {
		return 0, err
	}
	total := fi.Size()
	if m.Config != nil {
		total += m.Config.Size
	}
	for _, l := range m.Layers {
		total += l.Size
	}
	for _, c := range m.Manifests {
		cd, err := parseDigest(c.Digest)
		if err != nil || depth > 8 {
			total += c.Size
			continue
		}
		n, err := s.totalSize(cd, depth+1)
		if err != nil {
			n = c.Size
		}
		total += n
	}
	return total, nil
}

// GC deletes blobs that no manifest of any repository references and that
// were not written in the grace period, plus upload sessions idle for that
// long. It is safe while the registry serves: writers that make a blob
// reachable hold the lock GC takes, and the grace period covers blobs whose
// manifest is still on its way.
func (r *Registry) GC(ctx context.Context) (GCStats, error) {
	return r.GCGrace(ctx, r.s.grace)
}

// GCGrace is GC with another grace period: 0 collects every unreferenced
// blob and idle upload now, so pushes in flight may fail.
func (r *Registry) GCGrace(ctx context.Context, grace time.Duration) (GCStats, error) {
	if grace < 0 {
		return GCStats{}, fmt.Errorf("registry: gc: negative grace %s", grace)
	}
	st, err := r.s.gc(ctx, time.Now().Add(-grace))
	st.Grace = grace
	if err != nil {
		return st, fmt.Errorf("registry: gc: %w", err)
	}
	r.log.Info("registry: gc", "blobs", st.BlobsDeleted, "bytes", st.BytesFreed, "uploads", st.UploadsDeleted,
		"kept_blobs", st.BlobsKept, "kept_bytes", st.BytesKept, "grace", grace)
	return st, nil
}

func (s *store) gc(ctx context.Context, cutoff time.Time) (GCStats, error) {
	var st GCStats
	s.gcMu.Lock()
	defer s.gcMu.Unlock()

	// Mark.
	live := map[string]bool{}
	repos, err := s.listRepos(ctx)
	if err != nil {
		return st, err
	}
	for _, repo := range repos {
		ds, err := s.listManifests(repo)
		if err != nil {
			return st, err
		}
		for _, d := range ds {
			live[d.String()] = true
			m, err := s.manifest(d)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				// An unreadable manifest could reference anything: stop
				// rather than delete what it may need.
				return st, err
			}
			if m.Config != nil {
				live[m.Config.Digest] = true
			}
			for _, l := range m.Layers {
				live[l.Digest] = true
			}
			for _, c := range m.Manifests {
				live[c.Digest] = true
			}
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
	}

	// Sweep blobs.
	for _, alg := range []string{"sha256", "sha512"} {
		err := filepath.WalkDir(s.path("blobs", alg), func(p string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") || live[alg+":"+e.Name()] {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			if fi.ModTime().After(cutoff) {
				st.BlobsKept++
				st.BytesKept += fi.Size()
				return nil
			}
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove blob: %w", err)
			}
			s.release(fi.Size())
			st.BlobsDeleted++
			st.BytesFreed += fi.Size()
			s.metaMu.Lock()
			delete(s.meta, alg+":"+e.Name())
			s.metaMu.Unlock()
			return nil
		})
		if err != nil {
			return st, err
		}
	}
	// Drop repository links to blobs that are gone, so a later upload of
	// the same content is not visible in repositories that deleted it.
	for _, repo := range repos {
		for _, alg := range []string{"sha256", "sha512"} {
			hexes, err := readDirNames(s.repoPath(repo, "_blobs", alg))
			if err != nil {
				return st, err
			}
			for _, h := range hexes {
				if !exists(s.blobPath(digest{alg, h})) {
					_ = os.Remove(s.repoPath(repo, "_blobs", alg, h))
				}
			}
		}
	}

	// Sweep idle uploads.
	ids, err := readDirNames(s.path("uploads"))
	if err != nil {
		return st, err
	}
	for _, id := range ids {
		dir := s.path("uploads", id)
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if err != nil {
			fi, err = os.Stat(dir)
		}
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		s.upMu.Lock()
		u, ok := s.uploads[id]
		if !ok {
			// Not loaded (left by a restart): remove it under upMu so no
			// request loads it meanwhile.
			err = os.RemoveAll(dir)
			if err == nil && fi.Name() == "data" {
				s.release(fi.Size())
			}
		}
		s.upMu.Unlock()
		if err != nil {
			return st, fmt.Errorf("remove upload: %w", err)
		}
		if ok {
			if !u.mu.TryLock() {
				continue // in use right now
			}
			s.cancel(u)
			u.mu.Unlock()
		}
		st.UploadsDeleted++
	}
	return st, nil
}
