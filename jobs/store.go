package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	jobsBucket = []byte("jobs")
	metaBucket = []byte("meta")
	versionKey = []byte("schema")
)

// SchemaVersion is the layout of the jobs this code stores. Version 1 (no
// version key: data dirs made before the key) kept the API's wire form;
// OpenStore migrates it. A newer version is refused, never misread.
const SchemaVersion = 2

// Store keeps jobs in bbolt: every Put is one fsynced transaction, so a
// crash loses no acknowledged change. Puts of one job are applied in the
// order of their revisions: a late write of an older copy is dropped.
type Store struct {
	db *bolt.DB

	mu   sync.Mutex
	revs map[string]uint64
}

// OpenStore opens (or creates) the store file, migrating an older schema.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening job store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return migrate(tx, path) }); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, revs: map[string]uint64{}}, nil
}

// migrate brings the file to SchemaVersion in one transaction.
func migrate(tx *bolt.Tx, path string) error {
	jb, err := tx.CreateBucketIfNotExists(jobsBucket)
	if err != nil {
		return fmt.Errorf("initialising job store %s: %w", path, err)
	}
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return fmt.Errorf("initialising job store %s: %w", path, err)
	}
	version := 1
	if v := meta.Get(versionKey); v != nil {
		if version, err = strconv.Atoi(string(v)); err != nil {
			return fmt.Errorf("job store %s: schema version %q is not a number; the file is damaged", path, v)
		}
	}
	if version > SchemaVersion {
		return fmt.Errorf("job store %s has schema version %d, newer than this malocal's %d: use the malocal that made it, or another --data-dir", path, version, SchemaVersion)
	}
	if version == 1 {
		c := jb.Cursor()
		type kv struct{ k, v []byte }
		var upd []kv
		for k, v := c.First(); k != nil; k, v = c.Next() {
			j, err := decodeV1(v)
			if err != nil {
				return fmt.Errorf("job store %s: migrating job %s from schema 1: %w", path, k, err)
			}
			b, err := json.Marshal(j)
			if err != nil {
				return err
			}
			upd = append(upd, kv{append([]byte(nil), k...), b})
		}
		for _, u := range upd {
			if err := jb.Put(u.k, u.v); err != nil {
				return err
			}
		}
	}
	return meta.Put(versionKey, []byte(strconv.Itoa(SchemaVersion)))
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Put writes a job; a copy older than the last one written is dropped.
func (s *Store) Put(j *Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encoding job %s: %w", j.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.rev != 0 && j.rev <= s.revs[j.ID] {
		return nil
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Put([]byte(j.ID), b) }); err != nil {
		return fmt.Errorf("storing job %s: %w", j.ID, err)
	}
	if j.rev != 0 {
		s.revs[j.ID] = j.rev
	}
	return nil
}

// Get reads a job.
func (s *Store) Get(id string) (*Job, error) {
	var j *Job
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(jobsBucket).Get([]byte(id))
		if b == nil {
			return fmt.Errorf("job %q: %w", id, ErrNotFound)
		}
		j = new(Job)
		return json.Unmarshal(b, j)
	})
	return j, err
}

// Delete removes a job.
func (s *Store) Delete(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Delete([]byte(id)) })
}

// List returns every job, oldest first.
func (s *Store) List() ([]*Job, error) {
	var out []*Job
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).ForEach(func(k, v []byte) error {
			j := new(Job)
			if err := json.Unmarshal(v, j); err != nil {
				return fmt.Errorf("job store: reading job %s: %w", k, err)
			}
			out = append(out, j)
			return nil
		})
	})
	sort.Slice(out, func(a, b int) bool { return out[a].Created.Before(out[b].Created) })
	s.mu.Lock()
	for _, j := range out {
		j.rev = s.revs[j.ID] // a new manager's writes follow the last one stored
	}
	s.mu.Unlock()
	return out, err
}

// v1Job is schema 1: the API's wire form as stored before the version key.
type v1Job struct {
	ID   string `json:"id"`
	Spec struct {
		Name     string            `json:"name"`
		Image    string            `json:"image"`
		Command  []string          `json:"command"`
		Nodes    int               `json:"nodes"`
		AppURL   string            `json:"app_url"`
		DataURL  string            `json:"data_url"`
		TrainURL string            `json:"train_url"`
		LogURL   string            `json:"log_url"`
		Env      map[string]string `json:"env"`
		Flavor   struct {
			CPUs   float64 `json:"cpus"`
			Memory int64   `json:"memory"`
			GPUs   int     `json:"gpus"`
		} `json:"flavor"`
		Timeout json.RawMessage `json:"timeout"`
		Policy  string          `json:"policy"`
		Retries int             `json:"retries"`
		Port    int             `json:"port"`
		Keep    bool            `json:"keep"`
	} `json:"spec"`
	Status      string   `json:"status"`
	Reason      string   `json:"reason"`
	ImageRepo   string   `json:"image_repo"`
	ImageDigest string   `json:"image_digest"`
	Audit       []string `json:"audit"`
	Attempt     int      `json:"attempt"`
	Tasks       []struct {
		Index     int       `json:"index"`
		Host      string    `json:"host"`
		Container string    `json:"container"`
		Status    string    `json:"status"`
		ExitCode  *int      `json:"exit_code"`
		GPUs      []string  `json:"gpus"`
		Started   time.Time `json:"started"`
		Finished  time.Time `json:"finished"`
	} `json:"tasks"`
	Events   []Event   `json:"events"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	ExitCode *int      `json:"exit_code"`
}

func decodeV1(b []byte) (*Job, error) {
	var o v1Job
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	var timeout time.Duration
	if len(o.Spec.Timeout) > 0 {
		var s string
		if err := json.Unmarshal(o.Spec.Timeout, &s); err != nil {
			return nil, errors.New("spec.timeout is not a duration string")
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("spec.timeout: %w", err)
		}
		timeout = d
	}
	s := o.Spec
	j := &Job{ID: o.ID, Status: JobStatus(o.Status), Reason: o.Reason, ImageRepo: o.ImageRepo, ImageDigest: o.ImageDigest,
		Audit: o.Audit, Attempt: o.Attempt, Events: o.Events, Created: o.Created, Started: o.Started, Finished: o.Finished, ExitCode: o.ExitCode,
		Spec: Spec{Name: s.Name, Image: s.Image, Command: s.Command, Nodes: s.Nodes, AppURL: s.AppURL, DataURL: s.DataURL, TrainURL: s.TrainURL,
			LogURL: s.LogURL, Env: s.Env, Flavor: Flavor{CPUs: s.Flavor.CPUs, Memory: s.Flavor.Memory, GPUs: s.Flavor.GPUs},
			Timeout: timeout, Policy: Policy(s.Policy), Retries: s.Retries, Port: s.Port, Keep: s.Keep}}
	for _, t := range o.Tasks {
		j.Tasks = append(j.Tasks, Task{Index: t.Index, Host: t.Host, Container: t.Container, Status: TaskStatus(t.Status),
			ExitCode: t.ExitCode, Devices: t.GPUs, Started: t.Started, Finished: t.Finished})
	}
	return j, nil
}
