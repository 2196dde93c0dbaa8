// Command registry-bench measures malocal's registry against Debian's
// docker-registry (distribution 2.8, the reference registry) on the same
// machine in the same run: real `docker push` and `docker pull` of an
// image with one large layer and of one with many small layers, the same
// with go-containerregistry's client for an image of 200 layers (more
// than the 125 layers docker can hold), and each registry's peak memory
// (VmHWM) and CPU time.
//
//	go run ./bench/registry -big-mib 1024 > result.md
//
// Needs docker (daemon reachable) and docker-registry
// (apt-get install docker-registry). Images and tags it creates carry the
// label malocal.test=1 and are removed at the end.
package main

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/malocal/malocal/registry"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "-serve" {
		if err := serve(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		return
	}
	bigMiB := flag.Int("big-mib", 1024, "size of the one-layer image's layer, MiB")
	smallLayers := flag.Int("small-layers", 120, "layers of the many-layer image pushed with docker (docker holds at most 125)")
	ggcrLayers := flag.Int("ggcr-layers", 200, "layers of the image pushed with go-containerregistry's client")
	rounds := flag.Int("rounds", 2, "rounds, each on fresh registries, alternating which goes first")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runBench(ctx, *bigMiB, *smallLayers, *ggcrLayers, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "registry-bench:", err)
		os.Exit(1)
	}
}

// serve is the child mode: malocal's registry on root at addr.
func serve(root, addr string) error {
	reg, err := registry.New(root)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, reg.Handler())
}

