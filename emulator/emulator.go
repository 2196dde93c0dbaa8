package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/netguard"
	"github.com/malocal/malocal/webui"
)

// service is one listener of the emulator.
type service struct {
	name    string // "api", "s3", "registry"
	title   string // for people: "API and console"
	flag    string // the flag that changes its address
	env     string // the environment variable that does
	addr    string
	handler http.Handler
	ready   bool // set once the service's handler is in place
	ln      net.Listener
	srv     *http.Server
}

func (s *service) url() string { return "http://" + s.ln.Addr().String() }

// Emulator is a running `malocal up`.
type Emulator struct {
	cfg      Config
	dd       *DataDir
	lock     *Lock
	log      *slog.Logger
	started  time.Time
	services []*service
	svc      services
	errc     chan error
	guard    guard
	closeMu  sync.Mutex
	closed   bool
}

// Start takes the data dir, binds every listener and starts serving. Any
// failure undoes what was done, so a refused start leaves nothing behind.
func Start(ctx context.Context, cfg Config) (_ *Emulator, err error) {
	cfg.defaults()
	dd, err := EnsureDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	lock, err := LockDataDir(dd)
	if err != nil {
		return nil, err
	}
	e := &Emulator{cfg: cfg, dd: dd, lock: lock, log: cfg.Logger, started: time.Now().UTC(), errc: make(chan error, 4)}
	e.guard = newGuard(cfg, e.log)
	defer func() {
		if err != nil {
			e.closeListeners()
			lock.Close()
		}
	}()
	token, err := dd.Token()
	if err != nil {
		return nil, err
	}
	e.services = []*service{
		{name: "api", title: "API and console", flag: "--api-addr", env: "MALOCAL_API_ADDR", addr: cfg.APIAddr},
		{name: "s3", title: "S3 API (object store)", flag: "--s3-addr", env: "MALOCAL_S3_ADDR", addr: cfg.S3Addr},
		{name: "registry", title: "registry", flag: "--registry-addr", env: "MALOCAL_REGISTRY_ADDR", addr: cfg.RegistryAddr},
	}
	for _, s := range e.services {
		if err := e.listen(ctx, s); err != nil {
			return nil, err
		}
	}
	// The services open after the listeners bind: jobs need their addresses.
	if err := e.openServices(ctx); err != nil {
		return nil, err
	}
	creds, err := dd.Credentials()
	if err != nil {
		return nil, err
	}
	objects, err := newObjectsAPI(e.service("s3").url(), creds)
	if err != nil {
		return nil, err
	}
	apiSrv := api.NewServer(apiBackend{Emulator: e, ImageBackend: e.svc.reg.APIBackend(), jobsAPI: jobsAPI{e.svc.jobs, e.svc.metrics},
		auditAPI: e.auditAPI(), objectsAPI: objects, metricsAPI: e.metricsAPI()}, token)
	revoked, err := openRevokedSessions(dd)
	if err != nil {
		return nil, err
	}
	apiSrv.SetRevokedSessions(revoked)
	// The console's files at /, the API under its prefix, on one origin.
	console := http.NewServeMux()
	console.Handle(api.Prefix+"/", apiSrv)
	console.Handle("/", webui.Handler())
	handlers := map[string]http.Handler{
		"api":      console,
		"s3":       e.svc.obs.Handler(),
		"registry": e.svc.reg.Handler(),
	}
	for _, s := range e.services {
		s.handler, s.ready = handlers[s.name], true
		if h, ok := cfg.handlers[s.name]; ok {
			s.handler = h
		}
	}
	if err := dd.WriteRuntime(e.runtime()); err != nil {
		return nil, fmt.Errorf("recording runtime info: %w", err)
	}
	for _, s := range e.services {
		s.srv = e.guard.server(logRequests(e.log, s.name, s.handler))
		s.srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
		ln := e.guard.listener(s.ln, s.name)
		go func(s *service) {
			if err := netguard.Serve(s.srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.errc <- fmt.Errorf("%s on %s: %w", s.title, s.ln.Addr(), err)
			}
		}(s)
		e.log.Info("listening", "service", s.name, "url", s.url())
		if s.name == "api" {
			// A one-time link: opened once, it signs the browser in.
			e.log.Info("console", "login_url", s.url()+apiSrv.NewLoginLink().Path, "hint", "open it in a browser; `malocal ui` prints a new one")
		}
		if !isLoopback(s.ln.Addr()) {
			e.log.Warn("listening beyond loopback: anyone who can reach this address can use the service", "service", s.name, "addr", s.ln.Addr().String())
		}
	}
	return e, nil
}

