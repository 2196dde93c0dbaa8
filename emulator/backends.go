package emulator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/dockerbackend"
	"github.com/malocal/malocal/fakeobs/obsclient"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/kube"
)

// Where jobs run (--backend).
const (
	BackendDocker     = "docker"
	BackendKubernetes = "kubernetes"
)

// jobBackend makes the backend that runs tasks, and how many GPUs jobs
// may use together: this machine's for Docker, the cluster's for Kubernetes.
func (e *Emulator) jobBackend(ctx context.Context, creds Credentials, st *jobStores) (jobs.Backend, int, error) {
	switch e.cfg.Backend {
	case "", BackendDocker:
		eng, err := dockerbackend.Connect()
		if err != nil {
			return nil, 0, err
		}
		gpus := e.cfg.GPUs
		if gpus == nil {
			gpus = detectGPUs(ctx)
		}
		b := dockerbackend.New(dockerbackend.Config{Engine: eng, Gateways: e.svc.gw, Registry: engineAddr(e.service("registry").ln.Addr()),
			AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region,
			DataDir: e.dd.Path, StopGrace: e.cfg.StopGrace, GPUs: gpus,
			PidsLimit: e.cfg.PidsLimit, DefaultMemory: e.cfg.DefaultMemory,
			RegistryAuth: jobs.RegistryAuth{Username: creds.RegistryUsername, Password: creds.RegistryPassword},
			TaskStarted:  e.svc.sampler.TaskStarted})
		return b, len(gpus), nil
	case BackendKubernetes:
		return e.kubeBackend(ctx, creds, st)
	}
	return nil, 0, fmt.Errorf("--backend %q: use %s or %s", e.cfg.Backend, BackendDocker, BackendKubernetes)
}

// unknownGPUs stands for a cluster whose nodes may not be listed: the
// scheduler, not malocal, decides whether GPUs are free.
const unknownGPUs = math.MaxInt32

func (e *Emulator) kubeBackend(ctx context.Context, creds Credentials, st *jobStores) (jobs.Backend, int, error) {
	c := e.cfg
	// An external store or registry replaces ours: the nodes reach it, not us.
	obs, reg := c.AdvertiseOBS, c.AdvertiseRegistry
	if st.s3Endpoint != "" {
		obs = st.s3Endpoint
		creds = st.s3Creds
	}
	if st.registry != "" {
		reg = st.registry
	}
	if obs == "" || reg == "" {
		return nil, 0, fmt.Errorf("--backend kubernetes needs --advertise-obs URL and --advertise-registry HOST:PORT: " +
			"the addresses at which the cluster's nodes reach this emulator's S3 API and registry " +
			"(make it listen there with --s3-addr and --registry-addr), or --external-obs URL and " +
			"--external-registry HOST:PORT: an existing S3 store and registry the nodes reach instead")
	}
	if st.s3Endpoint == "" {
		if err := checkURL("--advertise-obs", obs); err != nil {
			return nil, 0, err
		}
	}
	if st.registry == "" {
		if err := checkHostPort("--advertise-registry", reg); err != nil {
			return nil, 0, err
		}
	}
	// Our registry asks for the emulator's login; an external one is the
	// cluster's business (its nodes' own pull configuration).
	pullAuth := jobs.RegistryAuth{Username: creds.RegistryUsername, Password: creds.RegistryPassword}
	if st.registry != "" {
		pullAuth = jobs.RegistryAuth{Username: c.ExternalRegistryUsername, Password: c.ExternalRegistryPassword}
	}
	client, ns, err := kube.Connect(ctx, kube.Config{Kubeconfig: c.Kubeconfig, Namespace: c.Namespace})
	if err != nil {
		return nil, 0, err
	}
	n, err := kube.ClusterGPUs(ctx, client)
	if err != nil {
		return nil, 0, err
	}
	gpuNote := strconv.Itoa(n)
	if n < 0 {
		n, gpuNote = unknownGPUs, "unknown (nodes not listable): the scheduler decides"
	}
	e.log.Info("jobs run on Kubernetes", "namespace", ns, "gpus", gpuNote, "obs", obs, "registry", reg)
	return &kube.Backend{
		Client: client,
		Contract: kube.Contract{Namespace: ns, Registry: reg, S3Endpoint: strings.TrimSuffix(obs, "/"),
			AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region,
			DataDir: e.dd.Path, Instance: kube.Instance(e.dd.Path), StopGrace: c.StopGrace, RegistryAuth: pullAuth},
		PendingLimit: c.PendingLimit,
	}, n, nil
}

