package emulator

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/malocal/malocal/docker"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/kube"
)

// Where jobs run (--backend).
const (
	BackendDocker     = "docker"
	BackendKubernetes = "kubernetes"
)

// jobBackend makes the backend that runs tasks, and the GPU ids jobs may
// be given: this machine's for Docker, the cluster's count for Kubernetes.
func (e *Emulator) jobBackend(ctx context.Context, eng *docker.Client, creds Credentials) (jobs.Backend, []string, error) {
	switch e.cfg.Backend {
	case "", BackendDocker:
		b := &jobs.DockerBackend{Engine: eng, Gateways: e.svc.gw, Registry: engineAddr(e.service("registry").ln.Addr()),
			DataDir: e.dd.Path, StopGrace: e.cfg.StopGrace}
		b.Creds.AccessKey, b.Creds.SecretKey, b.Creds.Region = creds.AccessKey, creds.SecretKey, creds.Region
		gpus := e.cfg.GPUs
		if gpus == nil {
			gpus = detectGPUs(ctx)
		}
		return b, gpus, nil
	case BackendKubernetes:
		return e.kubeBackend(ctx, creds)
	}
	return nil, nil, fmt.Errorf("--backend %q: use %s or %s", e.cfg.Backend, BackendDocker, BackendKubernetes)
}

func (e *Emulator) kubeBackend(ctx context.Context, creds Credentials) (jobs.Backend, []string, error) {
	c := e.cfg
	if c.AdvertiseOBS == "" || c.AdvertiseRegistry == "" {
		return nil, nil, fmt.Errorf("--backend kubernetes needs --advertise-obs URL and --advertise-registry HOST:PORT: " +
			"the addresses at which the cluster's nodes reach this emulator's S3 API and registry " +
			"(make it listen there with --s3-addr and --registry-addr)")
	}
	if u, err := url.Parse(c.AdvertiseOBS); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("--advertise-obs %q: give a URL such as http://10.0.0.5:7081", c.AdvertiseOBS)
	}
	if _, _, err := net.SplitHostPort(c.AdvertiseRegistry); err != nil || strings.Contains(c.AdvertiseRegistry, "/") {
		return nil, nil, fmt.Errorf("--advertise-registry %q: give HOST:PORT, such as 10.0.0.5:7082", c.AdvertiseRegistry)
	}
	client, ns, err := kube.Connect(ctx, kube.Config{Kubeconfig: c.Kubeconfig, Namespace: c.Namespace})
	if err != nil {
		return nil, nil, err
	}
	n, err := kube.ClusterGPUs(ctx, client)
	if err != nil {
		return nil, nil, err
	}
	if n < 0 {
		// Nodes may not be listed: let the cluster's scheduler decide.
		n = 1024
	}
	gpus := make([]string, n)
	for i := range gpus {
		gpus[i] = fmt.Sprintf("cluster-%d", i)
	}
	e.log.Info("jobs run on Kubernetes", "namespace", ns, "gpus", n, "obs", c.AdvertiseOBS, "registry", c.AdvertiseRegistry)
	return &kube.Backend{
		Client: client,
		Contract: kube.Contract{Namespace: ns, Registry: c.AdvertiseRegistry, S3Endpoint: strings.TrimSuffix(c.AdvertiseOBS, "/"),
			AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region,
			DataDir: e.dd.Path, Instance: kube.Instance(e.dd.Path), StopGrace: c.StopGrace},
		PendingLimit: c.PendingLimit,
	}, gpus, nil
}