func (e *Emulator) listen(ctx context.Context, s *service) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("the %s address %s is already in use: pick another with %s or %s", s.title, s.addr, s.flag, s.env)
		}
		return fmt.Errorf("listening for the %s on %s (change it with %s or %s): %w", s.title, s.addr, s.flag, s.env, err)
	}
	s.ln = ln
	return nil
}

// guard is what every listener of the emulator is served with: one
// connection budget across them all, a cap per listener, and timeouts.
type guard struct {
	budget   *netguard.Budget
	maxConns int
	limits   netguard.Limits
	log      *slog.Logger
}

// newGuard raises the open-file limit to the hard one, so that the
// connection bounds leave the process headroom, and sizes them.
func newGuard(cfg Config, log *slog.Logger) guard {
	n, err := netguard.RaiseFileLimit()
	if err != nil {
		log.Warn("could not raise the open-file limit; connection bounds are sized to the current one", "err", err)
	}
	g := guard{budget: netguard.NewBudget(netguard.DefaultReserve), maxConns: cfg.MaxConns,
		limits: netguard.Limits{IdleTimeout: cfg.IdleTimeout}, log: log}
	if g.maxConns <= 0 {
		g.maxConns = g.budget.PerListener()
	}
	log.Debug("connection bounds", "open_file_limit", n, "per_listener", g.maxConns, "all_listeners", g.budget.Total())
	return g
}

func (g guard) listener(ln net.Listener, name string) *netguard.Listener {
	return g.budget.Listen(ln, name, g.maxConns, g.log)
}

func (g guard) server(h http.Handler) *http.Server { return netguard.NewServer(h, g.limits) }

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (e *Emulator) runtime() Runtime {
	r := Runtime{PID: os.Getpid(), Started: e.started, Version: e.cfg.Version}
	for _, s := range e.services {
		switch s.name {
		case "api":
			r.API = s.ln.Addr().String()
		case "s3":
			r.S3 = s.ln.Addr().String()
		case "registry":
			r.Registry = s.ln.Addr().String()
		}
	}
	return r
}

// Runtime returns the addresses the emulator listens on.
func (e *Emulator) Runtime() Runtime { return e.runtime() }

// DataDir returns the emulator's data dir.
func (e *Emulator) DataDir() *DataDir { return e.dd }

// Status implements api.Backend.
func (e *Emulator) Status(context.Context) (api.Status, error) {
	st := api.Status{Version: e.cfg.Version, DataDir: e.dd.Path, PID: os.Getpid(), Started: e.started}
	for _, s := range e.services {
		st.Services = append(st.Services, api.ServiceStatus{
			Name: s.name, Address: s.ln.Addr().String(), URL: s.url(), Ready: s.ready,
		})
	}
	return st, nil
}

// Wait serves until ctx ends or a listener fails, then shuts down.
func (e *Emulator) Wait(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
		e.log.Info("shutting down", "deadline", e.cfg.ShutdownTimeout.String())
	case serveErr = <-e.errc:
		e.log.Error("listener failed, shutting down", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ShutdownTimeout)
	defer cancel()
	if err := e.Shutdown(sctx); err != nil {
		e.log.Warn("in-flight requests cut at the shutdown deadline", "err", err)
	}
	return serveErr
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes what is left and releases the data dir.
func (e *Emulator) Shutdown(ctx context.Context) error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.dd.removeRuntime()
	var wg sync.WaitGroup
	errs := make([]error, len(e.services))
	for i, s := range e.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Shutdown(ctx); err != nil {
				s.srv.Close()
				errs[i] = fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	wg.Wait()
	e.closeServices(ctx)
	e.lock.Close()
	e.log.Info("stopped")
	return errors.Join(errs...)
}

func (e *Emulator) closeListeners() {
	for _, s := range e.services {
		if s.ln != nil {
			s.ln.Close()
		}
	}
}