func checkURL(flag, v string) error {
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: give a URL such as http://10.0.0.5:7081", flag, v)
	}
	return nil
}

func checkHostPort(flag, v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil || strings.Contains(v, "/") {
		return fmt.Errorf("%s %q: give HOST:PORT, such as 10.0.0.5:7082", flag, v)
	}
	return nil
}

// jobStores are where jobs' objects and images live: this emulator's S3
// API and registry, or an existing store and registry the user named
// (--external-obs, --external-registry).
type jobStores struct {
	images   jobs.Images
	buckets  jobs.Buckets
	uploader jobs.LogUploader
	source   audit.ImageSource
	// s3Endpoint and s3Creds are the external store's, for the pods;
	// registry is the external registry's host:port. Empty: ours.
	s3Endpoint string
	s3Creds    Credentials
	registry   string
}

// Environment variables holding the external store's keys.
const (
	EnvExternalAccessKey = "MALOCAL_EXTERNAL_OBS_ACCESS_KEY"
	EnvExternalSecretKey = "MALOCAL_EXTERNAL_OBS_SECRET_KEY"
	EnvExternalRegion    = "MALOCAL_EXTERNAL_OBS_REGION"
)

// openJobStores checks the external store and registry, when named, and
// returns what the job manager uses.
func (e *Emulator) openJobStores(ctx context.Context, creds Credentials) (*jobStores, error) {
	c := e.cfg
	s := &e.svc
	st := &jobStores{
		images:   imageResolver{reg: s.reg, prefix: registryPrefix(e.service("registry").ln.Addr())},
		buckets:  s.obs,
		uploader: logUploader{endpoint: e.service("s3").url(), creds: creds},
		source:   s.reg,
	}
	if c.ExternalOBS == "" && c.ExternalRegistry == "" {
		return st, nil
	}
	if c.Backend != BackendKubernetes {
		return nil, errors.New("--external-obs and --external-registry work only with --backend kubernetes; " +
			"with the Docker backend jobs use this emulator's own S3 API and registry")
	}
	if c.ExternalOBS != "" {
		if err := checkURL("--external-obs", c.ExternalOBS); err != nil {
			return nil, err
		}
		k := c.ExternalOBSKeys
		if k.AccessKey == "" || k.SecretKey == "" {
			return nil, fmt.Errorf("--external-obs %s needs its keys in the environment: set %s and %s (and %s if the store checks the region)",
				c.ExternalOBS, EnvExternalAccessKey, EnvExternalSecretKey, EnvExternalRegion)
		}
		if k.Region == "" {
			k.Region = "us-east-1"
		}
		ext := Credentials{AccessKey: k.AccessKey, SecretKey: k.SecretKey, Region: k.Region}
		endpoint := strings.TrimSuffix(c.ExternalOBS, "/")
		cl, err := obsclient.New(obsclient.Config{Endpoint: endpoint, AccessKey: ext.AccessKey, SecretKey: ext.SecretKey, Region: ext.Region})
		if err != nil {
			return nil, fmt.Errorf("--external-obs: %w", err)
		}
		if err := checkStore(ctx, cl, endpoint); err != nil {
			return nil, err
		}
		st.buckets = externalBuckets{cl: cl, endpoint: endpoint}
		st.uploader = logUploader{endpoint: endpoint, creds: ext}
		st.s3Endpoint, st.s3Creds = endpoint, ext
	}
	if c.ExternalRegistry != "" {
		if err := checkHostPort("--external-registry", c.ExternalRegistry); err != nil {
			return nil, err
		}
		src := audit.RemoteSource{Registry: c.ExternalRegistry, Insecure: c.ExternalRegistryInsecure}
		if c.ExternalRegistryUsername != "" {
			src.Auth = &authn.Basic{Username: c.ExternalRegistryUsername, Password: c.ExternalRegistryPassword}
		}
		if err := pingRegistry(ctx, src); err != nil {
			return nil, err
		}
		st.images = remoteResolver{src}
		st.source = src
		st.registry = c.ExternalRegistry
	}
	e.log.Info("jobs use an external store", "obs", c.ExternalOBS, "registry", c.ExternalRegistry)
	return st, nil
}

