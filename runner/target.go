package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/emulator"
	"github.com/malocal/malocal/fakeobs/obsclient"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/registry"
)

// target is the emulator a run uses: a throwaway one it started, or a
// running one (Options.Remote).
type target struct {
	client   *api.Client
	obs      *obsclient.Client
	s3       string // host:port of the S3 API
	registry string // host:port of the registry, reachable from here
	// engineRegistry is how the Docker engine names the registry in the
	// job's pulls (jobs.DockerBackend.Registry); pushRegistry is the name
	// docker push uses (localhost, an insecure registry by default).
	engineRegistry, pushRegistry string
	regAuth                      registry.Credentials // the emulator's registry credentials
	dataDir                      string
	docker                       string

	emu *emulator.Emulator // a throwaway emulator, else nil
	tmp string             // its temp dir
}

func openTarget(ctx context.Context, o Options) (*target, error) {
	if o.Remote != nil {
		return openRemote(ctx, o)
	}
	tmp, err := os.MkdirTemp("", "malocal-run-")
	if err != nil {
		return nil, err
	}
	e, err := emulator.Start(ctx, emulator.Config{
		DataDir: filepath.Join(tmp, "data"),
		APIAddr: "127.0.0.1:0", S3Addr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		Logger:    slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		StopGrace: o.StopGrace,
	})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("starting a throwaway emulator: %w", err)
	}
	t := &target{emu: e, tmp: tmp, docker: o.Docker, dataDir: e.DataDir().Path}
	rt := e.Runtime()
	token, err := e.DataDir().Token()
	if err == nil {
		err = t.connect(rt.API, token, rt.S3, rt.Registry)
	}
	if err != nil {
		t.close(context.WithoutCancel(ctx), nil)
		return nil, err
	}
	return t, nil
}

func openRemote(ctx context.Context, o Options) (*target, error) {
	rm := o.Remote
	c := api.NewClient(rm.API, rm.Token)
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("no emulator answers at %s: %w", rm.API, err)
	}
	addrs := map[string]string{}
	for _, s := range st.Services {
		addrs[s.Name] = s.Address
	}
	if addrs["s3"] == "" || addrs["registry"] == "" {
		return nil, fmt.Errorf("the emulator at %s reports no S3 API or registry address", rm.API)
	}
	dataDir := rm.DataDir
	if dataDir == "" {
		dataDir = st.DataDir
	}
	t := &target{docker: o.Docker, dataDir: dataDir}
	return t, t.connect(rm.API, rm.Token, addrs["s3"], addrs["registry"])
}

func (t *target) connect(apiAddr, token, s3, registry string) error {
	dd, err := emulator.OpenDataDir(t.dataDir)
	if err != nil {
		return err
	}
	creds, err := dd.Credentials()
	if err != nil {
		return err
	}
	t.regAuth = creds.Registry()
	t.s3, t.registry = loopback(s3), loopback(registry)
	_, port, _ := net.SplitHostPort(t.registry)
	t.engineRegistry, t.pushRegistry = t.registry, "localhost:"+port
	t.client = api.NewClient(apiAddr, token)
	t.obs, err = obsclient.New(obsclient.Config{
		Endpoint: "http://" + t.s3, AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region,
	})
	return err
}

// auth is what malocal's own pushes present to the registry.
func (t *target) auth() authn.Authenticator {
	if t.regAuth.Password == "" {
		return nil
	}
	return &authn.Basic{Username: t.regAuth.Username, Password: t.regAuth.Password}
}

// loopback turns a wildcard listen address into one a client can dial.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// ensureBucket makes the bucket unless it exists; another run may make it
// at the same time.
func (t *target) ensureBucket(ctx context.Context, bucket string) error {
	has := func() (bool, error) {
		bs, err := t.obs.ListBuckets(ctx)
		if err != nil {
			return false, fmt.Errorf("listing buckets: %w", err)
		}
		for _, b := range bs {
			if b.Name == bucket {
				return true, nil
			}
		}
		return false, nil
	}
	if ok, err := has(); ok || err != nil {
		return err
	}
	err := t.obs.MakeBucket(ctx, bucket)
	if err == nil {
		return nil
	}
	if ok, _ := has(); ok {
		return nil
	}
	return err
}

// close removes the engine references a throwaway emulator's jobs pulled,
// shuts the emulator down and removes its temp dir. A running emulator is
// left as it is.
func (t *target) close(ctx context.Context, pulls []string) error {
	if t.emu == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, ref := range pulls {
		if !seen[ref] {
			seen[ref] = true
			// The layers stay: the image the run pushed from holds them.
			dockerCmd(ctx, t.docker, "rmi", ref)
		}
	}
	var errs []error
	if err := t.emu.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stopping the throwaway emulator: %w", err))
	}
	if err := t.removeLeftovers(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(t.tmp); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", t.tmp, err))
	}
	return errors.Join(errs...)
}

// removeLeftovers force-removes the containers and networks labelled with
// the throwaway emulator's data dir. A job stopped in time leaves none;
// this is for one that did not stop (the emulator's shutdown detaches from
// running jobs and leaves their containers running).
func (t *target) removeLeftovers(ctx context.Context) error {
	filter := "label=" + jobs.LabelDataDir + "=" + t.dataDir
	var errs []error
	if out, err := dockerCmd(ctx, t.docker, "ps", "-aq", "--filter", filter); err == nil && len(strings.Fields(out)) > 0 {
		ids := strings.Fields(out)
		_, err := dockerCmd(ctx, t.docker, append([]string{"rm", "-f"}, ids...)...)
		errs = append(errs, fmt.Errorf("removed %d containers the job left running: %v", len(ids), err))
	}
	if out, err := dockerCmd(ctx, t.docker, "network", "ls", "-q", "--filter", filter); err == nil && len(strings.Fields(out)) > 0 {
		ids := strings.Fields(out)
		_, err := dockerCmd(ctx, t.docker, append([]string{"network", "rm"}, ids...)...)
		errs = append(errs, fmt.Errorf("removed %d networks the job left: %v", len(ids), err))
	}
	return errors.Join(errs...)
}
