package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
)

func TestTopRows(t *testing.T) {
	now := time.Now()
	rows := topRows([]api.MetricSample{
		{Time: now, Task: 0, CPU: 0.98, CPULimit: 2, Memory: 300 << 20, MemoryLimit: 1 << 30, NetRx: 2048, NetTx: 10,
			GPUs: []api.GPUSample{{Index: 0, Util: 87, Memory: 2 << 30}}},
		{Task: 1},
	}, 3*time.Second)
	if len(rows) != 2 {
		t.Fatalf("rows: %v", rows)
	}
	got := strings.Join(rows[0], "|")
	for _, want := range []string{"0.98 / 2", "49%", "300.0 MiB / 1.0 GiB", "29%", "2.0 KiB", "0:87% 2.0 GiB"} {
		if !strings.Contains(got, want) {
			t.Errorf("task 0 row %q lacks %q", got, want)
		}
	}
	if rows[1][1] != "-" || rows[1][8] != "no sample yet" {
		t.Errorf("task without a sample: %v", rows[1])
	}
	old := topRows([]api.MetricSample{{Time: now.Add(-time.Minute), CPULimit: 1}}, 3*time.Second)
	if !strings.Contains(old[0][8], "ago") {
		t.Errorf("a stale sample does not say how old it is: %v", old[0])
	}
}
