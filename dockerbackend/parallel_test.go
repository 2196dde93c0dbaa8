package dockerbackend

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/jobs"
)

// gateEngine is an engine whose ContainerCreate and ContainerRemove each
// wait until n calls are in flight together, so a test hangs (and fails on
// its deadline) unless the backend makes them at once.
type gateEngine struct {
	Engine // the calls a test does not use: nil, they panic
	n      int
	failOn int // task index whose create fails; -1: none

	mu       sync.Mutex
	inFlight int
	all      chan struct{}
	created  []string
	removed  []string
	netGone  bool
}

func newGateEngine(n int) *gateEngine {
	return &gateEngine{n: n, failOn: -1, all: make(chan struct{})}
}

// gate counts a call in and waits for the n-th.
func (e *gateEngine) gate(ctx context.Context) error {
	e.mu.Lock()
	e.inFlight++
	if e.inFlight == e.n {
		close(e.all)
	}
	e.mu.Unlock()
	select {
	case <-e.all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *gateEngine) ContainerCreate(ctx context.Context, o client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	if err := e.gate(ctx); err != nil {
		return client.ContainerCreateResult{}, err
	}
	if o.Config.Labels[jobs.LabelTask] == fmt.Sprint(e.failOn) {
		return client.ContainerCreateResult{}, errors.New("no space left")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.created = append(e.created, o.Name)
	return client.ContainerCreateResult{ID: "id-" + o.Config.Labels[jobs.LabelTask]}, nil
}

func (e *gateEngine) ContainerList(context.Context, client.ContainerListOptions) (client.ContainerListResult, error) {
	var r client.ContainerListResult
	for i := range e.n {
		r.Items = append(r.Items, container.Summary{ID: fmt.Sprint("id-", i)})
	}
	return r, nil
}

func (e *gateEngine) ContainerRemove(ctx context.Context, id string, _ client.ContainerRemoveOptions) (client.ContainerRemoveResult, error) {
	if err := e.gate(ctx); err != nil {
		return client.ContainerRemoveResult{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removed = append(e.removed, id)
	return client.ContainerRemoveResult{}, nil
}

func (e *gateEngine) NetworkRemove(context.Context, string, client.NetworkRemoveOptions) (client.NetworkRemoveResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.removed) != e.n {
		return client.NetworkRemoveResult{}, errors.New("network still in use")
	}
	e.netGone = true
	return client.NetworkRemoveResult{}, nil
}

// createdReporter records Created calls; the rest do nothing.
type createdReporter struct {
	jobs.Reporter
	mu      sync.Mutex
	created map[int]string
}

func (r *createdReporter) Created(i int, id string, _ []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.created[i] = id
}

func TestCreateMakesTheContainersAtOnceInTaskOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 4
	eng := newGateEngine(n)
	b := New(Config{Engine: eng})
	r := &createdReporter{created: map[int]string{}}
	var fresh []newTask
	for i := range n {
		fresh = append(fresh, newTask{i: i})
	}
	tasks, err := b.create(ctx, testJob(n, 0), r, contract, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != n {
		t.Fatalf("%d tasks, want %d", len(tasks), n)
	}
	for k, tk := range tasks {
		if tk.i != k || tk.id != fmt.Sprint("id-", k) || !tk.fresh || r.created[k] != tk.id {
			t.Errorf("task %d: %+v, reported %q", k, tk, r.created[k])
		}
	}
}

func TestCreateReturnsWhatItMadeWithTheError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eng := newGateEngine(3)
	eng.failOn = 1
	b := New(Config{Engine: eng})
	r := &createdReporter{created: map[int]string{}}
	tasks, err := b.create(ctx, testJob(3, 0), r, contract, []newTask{{i: 0}, {i: 1}, {i: 2}})
	if err == nil || err.Error() != "creating task 1's container: no space left" {
		t.Errorf("err %v", err)
	}
	var got []int
	for _, tk := range tasks {
		got = append(got, tk.i)
	}
	if fmt.Sprint(got) != "[0 2]" {
		t.Errorf("tasks made %v, want [0 2] (to be stopped and removed)", got)
	}
}

func TestCleanupRemovesTheContainersAtOnceThenTheNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 4
	eng := newGateEngine(n)
	b := New(Config{Engine: eng})
	if err := b.Cleanup(ctx, testJob(n, 0)); err != nil {
		t.Fatal(err)
	}
	sort.Strings(eng.removed)
	if fmt.Sprint(eng.removed) != "[id-0 id-1 id-2 id-3]" || !eng.netGone {
		t.Errorf("removed %v, network removed %v", eng.removed, eng.netGone)
	}
}
