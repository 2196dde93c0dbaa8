package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"

	"github.com/malocal/malocal/netguard"
)

// gateways serves the S3 API on the gateway address of each job network,
// so containers reach the object store there; the main listener stays on
// loopback. Listeners are counted by use and closed when the last job on
// that gateway releases it.
type gateways struct {
	log     *slog.Logger
	handler http.Handler
	port    int // the loopback S3 port, tried first so URLs look alike
	guard   guard

	mu   sync.Mutex
	open map[string]*gatewayListener
}

type gatewayListener struct {
	srv      *http.Server
	endpoint string
	users    int
}

// OpenS3 implements jobs.Gateways.
func (g *gateways) OpenS3(ctx context.Context, ip string, port int) (string, func(), error) {
	if net.ParseIP(ip) == nil {
		return "", nil, fmt.Errorf("gateway %q is not an IP address", ip)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.open[ip]; l != nil {
		l.users++
		return l.endpoint, g.releaser(ip), nil
	}
	var lc net.ListenConfig
	if port == 0 {
		port = g.port
	}
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if errors.Is(err, syscall.EADDRINUSE) {
		ln, err = lc.Listen(ctx, "tcp", net.JoinHostPort(ip, "0"))
	}
	if err != nil {
		return "", nil, fmt.Errorf("listening on the job network's gateway %s: %w", ip, err)
	}
	l := &gatewayListener{
		srv:      g.guard.server(logRequests(g.log, "s3", g.handler)),
		endpoint: "http://" + ln.Addr().String(),
		users:    1,
	}
	go netguard.Serve(l.srv, g.guard.listener(ln, "s3 gateway "+ip))
	g.open[ip] = l
	g.log.Info("listening", "service", "s3", "url", l.endpoint, "for", "job network")
	return l.endpoint, g.releaser(ip), nil
}

func (g *gateways) releaser(ip string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			l := g.open[ip]
			if l == nil {
				return
			}
			if l.users--; l.users == 0 {
				delete(g.open, ip)
				l.srv.Close()
			}
		})
	}
}

// closeAll stops every gateway listener.
func (g *gateways) closeAll(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for ip, l := range g.open {
		if err := l.srv.Shutdown(ctx); err != nil {
			l.srv.Close()
		}
		delete(g.open, ip)
	}
}
