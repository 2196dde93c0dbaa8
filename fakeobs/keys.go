package fakeobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// Grant allows a key one prefix of one bucket: reading its objects and
// listing under it, and with Write also putting, uploading and deleting
// objects there. An empty Prefix is the whole bucket.
type Grant struct {
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"`
	Write  bool   `json:"write"`
}

// jobKey is the key pair of one job and what it may reach.
type jobKey struct {
	JobID     string    `json:"job_id"`
	AccessKey string    `json:"access_key"`
	SecretKey string    `json:"secret_key"`
	Grants    []Grant   `json:"grants"`
	Issued    time.Time `json:"issued"`
}

// KeyStore holds the per-job keys the S3 API accepts beside its own,
// each allowed only its grants. It is kept in one file (mode 0600),
// rewritten atomically on every change, so keys survive a restart.
type KeyStore struct {
	path string

	mu       sync.RWMutex
	byJob    map[string]*jobKey
	byAccess map[string]*jobKey
}

// keyFileVersion is the layout of the key file.
const keyFileVersion = 1

type keyFile struct {
	Version int       `json:"version"`
	Keys    []*jobKey `json:"keys"`
}

// OpenKeyStore loads the key store kept at path, or starts an empty one
// that is written there on the first Issue.
func OpenKeyStore(path string) (*KeyStore, error) {
	k := &KeyStore{path: path, byJob: map[string]*jobKey{}, byAccess: map[string]*jobKey{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the job key store: %w", err)
	}
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parsing the job key store %s: %w (move it away to revoke every job key)", path, err)
	}
	if f.Version > keyFileVersion {
		return nil, fmt.Errorf("the job key store %s has version %d, newer than this malocal understands (%d): upgrade malocal", path, f.Version, keyFileVersion)
	}
	for _, jk := range f.Keys {
		k.byJob[jk.JobID], k.byAccess[jk.AccessKey] = jk, jk
	}
	return k, nil
}

// Issue makes the key of jobID allowed grants, or returns the key the job
// already has (with its first grants).
func (k *KeyStore) Issue(jobID string, grants []Grant) (accessKey, secretKey string, err error) {
	if jobID == "" {
		return "", "", errors.New("issuing a job key: empty job id")
	}
	norm := make([]Grant, 0, len(grants))
	for _, g := range grants {
		if err := gofakes3.ValidateBucketName(g.Bucket); err != nil {
			return "", "", fmt.Errorf("issuing a key for job %s: %q is not a bucket name: %w", jobID, g.Bucket, err)
		}
		g.Prefix = strings.TrimLeft(g.Prefix, "/")
		norm = append(norm, g)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if jk := k.byJob[jobID]; jk != nil {
		return jk.AccessKey, jk.SecretKey, nil
	}
	jk := &jobKey{JobID: jobID, AccessKey: "MJ" + strings.ToUpper(randHex(9)), SecretKey: randHex(20),
		Grants: norm, Issued: time.Now().UTC()}
	k.byJob[jobID], k.byAccess[jk.AccessKey] = jk, jk
	if err := k.saveLocked(); err != nil {
		delete(k.byJob, jobID)
		delete(k.byAccess, jk.AccessKey)
		return "", "", err
	}
	return jk.AccessKey, jk.SecretKey, nil
}

// Revoke deletes the key of jobID; requests signed with it are refused
// from now on. Revoking a job without a key does nothing.
func (k *KeyStore) Revoke(jobID string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	jk := k.byJob[jobID]
	if jk == nil {
		return nil
	}
	delete(k.byJob, jobID)
	delete(k.byAccess, jk.AccessKey)
	if err := k.saveLocked(); err != nil {
		k.byJob[jobID], k.byAccess[jk.AccessKey] = jk, jk
		return err
	}
	return nil
}

// Jobs lists the jobs that hold a key, sorted.
func (k *KeyStore) Jobs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, 0, len(k.byJob))
	for id := range k.byJob {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (k *KeyStore) lookup(accessKey string) *jobKey {
	if k == nil {
		return nil
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.byAccess[accessKey]
}

func (k *KeyStore) saveLocked() error {
	f := keyFile{Version: keyFileVersion}
	for _, id := range sortedKeys(k.byJob) {
		f.Keys = append(f.Keys, k.byJob[id])
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileDurable(k.path, append(b, '\n')); err != nil {
		return fmt.Errorf("saving the job key store: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]*jobKey) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// writeFileDurable writes path (mode 0600) through a temp file, fsync,
// rename and an fsync of the directory.
func writeFileDurable(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}
