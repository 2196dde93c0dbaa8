package netguard

import (
	"log/slog"
	"net"
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
	return &Listener{Listener: ln, budget: b, max: int64(max), name: name, log: log}
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
	logMu    sync.Mutex
	lastLog  time.Time
	unlogged int64
}

// Open is how many connections the listener holds now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Refused is how many connections the listener closed at accept.
func (l *Listener) Refused() int { return int(l.refused.Load()) }

// Accept returns the next connection within the bounds, closing those
// over them.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			if l.budget.take() {
				return &conn{Conn: c, l: l}, nil
			}
		}
		l.open.Add(-1)
		l.refuse(c)
	}
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
