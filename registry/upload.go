package registry

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// upload is one blob upload session. Its bytes go straight to
// uploads/<id>/data, hashed as they arrive; nothing is held in memory, and
// a session outlives a restart (its hash is then recomputed from disk).
type upload struct {
	mu   sync.Mutex
	id   string
	repo string
	dir  string
	size int64
	h    hash.Hash // running sha256 of data; nil: recompute from disk
	done bool      // committed or canceled
}

func (u *upload) data() string { return filepath.Join(u.dir, "data") }

func (s *store) newUpload(name string) (*upload, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("upload id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	u := &upload{id: id, repo: name, dir: s.path("uploads", id), h: newHasher("sha256")}
	if err := writeFileAtomic(filepath.Join(u.dir, "repo"), []byte(name)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(u.data(), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create upload: %w", err)
	}
	if err := syncDir(u.dir); err != nil {
		return nil, err
	}
	s.upMu.Lock()
	s.uploads[id] = u
	s.upMu.Unlock()
	return u, nil
}

// getUpload finds session id of repository name, loading it from disk
// after a restart. The caller locks u.mu and checks u.done.
func (s *store) getUpload(name, id string) (*upload, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, errBlobUploadUnknown
	}
	s.upMu.Lock()
	defer s.upMu.Unlock()
	u, ok := s.uploads[id]
	if !ok {
		dir := s.path("uploads", id)
		repo, err := os.ReadFile(filepath.Join(dir, "repo"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errBlobUploadUnknown
		}
		if err != nil {
			return nil, fmt.Errorf("read upload: %w", err)
		}
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errBlobUploadUnknown
		}
		if err != nil {
			return nil, fmt.Errorf("stat upload: %w", err)
		}
		u = &upload{id: id, repo: string(repo), dir: dir, size: fi.Size()}
		s.uploads[id] = u
	}
	if u.repo != name {
		return nil, errBlobUploadUnknown
	}
	return u, nil
}

// quotaWriter reserves quota for each write before it reaches the disk.
type quotaWriter struct {
	s *store
	f *os.File
	h hash.Hash
}

func (q *quotaWriter) Write(p []byte) (int, error) {
	if err := q.s.reserve(int64(len(p))); err != nil {
		return 0, err
	}
	n, err := q.f.Write(p)
	q.s.release(int64(len(p) - n))
	if q.h != nil {
		q.h.Write(p[:n]) // keep the hash in step with the bytes on disk
	}
	return n, err
}

// appendData streams r onto the session. start is the offset the client
// says it continues from (-1: none given), length the bytes it announced
// (-1: unknown). Over quota, the session is dropped with all its bytes.
func (s *store) appendData(u *upload, r io.Reader, start, length int64) error {
	if start >= 0 && start != u.size {
		return errRangeInvalid
	}
	if length > 0 && s.quota > 0 && s.Used()+length > s.quota {
		s.cancel(u)
		return ErrQuota
	}
	f, err := os.OpenFile(u.data(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open upload: %w", err)
	}
	n, err := io.Copy(&quotaWriter{s: s, f: f, h: u.h}, r)
	u.size += n
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close upload: %w", cerr)
	}
	if errors.Is(err, ErrQuota) {
		s.cancel(u)
		return err
	}
	if err != nil {
		return fmt.Errorf("write upload: %w", err)
	}
	if length >= 0 && n != length {
		return withMessage(errSizeInvalid, fmt.Sprintf("received %d bytes, Content-Length said %d", n, length))
	}
	return nil
}

// commit checks the session's content against want and makes it blob want
// of the session's repository. On a mismatch the session is dropped.
func (s *store) commit(u *upload, want digest) error {
	h := u.h
	if h == nil || want.alg != "sha256" {
		h = newHasher(want.alg)
		f, err := os.Open(u.data())
		if err != nil {
			return fmt.Errorf("open upload: %w", err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("hash upload: %w", err)
		}
	}
	if hex.EncodeToString(h.Sum(nil)) != want.hex {
		s.cancel(u)
		return errDigestInvalid
	}
	f, err := os.Open(u.data())
	if err != nil {
		return fmt.Errorf("open upload: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("sync upload: %w", err)
	}

	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	dst := s.blobPath(want)
	if exists(dst) {
		// Same content already stored: keep that file, drop ours.
		if err := touch(dst); err != nil {
			return err
		}
	} else {
		if err := mkdirAll(filepath.Dir(dst)); err != nil {
			return err
		}
		if err := os.Rename(u.data(), dst); err != nil {
			return fmt.Errorf("commit blob: %w", err)
		}
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return err
		}
		u.size = 0 // its bytes now belong to the blob
	}
	if err := s.link(u.repo, want); err != nil {
		return err
	}
	s.cancel(u)
	return nil
}

// cancel removes the session and whatever it holds.
func (s *store) cancel(u *upload) {
	if u.done {
		return
	}
	u.done = true
	if err := os.RemoveAll(u.dir); err != nil {
		s.log.Warn("registry: remove upload", "id", u.id, "err", err)
	}
	s.release(u.size)
	u.size = 0
	s.upMu.Lock()
	delete(s.uploads, u.id)
	s.upMu.Unlock()
}