// checkStore lists the buckets: it fails when the store does not answer
// or refuses the keys.
func checkStore(ctx context.Context, cl *obsclient.Client, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := cl.ListBuckets(ctx)
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("--external-obs %s refuses the keys in %s and %s (region from %s): %s: %s",
			endpoint, EnvExternalAccessKey, EnvExternalSecretKey, EnvExternalRegion, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("--external-obs %s does not answer; check the URL and that the S3 store runs and is reachable from here: %w", endpoint, err)
}

// pingRegistry asks the registry for its API version: any answer of a
// registry (200, or 401 when it wants a login) will do.
func pingRegistry(ctx context.Context, src audit.RemoteSource) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	scheme := "https"
	if src.Insecure {
		scheme = "http"
	}
	u := scheme + "://" + src.Registry + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--external-registry: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		hint := ""
		if !src.Insecure {
			hint = " (a registry on plain HTTP needs --external-registry-insecure)"
		}
		return fmt.Errorf("--external-registry %s does not answer at %s%s: %w", src.Registry, u, hint, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("--external-registry %s: %s answered %s, not as a registry does", src.Registry, u, resp.Status)
	}
	return nil
}

// externalBuckets checks buckets in the external store. A missing one is
// an invalid submission whose message names that store, not ours.
type externalBuckets struct {
	cl       *obsclient.Client
	endpoint string
}

var errFound = errors.New("found")

func (b externalBuckets) BucketExists(ctx context.Context, name string) (bool, error) {
	err := b.cl.List(ctx, obsclient.URL{Bucket: name}, false, func(obsclient.Entry) error { return errFound })
	switch {
	case err == nil || errors.Is(err, errFound):
		return true, nil
	case obsclient.IsNotFound(err):
		return false, api.Invalidf("bucket %q does not exist in the external store %s (--external-obs); create it there", name, b.endpoint)
	}
	return false, err
}

// remoteResolver resolves a job's image in the external registry.
type remoteResolver struct{ src audit.RemoteSource }

func (r remoteResolver) Resolve(ctx context.Context, image string) (string, string, error) {
	repo, ref, err := api.ParseImageRef(image)
	if err != nil {
		return "", "", fmt.Errorf("image: %w", err)
	}
	rf, err := r.src.Reference(repo, ref)
	if err != nil {
		return "", "", api.Invalidf("image: %v", err)
	}
	desc, err := remote.Head(rf, r.src.Options(ctx)...)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		full := r.src.Registry + "/" + api.FormatImageRef(repo, ref)
		return "", "", api.Invalidf("image: %s is not in the registry %s (--external-registry); push it first: docker tag IMAGE %s && docker push %s",
			api.FormatImageRef(repo, ref), r.src.Registry, full, full)
	}
	if err != nil {
		return "", "", fmt.Errorf("image: resolving %s in the registry %s (--external-registry): %w", rf, r.src.Registry, err)
	}
	return repo, desc.Digest.String(), nil
}
