package dockerbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// pidsWatch remembers whether a task's processes reached its container's
// pids limit. A fork refused there shows only as the task's own error
// exit ("can't fork: Resource temporarily unavailable"), so the engine's
// stats stream is followed while the task runs and the exit reason names
// the limit.
type pidsWatch struct {
	limit atomic.Int64 // the limit, once a sample was at it; 0: never
}

// follow reads the engine's stats stream of container id (a sample a
// second) until ctx ends or the stream does. Without the stream the task
// runs as before, only without this reason.
func (w *pidsWatch) follow(ctx context.Context, eng Engine, id string) {
	res, err := eng.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: true})
	if err != nil {
		return
	}
	defer res.Body.Close()
	w.read(res.Body)
}

// read takes samples from a stats stream until it ends.
func (w *pidsWatch) read(r io.Reader) {
	dec := json.NewDecoder(r)
	for {
		var st container.StatsResponse
		if err := dec.Decode(&st); err != nil {
			return
		}
		// One short counts: the process whose fork was refused usually
		// exits at once (a shell does), so the count rests there.
		if p := st.PidsStats; p.Limit > 0 && p.Current > 0 && p.Current+1 >= p.Limit {
			w.limit.Store(int64(p.Limit))
		}
	}
}

// reason is the exit reason of a task that failed with code after its
// processes reached the limit; "" when they never did.
func (w *pidsWatch) reason(code int) string {
	n := w.limit.Load()
	if n == 0 || code == 0 {
		return ""
	}
	return fmt.Sprintf("processes reached their limit of %d (--pids-limit), where new ones cannot start; it exited with code %d", n, code)
}
