package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// revokedSessionsFile keeps the console sessions signed out before their
// expiry, so a copy of such a cookie stays worthless across a restart.
const revokedSessionsFile = "revoked-sessions.json"

// revokedSessions implements api.RevokedSessions over a file of the data
// dir (0600); expired entries are dropped as it is rewritten.
type revokedSessions struct {
	path string
	mu   sync.Mutex
	ids  map[string]time.Time
}

func openRevokedSessions(d *DataDir) (*revokedSessions, error) {
	r := &revokedSessions{path: d.Sub(revokedSessionsFile), ids: map[string]time.Time{}}
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading signed-out console sessions: %w", err)
	}
	if err := json.Unmarshal(b, &r.ids); err != nil {
		return nil, fmt.Errorf("parsing %s: %w (remove it to start afresh; signed-out cookies then work again until they expire)", r.path, err)
	}
	return r, nil
}

func (r *revokedSessions) Revoke(id string, until time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for k, e := range r.ids {
		if now.After(e) {
			delete(r.ids, k)
		}
	}
	r.ids[id] = until.UTC()
	if err := writeJSON(r.path, r.ids, 0o600); err != nil {
		delete(r.ids, id)
		return fmt.Errorf("recording the sign-out: %w", err)
	}
	return nil
}

func (r *revokedSessions) IsRevoked(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}
