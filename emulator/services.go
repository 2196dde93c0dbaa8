package emulator

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/fakeobs"
	"github.com/malocal/malocal/fakeobs/obsclient"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/metrics"
	"github.com/malocal/malocal/registry"
)

// Paths of the services' state in the data dir.
const (
	storeFile   = "store.db"
	jobsDir     = "jobs"
	auditLogDir = "audit/logs"
	// metricsDir holds each job's resource samples, one file per job.
	metricsDir = "metrics"
)

// services are the parts `malocal up` serves; they are opened after the
// listeners are bound (the job runner needs their addresses).
type services struct {
	obs        *fakeobs.Service
	jobKeys    jobCredentials
	reg        *registry.Registry
	store      *jobs.Store
	auditCache *audit.BoltCache
	auditor    *audit.RegistryAuditor
	jobs       *jobs.Manager
	metrics    *metrics.Store
	// sampler samples the containers of Docker jobs: the backend calls
	// its TaskStarted once a task's container runs.
	sampler    *metrics.DockerSampler
	gw         *gateways
	cancelJobs context.CancelFunc
}

func (e *Emulator) openServices(ctx context.Context) (err error) {
	s := &e.svc
	defer func() {
		if err != nil {
			e.closeServices(context.Background())
		}
	}()
	creds, err := e.dd.Credentials()
	if err != nil {
		return err
	}
	keys, err := fakeobs.OpenKeyStore(e.dd.Sub(jobKeysFile))
	if err != nil {
		return err
	}
	s.jobKeys = jobCredentials{keys}
	if s.obs, err = fakeobs.New(e.dd.Sub(ObjectsDir),
		fakeobs.WithCredentials(fakeobs.Credentials{AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region}),
		fakeobs.WithKeyStore(keys),
		fakeobs.WithLogger(e.log.With("service", "s3"))); err != nil {
		return fmt.Errorf("opening the object store: %w", err)
	}
	if s.reg, err = registry.New(e.dd.Sub(RegistryDir), registry.WithLogger(e.log.With("service", "registry")),
		registry.WithQuota(e.cfg.RegistryQuota), registry.WithCredentials(creds.Registry())); err != nil {
		return fmt.Errorf("opening the registry: %w", err)
	}
	if s.store, err = jobs.OpenStore(e.dd.Sub(storeFile)); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(e.dd.Sub(audit.VerdictsFile)), 0o700); err != nil {
		return fmt.Errorf("creating the audit dir: %w", err)
	}
	if err := tightenTree(e.dd.Sub(auditLogDir)); err != nil {
		return fmt.Errorf("making the audit logs private: %w", err)
	}
	if s.auditCache, err = audit.OpenBoltCache(e.dd.Sub(audit.VerdictsFile)); err != nil {
		return fmt.Errorf("opening the audit verdict cache: %w", err)
	}
	if s.metrics, err = metrics.Open(e.dd.Sub(metricsDir)); err != nil {
		return err
	}
	if s.sampler, err = metrics.NewDockerSampler(s.metrics, metrics.WithLogger(e.log.With("service", "metrics"))); err != nil {
		return err
	}
	st, err := e.openJobStores(ctx, creds)
	if err != nil {
		return err
	}
	// The catalog file is read on every audit, so bases that `malocal base
	// build` publishes from another process count at once.
	s.auditor = &audit.RegistryAuditor{
		Source:  st.source,
		Auditor: audit.NewAuditor(audit.CatalogFile(baseimage.OpenCatalog(e.dd.Path).Path()), s.auditCache),
		LogDir:  e.dd.Sub(auditLogDir),
	}
	s3 := e.service("s3")
	_, s3port, _ := net.SplitHostPort(s3.ln.Addr().String())
	port, _ := strconv.Atoi(s3port)
	s.gw = &gateways{log: e.log, handler: s.obs.Handler(), port: port, guard: e.guard, open: map[string]*gatewayListener{}}
	backend, gpus, err := e.jobBackend(ctx, creds, st)
	if err != nil {
		return err
	}
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancelJobs = cancel
	// Each job gets a key of its own on our store; with --external-obs
	// jobs keep the user's keys (malocal cannot make keys there).
	var jobCreds jobs.Credentials
	if e.cfg.ExternalOBS == "" {
		jobCreds = s.jobKeys
	}
	if s.jobs, err = jobs.NewManager(jctx, jobs.Config{
		Credentials: jobCreds,
		Store:       s.store, Backend: backend, LogDir: e.dd.Sub(jobsDir),
		Images: st.images, Buckets: st.buckets, Uploader: st.uploader, Auditor: e.verdicts(),
		Capacity: jobs.Capacity{CPUs: e.cfg.CapacityCPUs, Memory: e.cfg.CapacityMemory, GPUs: gpus},
		Logger:   e.log.With("service", "jobs"),
	}); err != nil {
		return fmt.Errorf("resuming jobs: %w", err)
	}
	// Kubernetes logged its own count.
	if gpus > 0 && e.cfg.Backend != BackendKubernetes {
		e.log.Info("GPUs for jobs", "count", gpus)
	}
	return nil
}

