package metrics

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/malocal/malocal/api"
)

// DefaultInterval is how often a task is sampled.
const DefaultInterval = 3 * time.Second

// DefaultMaxSamples is how many samples a task keeps before its series is
// halved by averaging neighbours: at DefaultInterval, 50 minutes at full
// resolution; a job of any length stays under this many points per task.
const DefaultMaxSamples = 1000

// maxLoaded is how many jobs' series stay in memory; the others are on
// disk and read again when asked for.
const maxLoaded = 64

// Store keeps every job's samples in memory and in dir/<job>.jsonl (one
// JSON sample a line, appended; rewritten atomically when downsampled).
type Store struct {
	dir      string
	max      int
	interval time.Duration

	mu   sync.Mutex
	jobs map[string]*series
	subs map[string]map[chan api.MetricSample]struct{}
}

type series struct {
	tasks [][]api.MetricSample
	used  time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithMaxSamples sets the samples a task keeps before downsampling (at least 4).
func WithMaxSamples(n int) Option { return func(s *Store) { s.max = n } }

// WithInterval sets the sampling interval the store reports.
func WithInterval(d time.Duration) Option { return func(s *Store) { s.interval = d } }

// Open opens (creating) the store in dir.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{dir: dir, max: DefaultMaxSamples, interval: DefaultInterval,
		jobs: map[string]*series{}, subs: map[string]map[chan api.MetricSample]struct{}{}}
	for _, o := range opts {
		o(s)
	}
	if s.max < 4 {
		return nil, fmt.Errorf("metrics: max samples %d: want at least 4", s.max)
	}
	if s.interval <= 0 {
		return nil, fmt.Errorf("metrics: interval %s: want a positive duration", s.interval)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the metrics dir: %w", err)
	}
	return s, nil
}

// Interval is the sampling interval.
func (s *Store) Interval() time.Duration { return s.interval }

var jobIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (s *Store) path(job string) (string, error) {
	if !jobIDRe.MatchString(job) {
		return "", api.Invalidf("job id %q: want letters, digits, '.', '_' or '-'", job)
	}
	return filepath.Join(s.dir, job+".jsonl"), nil
}

// load returns the job's series, reading its file the first time. s.mu held.
func (s *Store) load(job string) (*series, error) {
	if se, ok := s.jobs[job]; ok {
		se.used = time.Now()
		return se, nil
	}
	p, err := s.path(job)
	if err != nil {
		return nil, err
	}
	se := &series{used: time.Now()}
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading metrics of job %s: %w", job, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m api.MetricSample
		// A line cut short by a crash is skipped; the rest still count.
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Task < 0 || m.Task > 4096 {
			continue
		}
		se.add(m)
	}
	for i := range se.tasks {
		for len(se.tasks[i]) > s.max {
			se.tasks[i] = halve(se.tasks[i])
		}
	}
	s.jobs[job] = se
	s.evict()
	return se, nil
}

// evict drops the least recently used series beyond maxLoaded (they stay
// on disk). s.mu held.
func (s *Store) evict() {
	for len(s.jobs) > maxLoaded {
		var oldest string
		var t time.Time
		for id, se := range s.jobs {
			if _, watched := s.subs[id]; watched {
				continue
			}
			if oldest == "" || se.used.Before(t) {
				oldest, t = id, se.used
			}
		}
		if oldest == "" {
			return
		}
		delete(s.jobs, oldest)
	}
}

func (se *series) add(m api.MetricSample) {
	for len(se.tasks) <= m.Task {
		se.tasks = append(se.tasks, nil)
	}
	se.tasks[m.Task] = append(se.tasks[m.Task], m)
}

// Add records one sample of a job's task and hands it to the job's watchers.
func (s *Store) Add(job string, m api.MetricSample) error {
	if m.Task < 0 {
		return api.Invalidf("task %d: want an index >= 0", m.Task)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	se, err := s.load(job)
	if err != nil {
		return err
	}
	se.add(m)
	for c := range s.subs[job] {
		select {
		case c <- m:
		default: // a slow watcher misses a sample rather than stall sampling
		}
	}
	p, _ := s.path(job)
	if len(se.tasks[m.Task]) > s.max {
		se.tasks[m.Task] = halve(se.tasks[m.Task])
		return writeAll(p, se.all())
	}
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("saving a sample of job %s: %w", job, err)
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("saving a sample of job %s: %w", job, err)
	}
	return nil
}

// all is every task's samples in time order.
func (se *series) all() []api.MetricSample {
	var out []api.MetricSample
	for _, t := range se.tasks {
		out = append(out, t...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Get returns the job's samples taken after since (all when zero).
func (s *Store) Get(job string, since time.Time) (*api.JobMetrics, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, err := s.load(job)
	if err != nil {
		return nil, err
	}
	out := &api.JobMetrics{Job: job, Interval: api.Duration(s.interval), Samples: []api.MetricSample{}}
	for _, m := range se.all() {
		if m.Time.After(since) {
			out.Samples = append(out.Samples, m)
		}
	}
	return out, nil
}

// Watch sends the job's stored samples to fn, then every new one, until
// ctx ends or fn fails. No sample is lost between the two.
func (s *Store) Watch(ctx context.Context, job string, fn func(api.MetricSample) error) error {
	c := make(chan api.MetricSample, 256)
	s.mu.Lock()
	se, err := s.load(job)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	past := se.all()
	if s.subs[job] == nil {
		s.subs[job] = map[chan api.MetricSample]struct{}{}
	}
	s.subs[job][c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs[job], c)
		if len(s.subs[job]) == 0 {
			delete(s.subs, job)
		}
		s.mu.Unlock()
	}()
	for _, m := range past {
		if err := fn(m); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-c:
			if err := fn(m); err != nil {
				return err
			}
		}
	}
}

// Delete removes a job's samples.
func (s *Store) Delete(job string) error {
	p, err := s.path(job)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.jobs, job)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting metrics of job %s: %w", job, err)
	}
	return nil
}

// halve averages each pair of neighbouring samples into one (the later
// one's time, counters and limits; the mean of the gauges).
func halve(in []api.MetricSample) []api.MetricSample {
	out := make([]api.MetricSample, 0, (len(in)+1)/2)
	for i := 0; i < len(in); i += 2 {
		if i+1 == len(in) {
			out = append(out, in[i])
			break
		}
		a, b := in[i], in[i+1]
		m := b
		m.CPU = (a.CPU + b.CPU) / 2
		m.Memory = (a.Memory + b.Memory) / 2
		if len(a.GPUs) == len(b.GPUs) {
			m.GPUs = make([]api.GPUSample, len(b.GPUs))
			for k := range b.GPUs {
				m.GPUs[k] = b.GPUs[k]
				m.GPUs[k].Util = (a.GPUs[k].Util + b.GPUs[k].Util) / 2
				m.GPUs[k].Memory = (a.GPUs[k].Memory + b.GPUs[k].Memory) / 2
			}
		}
		out = append(out, m)
	}
	return out
}

// writeAll replaces the file at p with samples: temp file, fsync, rename,
// fsync of the directory.
func writeAll(p string, samples []api.MetricSample) (err error) {
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", filepath.Base(p), err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, m := range samples {
		if err = enc.Encode(m); err != nil {
			return err
		}
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("rewriting %s: %w", filepath.Base(p), err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
