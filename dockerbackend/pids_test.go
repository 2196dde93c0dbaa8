package dockerbackend

import (
	"strings"
	"testing"
)

// The engine's stats stream: samples below the limit say nothing; one at
// it, or one short of it (where the count rests once the process whose
// fork was refused exited), names the limit in the reason of a failed
// exit only.
func TestPidsWatchReason(t *testing.T) {
	var below, at pidsWatch
	below.read(strings.NewReader(`{"pids_stats":{"current":3,"limit":64}}{"pids_stats":{"current":62,"limit":64}}`))
	if r := below.reason(2); r != "" {
		t.Errorf("below the limit: reason %q", r)
	}
	at.read(strings.NewReader(`{"pids_stats":{"current":12,"limit":64}}{"pids_stats":{"current":63,"limit":64}}{"pids_stats":{"current":1,"limit":64}}{"read":`))
	if r := at.reason(2); !strings.Contains(r, "limit of 64 (--pids-limit)") || !strings.Contains(r, "code 2") {
		t.Errorf("at the limit: reason %q", r)
	}
	if r := at.reason(0); r != "" {
		t.Errorf("a successful exit: reason %q", r)
	}
	var unbounded pidsWatch
	unbounded.read(strings.NewReader(`{"pids_stats":{"current":5000}}`))
	if r := unbounded.reason(1); r != "" {
		t.Errorf("no limit: reason %q", r)
	}
}