// server is one registry under test, in its own process.
type server struct {
	name string
	addr string
	cmd  *exec.Cmd
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startServer(ctx context.Context, name, dir string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, name)
	var cmd *exec.Cmd
	switch name {
	case "malocal":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(self, "-serve", root, addr)
	case "docker-registry":
		cfg := filepath.Join(dir, "config.yml")
		yml := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", root, addr)
		if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
			return nil, err
		}
		cmd = exec.Command("docker-registry", "serve", cfg)
	}
	// docker-registry logs every 404 of a push's existence checks.
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, addr: addr, cmd: cmd}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("%s did not start: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// usage reads the process's peak RSS (KiB) and CPU seconds from /proc.
func (s *server) usage() (peakKiB int64, cpu float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			peakKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name: utime and stime are the 12th and 13th.
	f2 := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseFloat(f2[11], 64)
	st, _ := strconv.ParseFloat(f2[12], 64)
	return peakKiB, (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

func docker(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func timed(f func() error) (time.Duration, error) {
	t := time.Now()
	err := f()
	return time.Since(t), err
}

// writeBigTar writes a rootfs tarball with one file of n bytes of noise
// (incompressible, like model weights).
func writeBigTar(p string, n int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	if err := tw.WriteHeader(&tar.Header{Name: "weights.bin", Mode: 0o644, Size: n, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(tw, rng, n); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// smallImage is an image of n layers of one 4 KiB file each.
func smallImage(n int) (v1.Image, error) {
	img := empty.Image
	layers := make([]v1.Layer, n)
	for i := range layers {
		l, err := random.Layer(4096, types.DockerLayer)
		if err != nil {
			return nil, err
		}
		layers[i] = l
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Labels = map[string]string{"malocal.test": "1"}
	return mutate.ConfigFile(img, cf)
}

type row struct {
	scenario, registry, dst string
	round                   int
	push, pull              time.Duration
	bytes                   int64
}

func runBench(ctx context.Context, bigMiB, smallLayers, ggcrLayers, rounds int) error {
	if _, err := exec.LookPath("docker-registry"); err != nil {
		return errors.New("docker-registry not found: apt-get install docker-registry")
	}
	dir, err := os.MkdirTemp("", "registry-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var tags []string
	defer func() {
		for _, t := range tags {
			exec.Command("docker", "rmi", "-f", t).Run()
		}
	}()

	// Source images in the local engine.
	big, small := "malocal-bench/big:src", "malocal-bench/small:src"
	tags = append(tags, big, small)
	bigBytes := int64(bigMiB) << 20
	fmt.Fprintf(os.Stderr, "making a %d MiB layer image and a %d layer image\n", bigMiB, smallLayers)
	if err := writeBigTar(filepath.Join(dir, "big.tar"), bigBytes); err != nil {
		return err
	}
	if err := docker(ctx, "import", "--change", "LABEL malocal.test=1", filepath.Join(dir, "big.tar"), big); err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, "big.tar"))
	simg, err := smallImage(smallLayers)
	if err != nil {
		return err
	}
	sref, err := name.ParseReference(small)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(filepath.Join(dir, "small.tar"), sref, simg); err != nil {
		return err
	}
	if err := docker(ctx, "load", "-i", filepath.Join(dir, "small.tar")); err != nil {
		return err
	}

	// Each round starts a fresh pair of registries (a push to a registry
	// that has the layers already uploads nothing), and rounds alternate
	// which one goes first, so a load change on a shared machine hits both.
	names := []string{"docker-registry", "malocal"}
	type instance struct {
		*server
		round int
	}
	var insts []instance
	for r := 1; r <= rounds; r++ {
		for _, n := range names {
			srv, err := startServer(ctx, n, filepath.Join(dir, fmt.Sprint(r)))
			if err != nil {
				return err
			}
			defer srv.stop()
			insts = append(insts, instance{srv, r})
		}
	}
	ordered := func(r int) []instance {
		pair := []instance{insts[2*(r-1)], insts[2*(r-1)+1]}
		if r%2 == 0 {
			pair[0], pair[1] = pair[1], pair[0]
		}
		return pair
	}

	images := []struct {
		scenario, src string
		bytes         int64
	}{
		{fmt.Sprintf("docker, 1 layer of %d MiB", bigMiB), big, bigBytes},
		{fmt.Sprintf("docker, %d layers of 4 KiB", smallLayers), small, int64(smallLayers) * 4096},
	}
	var rows []row
	for r := 1; r <= rounds; r++ {
		for _, im := range images {
			for _, in := range ordered(r) {
				dst := "localhost:" + portOf(in.addr) + "/" + strings.TrimSuffix(im.src, ":src") + ":1"
				tags = append(tags, dst)
				if err := docker(ctx, "tag", im.src, dst); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "round %d: push %s (%s)\n", r, dst, in.name)
				d, err := timed(func() error { return docker(ctx, "push", dst) })
				if err != nil {
					return err
				}
				rows = append(rows, row{scenario: im.scenario, registry: in.name, round: r, dst: dst, push: d, bytes: im.bytes})
			}
		}
	}
	// Pull with nothing local, so every layer comes over the wire.
	for _, t := range tags {
		exec.CommandContext(ctx, "docker", "rmi", "-f", t).Run()
	}
	for i := range rows {
		r := &rows[i]
		fmt.Fprintf(os.Stderr, "round %d: pull %s (%s)\n", r.round, r.dst, r.registry)
		d, err := timed(func() error { return docker(ctx, "pull", r.dst) })
		if err != nil {
			return err
		}
		r.pull = d
		if err := docker(ctx, "rmi", "-f", r.dst); err != nil {
			return err
		}
	}

	// go-containerregistry's client, which neither compresses nor
	// extracts: what is left is the registry's own speed. One layer of
	// noise as large as docker's, then 200 small layers.
	noise := make([]byte, bigBytes)
	rand.NewChaCha8([32]byte{2}).Read(noise)
	bigLayer := static.NewLayer(noise, types.OCILayer)
	gbig, err := mutate.AppendLayers(empty.Image, bigLayer)
	if err != nil {
		return err
	}
	gsmall, err := smallImage(ggcrLayers)
	if err != nil {
		return err
	}
	ggcr := []struct {
		scenario, repo string
		img            v1.Image
		bytes          int64
	}{
		{fmt.Sprintf("ggcr client, 1 layer of %d MiB", bigMiB), "malocal-bench/ggcr-big", gbig, bigBytes},
		{fmt.Sprintf("ggcr client, %d layers of 4 KiB", ggcrLayers), "malocal-bench/ggcr-many", gsmall, int64(ggcrLayers) * 4096},
	}
	for r := 1; r <= rounds; r++ {
		for _, g := range ggcr {
			for _, in := range ordered(r) {
				ref, err := name.ParseReference(in.addr+"/"+g.repo+":1", name.Insecure)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "round %d: ggcr push and pull %s (%s)\n", r, ref, in.name)
				push, err := timed(func() error { return remote.Write(ref, g.img, remote.WithContext(ctx)) })
				if err != nil {
					return fmt.Errorf("ggcr push to %s: %w", in.name, err)
				}
				pull, err := timed(func() error { return pullAll(ctx, ref) })
				if err != nil {
					return fmt.Errorf("ggcr pull from %s: %w", in.name, err)
				}
				rows = append(rows, row{scenario: g.scenario, registry: in.name, round: r, push: push, pull: pull, bytes: g.bytes})
			}
		}
	}

	fmt.Printf("| scenario | round | registry | push | pull |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %d | %s | %s | %s |\n", r.scenario, r.round, r.registry, rate(r.push, r.bytes), rate(r.pull, r.bytes))
	}
	fmt.Printf("\n| registry | round | peak RSS (VmHWM) | CPU time |\n|---|---|---|---|\n")
	for _, in := range insts {
		peak, cpu, err := in.usage()
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %d | %.1f MiB | %.1f s |\n", in.name, in.round, float64(peak)/1024, cpu)
	}
	return nil
}

// pullAll fetches the manifest, config and every layer of ref.
func pullAll(ctx context.Context, ref name.Reference) error {
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// rate formats a duration, with throughput when the image is big enough
// for it to mean something.
func rate(d time.Duration, n int64) string {
	if n < 64<<20 {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s (%.0f MB/s)", d.Seconds(), float64(n)/d.Seconds()/1e6)
}
