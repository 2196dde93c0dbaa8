package metrics

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
)

func sample(task int, t0 time.Time, i int, cpu float64) api.MetricSample {
	return api.MetricSample{Time: t0.Add(time.Duration(i) * time.Second), Task: task, CPU: cpu, CPULimit: 2,
		Memory: int64(i) << 20, MemoryLimit: 1 << 30, NetRx: int64(i) * 100, NetTx: int64(i) * 10}
}

// Samples are kept in time order across tasks and survive reopening the
// store (an emulator restart), and since filters them.
func TestStoreKeepsSamplesAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := 0; i < 5; i++ {
		for task := 0; task < 2; task++ {
			if err := st.Add("job-1", sample(task, t0, i, float64(1-task))); err != nil {
				t.Fatal(err)
			}
		}
	}
	st2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st2.Get("job-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Samples) != 10 {
		t.Fatalf("got %d samples after reopening, want 10", len(m.Samples))
	}
	for i := 1; i < len(m.Samples); i++ {
		if m.Samples[i].Time.Before(m.Samples[i-1].Time) {
			t.Fatalf("samples out of time order at %d", i)
		}
	}
	last := m.Latest()
	if len(last) != 2 || last[0].CPU != 1 || last[1].CPU != 0 || !last[0].Time.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("latest = %+v", last)
	}
	m, _ = st2.Get("job-1", t0.Add(3*time.Second))
	if len(m.Samples) != 2 {
		t.Fatalf("since: got %d samples, want the 2 of the last second", len(m.Samples))
	}
	// A line cut short by a crash is skipped, the others still count.
	f, _ := os.OpenFile(filepath.Join(dir, "job-1.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-01-02T03:0`)
	f.Close()
	st3, _ := Open(dir)
	if m, err := st3.Get("job-1", time.Time{}); err != nil || len(m.Samples) != 10 {
		t.Fatalf("after a torn line: %v, %d samples", err, len(m.Samples))
	}
	if m, err := st3.Get("never-ran", time.Time{}); err != nil || len(m.Samples) != 0 {
		t.Fatalf("a job without samples: %v %+v", err, m)
	}
}

// A long job is downsampled: no task keeps more than the maximum, the
// whole time range is still covered, and the file shrinks with it.
func TestStoreDownsamplesLongJobs(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, WithMaxSamples(10))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 100; i++ {
		if err := st.Add("long", sample(0, t0, i, float64(i%2))); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := st.Get("long", time.Time{})
	if n := len(m.Samples); n > 10 || n < 5 {
		t.Fatalf("kept %d samples, want between 5 and 10", n)
	}
	if got := m.Samples[len(m.Samples)-1].Time; !got.Equal(t0.Add(99 * time.Second)) {
		t.Fatalf("last sample at %s, want the newest", got)
	}
	// Averaging 0,1,0,1… gives about 0.5 once downsampled.
	if c := m.Samples[0].CPU; c < 0.4 || c > 0.6 {
		t.Fatalf("oldest (averaged) CPU = %v, want about 0.5", c)
	}
	st2, _ := Open(dir, WithMaxSamples(10))
	m2, _ := st2.Get("long", time.Time{})
	if len(m2.Samples) != len(m.Samples) {
		t.Fatalf("reopened: %d samples, want %d", len(m2.Samples), len(m.Samples))
	}
	if _, err := Open(dir, WithMaxSamples(1)); err == nil {
		t.Fatal("a maximum of 1 sample was accepted")
	}
}

// Watch replays the stored samples, then sends new ones as they come.
func TestStoreWatch(t *testing.T) {
	st, _ := Open(t.TempDir())
	t0 := time.Now().UTC()
	st.Add("w", sample(0, t0, 0, 1))
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []api.MetricSample
	done := make(chan error)
	go func() {
		done <- st.Watch(ctx, "w", func(m api.MetricSample) error {
			mu.Lock()
			got = append(got, m)
			mu.Unlock()
			return nil
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st.mu.Lock()
		n := len(st.subs["w"])
		st.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st.Add("w", sample(1, t0, 1, 0))
	st.Add("other", sample(0, t0, 1, 0))
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if len(got) != 2 || got[0].Task != 0 || got[1].Task != 1 {
		t.Fatalf("watched %+v, want the stored sample then the new one", got)
	}
	if len(st.subs) != 0 {
		t.Fatal("the watcher was not removed")
	}
}

func TestStoreRejectsBadJobIDs(t *testing.T) {
	st, _ := Open(t.TempDir())
	for _, id := range []string{"../x", "", "a/b", ".hidden"} {
		if _, err := st.Get(id, time.Time{}); err == nil {
			t.Errorf("job id %q accepted", id)
		}
	}
	if err := st.Add("ok", api.MetricSample{Task: -1}); err == nil {
		t.Error("task -1 accepted")
	}
}

func TestStoreDelete(t *testing.T) {
	dir := t.TempDir()
	st, _ := Open(dir)
	st.Add("d", sample(0, time.Now(), 0, 1))
	if err := st.Delete("d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.jsonl")); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
	if m, _ := st.Get("d", time.Time{}); len(m.Samples) != 0 {
		t.Fatal("samples still served after delete")
	}
}

func TestParseNvidiaSMI(t *testing.T) {
	gs, err := parseNvidiaSMI("0, 87, 1234, 81559\r\n1, [N/A], 0, 81559\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[0].Util != 87 || gs[0].Memory != 1234<<20 || gs[0].MemoryTotal != 81559<<20 || gs[1].Index != 1 || gs[1].Util != 0 {
		t.Fatalf("parsed %+v", gs)
	}
	if _, err := parseNvidiaSMI("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\n"); err == nil {
		t.Fatal("an nvidia-smi failure parsed as samples")
	}
}