// closeServices detaches from running jobs (their containers go on) and
// closes every service's files.
func (e *Emulator) closeServices(ctx context.Context) {
	s := &e.svc
	if s.cancelJobs != nil {
		s.cancelJobs()
	}
	if s.jobs != nil {
		s.jobs.Shutdown()
	}
	if s.gw != nil {
		s.gw.closeAll(ctx)
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.auditCache != nil {
		s.auditCache.Close()
	}
	if s.reg != nil {
		s.reg.Close()
	}
	if s.obs != nil {
		s.obs.Close()
	}
}

// engineAddr is how the Docker engine reaches the registry: its own
// loopback counts as an insecure registry, so no TLS is needed.
func engineAddr(a net.Addr) string {
	ta := a.(*net.TCPAddr)
	if ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return ta.String()
}

func registryPrefix(a net.Addr) string {
	return "localhost:" + strconv.Itoa(a.(*net.TCPAddr).Port)
}

// imageResolver resolves a job's image in the registry's storage.
type imageResolver struct {
	reg    *registry.Registry
	prefix string
}

func (r imageResolver) Resolve(ctx context.Context, image string) (string, string, error) {
	repo, ref, err := api.ParseImageRef(image)
	if err != nil {
		return "", "", fmt.Errorf("image: %w", err)
	}
	d, err := r.reg.Resolve(ctx, repo, ref)
	if registry.IsNotFound(err) {
		return "", "", api.Invalidf("image: %s is not in malocal's registry; push it first: docker tag IMAGE %s/%s && docker push %s/%s",
			api.FormatImageRef(repo, ref), r.prefix, api.FormatImageRef(repo, ref), r.prefix, api.FormatImageRef(repo, ref))
	}
	if err != nil {
		return "", "", err
	}
	return repo, d.Digest, nil
}

// logUploader copies job logs into the object store through its own
// loopback listener, signed like any client.
type logUploader struct {
	endpoint string
	creds    Credentials
}

func (u logUploader) UploadDir(ctx context.Context, dir, url string) error {
	c, err := obsclient.New(obsclient.Config{Endpoint: u.endpoint, AccessKey: u.creds.AccessKey, SecretKey: u.creds.SecretKey, Region: u.creds.Region})
	if err != nil {
		return err
	}
	_, err = c.Copy(ctx, dir+"/", url, true)
	return err
}

// apiBackend is everything the API serves: the emulator's status, the
// registry's images and their audits, the jobs and the objects.
type apiBackend struct {
	*Emulator
	api.ImageBackend
	jobsAPI
	auditAPI
	objectsAPI
	metricsAPI
}

func (e *Emulator) service(name string) *service {
	for _, s := range e.services {
		if s.name == name {
			return s
		}
	}
	panic("emulator: no service " + name)
}

// metricsAPI serves the jobs' resource samples.
type metricsAPI struct {
	st *metrics.Store
	// unavailable, when set, says why jobs have no samples.
	unavailable string
}

var _ api.MetricsBackend = metricsAPI{}

func (m metricsAPI) JobMetrics(ctx context.Context, id string, since time.Time) (*api.JobMetrics, error) {
	jm, err := m.st.Get(id, since)
	if err != nil {
		return nil, err
	}
	if len(jm.Samples) == 0 {
		jm.Unavailable = m.unavailable
	}
	return jm, nil
}

func (m metricsAPI) WatchMetrics(ctx context.Context, id string, fn func(api.MetricSample) error) error {
	return m.st.Watch(ctx, id, fn)
}

// metricsAPI is the metrics routes' backend: on Kubernetes, the page says
// that samples are not taken there.
func (e *Emulator) metricsAPI() metricsAPI {
	m := metricsAPI{st: e.svc.metrics}
	if e.cfg.Backend == BackendKubernetes {
		m.unavailable = "resource usage is not sampled for jobs on Kubernetes (the Docker backend samples it)"
	}
	return m
}
