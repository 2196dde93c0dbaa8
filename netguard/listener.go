package netguard

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReserve is how many file descriptors a Budget keeps, at least,
// for everything that is not a client connection: object and blob files,
// the job store, the Docker engine's socket, log files.
const DefaultReserve = 1024

// maxPerListener caps one listener however high the file limit is: enough
// for any honest local use, and a flood stops there.
const maxPerListener = 8192

// listenerShares is how many listeners' caps the budget is split into: the
// API, the S3 API, the registry and room for job gateways.
const listenerShares = 8

// Budget is the number of client connections the process may hold open
// across all its listeners: the open-file limit less a reserve.
type Budget struct {
	total int64
	open  atomic.Int64
}

// NewBudget sizes a budget from the current soft open-file limit (raise
// it first with RaiseFileLimit), keeping reserve descriptors, or an eighth
// of the limit if that is more, for the rest of the process; never more
// than half the limit.
func NewBudget(reserve int) *Budget {
	return newBudget(int64(FileLimit()), int64(reserve))
}

func newBudget(limit, reserve int64) *Budget {
	reserve = min(max(reserve, limit/8), limit/2)
	return &Budget{total: max(limit-reserve, listenerShares)}
}

// Total is how many connections all listeners together may hold.
func (b *Budget) Total() int { return int(b.total) }

// Open is how many connections the budget's listeners hold now.
func (b *Budget) Open() int { return int(b.open.Load()) }

// PerListener is the default cap of one listener: a share of the budget,
// at most 8192.
func (b *Budget) PerListener() int {
	return int(min(max(b.total/listenerShares, 1), maxPerListener))
}

func (b *Budget) take() bool {
	if b.open.Add(1) > b.total {
		b.open.Add(-1)
		return false
	}
	return true
}

func (b *Budget) give() { b.open.Add(-1) }

// Listen wraps ln so that it holds at most max connections, and no more
// than the budget has left; a connection over either bound is closed as
// soon as it is accepted. Refusals are logged at most every 10 seconds,
// with their count, under name.
func (b *Budget) Listen(ln net.Listener, name string, max int, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, budget: b, max: int64(max), name: name, log: log, idle: map[*conn]struct{}{}}
}

// Listener is a listener with a connection bound.
type Listener struct {
	net.Listener
	budget *Budget
	max    int64
	name   string
	log    *slog.Logger

	open     atomic.Int64
	refused  atomic.Int64
	evicted  atomic.Int64
	idleMu   sync.Mutex
	idle     map[*conn]struct{} // connections waiting for a request
	logMu    sync.Mutex
	lastLog  time.Time
	unlogged int64
}

// Open is how many connections the listener holds now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Refused is how many connections the listener closed at accept.
func (l *Listener) Refused() int { return int(l.refused.Load()) }

// Evicted is how many idle connections the listener closed to make room.
func (l *Listener) Evicted() int { return int(l.evicted.Load()) }

// Accept returns the next connection within the bounds. At the bound, a
// connection that waits for a request (never sent one, or kept alive
// after one) is closed to make room, as its idle timeout would have; if
// every connection is busy, the new one is closed at once.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit() || (l.evictIdle() && l.admit()) {
			return &conn{Conn: c, l: l}, nil
		}
		l.refuse(c)
	}
}

func (l *Listener) admit() bool {
	if l.open.Add(1) <= l.max && l.budget.take() {
		return true
	}
	l.open.Add(-1)
	return false
}

// ConnState must be the http.Server's ConnState hook: it tells the
// listener which connections wait for a request.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) {
	gc, ok := c.(*conn)
	if !ok {
		return
	}
	l.idleMu.Lock()
	defer l.idleMu.Unlock()
	if s == http.StateNew || s == http.StateIdle {
		l.idle[gc] = struct{}{}
	} else {
		delete(l.idle, gc)
	}
}

func (l *Listener) evictIdle() bool {
	l.idleMu.Lock()
	var victim *conn
	for c := range l.idle {
		victim = c
		break
	}
	delete(l.idle, victim)
	l.idleMu.Unlock()
	if victim == nil {
		return false
	}
	victim.Close()
	l.evicted.Add(1)
	return true
}

func (l *Listener) refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // a reset: no TIME_WAIT kept for a flood
	}
	c.Close()
	l.refused.Add(1)
	l.logMu.Lock()
	defer l.logMu.Unlock()
	l.unlogged++
	if now := time.Now(); now.Sub(l.lastLog) >= 10*time.Second {
		l.log.Warn("too many connections: refusing new ones", "listener", l.name,
			"open", l.open.Load(), "max", l.max, "budget_open", l.budget.Open(), "budget", l.budget.total, "refused", l.unlogged)
		l.lastLog, l.unlogged = now, 0
	}
}

type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.budget.give()
	})
	return err
}
