package netguard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve starts a guarded server on loopback and returns its address.
func serve(t *testing.T, b *Budget, max int, l Limits, h http.Handler) (string, *Listener) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.Listen(raw, "test", max, nil)
	srv := NewServer(h, l)
	go Serve(srv, ln)
	t.Cleanup(func() { srv.Close() })
	return raw.Addr().String(), ln
}

func ok(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }

// get sends one GET on c and returns the status line.
func get(t *testing.T, c net.Conn) string {
	t.Helper()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Status
}

// closedWithin reports how long until the server closed c (reads EOF or a
// reset), failing if it stays open past d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s", d)
	}
	return time.Since(start)
}

// refused dials addr and checks that the connection is reset or closed at
// once, never left to hang.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial: %v", err)
		}
		return
	}
	defer c.Close()
	if d := closedWithin(t, c, 3*time.Second); d > 2*time.Second {
		t.Errorf("the connection over the bound took %s to be closed", d)
	}
}

// busy is a handler that holds each request until release is closed.
func busy(entered chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	})
}

// startBusy opens a connection whose request the handler holds.
func startBusy(t *testing.T, addr string, entered <-chan struct{}) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("request not served")
	}
	return c
}

func TestBusyListenerRefusesAtAccept(t *testing.T) {
	entered, release := make(chan struct{}, 10), make(chan struct{})
	addr, ln := serve(t, newBudget(1<<20, 0), 3, Limits{}, busy(entered, release))
	var held []net.Conn
	for i := 0; i < 3; i++ {
		held = append(held, startBusy(t, addr, entered))
	}
	refused(t, addr)
	if ln.Refused() != 1 || ln.Open() != 3 || ln.Evicted() != 0 {
		t.Errorf("refused %d, open %d, evicted %d; want 1, 3, 0", ln.Refused(), ln.Open(), ln.Evicted())
	}
	close(release)
	// The busy ones finish their requests.
	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held conn %d: %v %v", i, resp, err)
		}
	}
}

func TestIdleConnectionEvictedForANewOne(t *testing.T) {
	addr, ln := serve(t, newBudget(1<<20, 0), 3, Limits{}, http.HandlerFunc(ok))
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := get(t, c); got != "200 OK" {
			t.Fatalf("conn %d: %s", i, got)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := get(t, c); got != "200 OK" {
		t.Fatalf("a new connection at the bound: %s", got)
	}
	if ln.Evicted() != 1 || ln.Refused() != 0 || ln.Open() != 3 {
		t.Errorf("evicted %d, refused %d, open %d; want 1, 0, 3", ln.Evicted(), ln.Refused(), ln.Open())
	}
	closed := 0
	for _, h := range held {
		h.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := h.Read(make([]byte, 1)); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				closed++
			}
		}
	}
	if closed != 1 {
		t.Errorf("%d idle connections closed, want 1", closed)
	}
}

func TestBudgetSharedAcrossListeners(t *testing.T) {
	b := &Budget{total: 2}
	entered, release := make(chan struct{}, 10), make(chan struct{})
	defer close(release)
	a1, l1 := serve(t, b, 10, Limits{}, busy(entered, release))
	a2, l2 := serve(t, b, 10, Limits{}, busy(entered, release))
	startBusy(t, a1, entered)
	startBusy(t, a2, entered)
	refused(t, a1)
	if l1.Refused() != 1 || l2.Refused() != 0 || b.Open() != 2 {
		t.Errorf("refused %d/%d, budget open %d", l1.Refused(), l2.Refused(), b.Open())
	}
}

func TestBudgetKeepsReserve(t *testing.T) {
	for _, tc := range []struct {
		limit, reserve     int64
		total, perListener int
	}{
		{1024, 1024, 512, 64},         // half kept at most
		{20000, 1024, 17500, 2187},    // an eighth is more than the reserve
		{1 << 20, 1024, 917504, 8192}, // capped per listener
	} {
		b := newBudget(tc.limit, tc.reserve)
		if b.Total() != tc.total || b.PerListener() != tc.perListener {
			t.Errorf("limit %d: total %d per listener %d; want %d %d", tc.limit, b.Total(), b.PerListener(), tc.total, tc.perListener)
		}
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	addr, ln := serve(t, newBudget(1<<20, 0), 10, Limits{IdleTimeout: 300 * time.Millisecond}, http.HandlerFunc(ok))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get(t, c)
	if d := closedWithin(t, c, 5*time.Second); d < 200*time.Millisecond {
		t.Errorf("closed after %s, before the idle timeout", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for ln.Open() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ln.Open() != 0 {
		t.Errorf("listener still counts %d open", ln.Open())
	}
}

func TestSilentConnectionClosed(t *testing.T) {
	addr, _ := serve(t, newBudget(1<<20, 0), 10, Limits{HeaderTimeout: 300 * time.Millisecond}, http.HandlerFunc(ok))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closedWithin(t, c, 5*time.Second)
}

func TestSlowHeadersCutOff(t *testing.T) {
	addr, _ := serve(t, newBudget(1<<20, 0), 10, Limits{HeaderTimeout: 500 * time.Millisecond}, http.HandlerFunc(ok))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	req := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
	for i := 0; i < len(req); i++ {
		if _, err := c.Write([]byte{req[i]}); err != nil {
			break // cut off
		}
		time.Sleep(50 * time.Millisecond)
	}
	closedWithin(t, c, 5*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a byte-a-time header held the connection %s", d)
	}
}

func TestSlowBodyCutOff(t *testing.T) {
	got := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		io.WriteString(w, "ok")
	})
	addr, _ := serve(t, newBudget(1<<20, 0), 10, Limits{BodyGrace: 300 * time.Millisecond, MinBodyRate: 10}, h)

	// A steady body faster than the rate passes.
	resp, err := http.Post("http://"+addr, "text/plain", strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || <-got != nil {
		t.Fatalf("fast body: %s", resp.Status)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	start := time.Now()
	go func() {
		for i := 0; i < 1000; i++ {
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond) // 5 bytes/s
		}
	}()
	select {
	case err := <-got:
		if !errors.Is(err, ErrSlowBody) {
			t.Fatalf("handler read %v, want ErrSlowBody", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a byte-a-time body was not cut off")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut off after %s", d)
	}
}

func TestRaiseFileLimit(t *testing.T) {
	n, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if n != FileLimit() || n == 0 {
		t.Errorf("raised to %d, limit now %d", n, FileLimit())
	}
}
