package jobs

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/malocal/malocal/api"
)

var jobsBucket = []byte("jobs")

// Store keeps jobs in bbolt: every Put is one fsynced transaction, so a
// crash loses no acknowledged change.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (or creates) the store file.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening job store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(jobsBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising job store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Put writes a job.
func (s *Store) Put(j *api.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encoding job %s: %w", j.ID, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Put([]byte(j.ID), b) }); err != nil {
		return fmt.Errorf("storing job %s: %w", j.ID, err)
	}
	return nil
}

// Get reads a job.
func (s *Store) Get(id string) (*api.Job, error) {
	var j *api.Job
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(jobsBucket).Get([]byte(id))
		if b == nil {
			return fmt.Errorf("job %q: %w", id, api.ErrNotFound)
		}
		j = new(api.Job)
		return json.Unmarshal(b, j)
	})
	return j, err
}

// Delete removes a job.
func (s *Store) Delete(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Delete([]byte(id)) })
}

// List returns every job, oldest first.
func (s *Store) List() ([]*api.Job, error) {
	var out []*api.Job
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).ForEach(func(_, v []byte) error {
			j := new(api.Job)
			if err := json.Unmarshal(v, j); err != nil {
				return err
			}
			out = append(out, j)
			return nil
		})
	})
	sort.Slice(out, func(a, b int) bool { return out[a].Created.Before(out[b].Created) })
	return out, err
}
