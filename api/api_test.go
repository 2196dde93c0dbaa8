package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

type fakeBackend struct{ err error }

func (f fakeBackend) Status(context.Context) (Status, error) {
	return Status{Version: "v", Services: []ServiceStatus{{Name: "api", Ready: true}}}, f.err
}

func TestClientServerRoundTrip(t *testing.T) {
	srv := httptest.NewServer(NewServer(fakeBackend{}, "tok"))
	defer srv.Close()
	st, err := NewClient(srv.URL, "tok").Status(context.Background())
	if err != nil || st.Version != "v" || len(st.Services) != 1 {
		t.Fatalf("Status: %+v %v", st, err)
	}
}

func TestErrorClassesMapBothWays(t *testing.T) {
	for _, c := range classes {
		srv := httptest.NewServer(NewServer(fakeBackend{err: fmt.Errorf("thing %q: %w", "x", c.err)}, "tok"))
		_, err := NewClient(srv.URL, "tok").Status(context.Background())
		srv.Close()
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != c.status || re.Code != c.code || !errors.Is(err, c.err) {
			t.Errorf("%v: got %v (%+v)", c.err, err, re)
		}
	}
	if code, status := statusOf(errors.New("boom")); code != "internal" || status != http.StatusInternalServerError {
		t.Errorf("unclassified error: %s %d", code, status)
	}
}

func TestUnknownRouteIsJSON404(t *testing.T) {
	srv := httptest.NewServer(NewServer(fakeBackend{}, "tok"))
	defer srv.Close()
	c := NewClient(srv.URL, "tok")
	err := c.do(context.Background(), http.MethodGet, "/nope", nil, nil)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown route: %v", err)
	}
}

func TestUnreachableSaysHowToStart(t *testing.T) {
	_, err := NewClient("127.0.0.1:1", "t").Status(context.Background())
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("unreachable: %v", err)
	}
}
