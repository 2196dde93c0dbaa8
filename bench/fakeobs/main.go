// Command fakeobs-bench measures malocal's object store (fakeobs) against
// MinIO on the same machine in the same run, both on loopback: PUT and GET
// throughput for one large object and for many 4 KiB objects, and each
// server's peak memory (VmHWM, reset before every phase).
//
//	go run ./bench/fakeobs                  # builds MinIO in a temp dir first
//	go run ./bench/fakeobs -minio /path/to/minio -big
//
// MinIO is built with `go install github.com/minio/minio@latest` into the
// benchmark's own temp dir and never vendored or committed. Both servers run
// as separate processes so that their memory is measured alone.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/malocal/malocal/fakeobs"
)

const (
	accessKey = "benchaccesskey"
	secretKey = "benchsecretkey0123456789"
	bucket    = "bench"
)

func main() {
	serve := flag.String("serve-fakeobs", "", "internal: serve fakeobs on this root (child mode)")
	addr := flag.String("addr", "", "internal: listen address in child mode")
	fsyncLoad := flag.String("fsync-load", "", "internal: write and fsync files in this dir until killed (child mode)")
	dirtyLoad := flag.String("dirty-load", "", "internal: write files through the page cache in this dir until killed (child mode)")
	minioBin := flag.String("minio", "", "MinIO binary to compare with (default: build it in the temp dir)")
	var cfg config
	flag.StringVar(&cfg.shapes, "shapes", "sdk,small,aws,aws-small,multipart,parts", "comma-separated shapes: sdk (one object, raw signed PUT/GET), small (4 KiB objects), aws (aws s3 cp up and down), aws-small (aws s3 cp --recursive of 4 KiB files), multipart (one object in 64 MiB parts, 4 at a time), parts (many 100 KiB parts, 16 at a time)")
	flag.StringVar(&cfg.loads, "loads", "quiet,cpu,mixed", "comma-separated loads beside the servers: quiet, cpu (two busy loops), dirty (two writers through the page cache), mixed (busy loops, fsync-heavy and page-cache writers together)")
	flag.Int64Var(&cfg.largeSize, "large-size", 1<<30, "size of the sdk and aws objects in bytes")
	flag.IntVar(&cfg.smallN, "small-count", 2000, "number of 4 KiB objects (small, aws-small)")
	flag.IntVar(&cfg.workers, "workers", 16, "parallel requests for the small objects")
	flag.Int64Var(&cfg.mpSize, "multipart-size", 5<<30, "size of the multipart object in bytes")
	flag.IntVar(&cfg.parts, "parts", 5000, "number of 100 KiB parts (parts shape)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of every shape under each load, alternating which server goes first; the table shows medians")
	only := flag.String("only", "", "run only this server (fakeobs or minio)")
	flag.Parse()
	switch {
	case *serve != "":
		serveFakeobs(*serve, *addr)
		return
	case *fsyncLoad != "":
		runWriteLoad(*fsyncLoad, true)
		return
	case *dirtyLoad != "":
		runWriteLoad(*dirtyLoad, false)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *minioBin, cfg, *only); err != nil {
		fmt.Fprintln(os.Stderr, "fakeobs-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	shapes, loads          string
	largeSize, mpSize      int64
	smallN, workers, parts int
	rounds                 int
}

func serveFakeobs(root, addr string) {
	svc, err := fakeobs.New(root, fakeobs.WithCredentials(fakeobs.Credentials{AccessKey: accessKey, SecretKey: secretKey}),
		fakeobs.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Addr: addr, Handler: svc.Handler(), ReadHeaderTimeout: 30 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// runWriteLoad writes 1 MiB blocks until killed. With fsync it syncs each
// block, in files of 64 MiB that it then removes: the synchronous-write
// traffic of a busy machine. Without, it rewrites a ring of three 256 MiB
// files through the page cache: what image builds, layer extraction and
// pushes do. The kernel writes those back in the background and throttles
// every buffered writer once dirty pages pass its limits.
func runWriteLoad(dir string, fsync bool) {
	blocks, ring := 256, 3
	if fsync {
		blocks, ring = 64, 2
	}
	for i := 0; ; i++ {
		name := filepath.Join(dir, fmt.Sprintf("load-%t-%d-%d", fsync, os.Getpid(), i%ring))
		f, err := os.Create(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for range blocks {
			f.Write(patternBlock)
			if fsync {
				f.Sync()
			}
		}
		f.Close()
		if fsync {
			os.Remove(name)
		}
	}
}

type result struct {
	load, shape, server string
	value               float64
	unit                string
	peakRSS             int64   // bytes
	cpuPerGiB           float64 // server CPU seconds per GiB moved
	note                string
}

// server is one store under test, running as its own process.
type server struct {
	name string
	cmd  *exec.Cmd
	c    *client
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func startServer(ctx context.Context, name string, cmd *exec.Cmd, addr string) (*server, error) {
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: name, cmd: cmd, c: &client{base: "http://" + addr, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}}}
	if err := s.c.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.c.do(ctx, http.MethodPut, "/"+bucket, nil, 0, nil); err != nil {
		s.stop()
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	return s, nil
}

func run(ctx context.Context, minioBin string, cfg config, only string) error {
	tmp, err := os.MkdirTemp("", "fakeobs-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	if only == "" || only == "fakeobs" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		s, err := startServer(ctx, "fakeobs", exec.Command(self, "-serve-fakeobs", filepath.Join(tmp, "fakeobs"), "-addr", port), port)
		if err != nil {
			return fmt.Errorf("fakeobs: %w", err)
		}
		servers = append(servers, s)
	}
	if only == "" || only == "minio" {
		if minioBin == "" {
			if minioBin, err = buildMinio(ctx, tmp); err != nil {
				return err
			}
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		console, err := freePort()
		if err != nil {
			return err
		}
		cmd := exec.Command(minioBin, "server", filepath.Join(tmp, "minio-data"), "--address", port, "--console-address", console, "--quiet")
		cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+accessKey, "MINIO_ROOT_PASSWORD="+secretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
		s, err := startServer(ctx, "minio", cmd, port)
		if err != nil {
			return fmt.Errorf("minio: %w", err)
		}
		servers = append(servers, s)
	}
	w := &workdir{dir: tmp}
	var results []result
	for _, load := range strings.Split(cfg.loads, ",") {
		stopLoad, err := startLoad(ctx, load, tmp)
		if err != nil {
			return err
		}
		for round := range max(cfg.rounds, 1) {
			for i, shape := range strings.Split(cfg.shapes, ",") {
				// Alternate which server goes first, so that neither always
				// meets the machine in the same state.
				order := append([]*server{}, servers...)
				if (i+round)%2 == 1 {
					slices.Reverse(order)
				}
				for _, s := range order {
					rs, err := runShape(ctx, s, shape, cfg, w)
					if err != nil {
						stopLoad()
						return fmt.Errorf("%s, %s, %s: %w", s.name, load, shape, err)
					}
					for _, r := range rs {
						r.load = load
						results = append(results, r)
					}
				}
			}
		}
		stopLoad()
	}
	printTable(os.Stdout, servers, results)
	return nil
}

// startLoad starts what runs beside the servers and returns how to stop it.
func startLoad(ctx context.Context, load, tmp string) (func(), error) {
	var cmds []*exec.Cmd
	busy := func() {
		for range 2 {
			cmds = append(cmds, exec.Command("sh", "-c", "while :; do :; done"))
		}
	}
	switch load {
	case "quiet":
	case "cpu":
		busy()
	case "dirty", "mixed":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(tmp, "load")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		// dirty: buffered writers alone; mixed: a test run's whole load,
		// busy CPUs, fsync-heavy writers and buffered writers together.
		if load == "mixed" {
			busy()
			for range 2 {
				cmds = append(cmds, exec.Command(self, "-fsync-load", dir))
			}
		}
		for range 2 {
			cmds = append(cmds, exec.Command(self, "-dirty-load", dir))
		}
	default:
		return nil, fmt.Errorf("unknown load %q (quiet, cpu, dirty, mixed)", load)
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			return nil, fmt.Errorf("start %s load: %w", load, err)
		}
	}
	fmt.Fprintf(os.Stderr, "load %s: %d processes\n", load, len(cmds))
	return func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}, nil
}

// workdir holds the client-side files of the aws shapes, made once.
type workdir struct {
	dir           string
	big, smallDir string
	bigN, smallN  int64
}

func (w *workdir) bigFile(size int64) (string, error) {
	if w.big != "" && w.bigN == size {
		return w.big, nil
	}
	name := filepath.Join(w.dir, "aws-big.bin")
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(f, newPattern(size)); err != nil {
		return "", err
	}
	w.big, w.bigN = name, size
	return name, nil
}

func (w *workdir) smallFiles(n int) (string, error) {
	if w.smallDir != "" && w.smallN == int64(n) {
		return w.smallDir, nil
	}
	dir := filepath.Join(w.dir, "aws-small")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	small := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d", i)), small, 0o600); err != nil {
			return "", err
		}
	}
	w.smallDir, w.smallN = dir, int64(n)
	return dir, nil
}

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func runShape(ctx context.Context, s *server, shape string, cfg config, w *workdir) ([]result, error) {
	c, pid := s.c, s.cmd.Process.Pid
	var rs []result
	phase := func(label, unit string, moved int64, f func() (float64, string, error)) error {
		resetPeak(pid)
		cpu0 := cpuSeconds(pid)
		fmt.Fprintf(os.Stderr, "%s: %s...\n", s.name, label)
		v, note, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		r := result{shape: label, server: s.name, value: v, unit: unit, peakRSS: peakRSS(pid),
			cpuPerGiB: (cpuSeconds(pid) - cpu0) / (float64(moved) / (1 << 30)), note: note}
		rs = append(rs, r)
		// Each figure as it comes, so that a run cut short still tells.
		fmt.Fprintf(os.Stderr, "%s: %s: %.1f %s, %.1f CPU s/GiB, peak %.0f MiB %s\n", s.name, label, r.value, r.unit, r.cpuPerGiB, float64(r.peakRSS)/(1<<20), note)
		return nil
	}
	timed := func(moved int64, f func() error) func() (float64, string, error) {
		return func() (float64, string, error) {
			start := time.Now()
			err := f()
			return mbps(moved, time.Since(start)), "", err
		}
	}
	small := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	smallMoved := int64(cfg.smallN * len(small))
	objRate := func(f func() error) func() (float64, string, error) {
		return func() (float64, string, error) {
			start := time.Now()
			err := f()
			return float64(cfg.smallN) / time.Since(start).Seconds(), "", err
		}
	}
	size := cfg.largeSize
	var err error
	switch shape {
	case "sdk":
		err = phase("PUT 1 × "+human(size)+" (signed requests)", "MB/s", size, timed(size, func() error {
			return c.do(ctx, http.MethodPut, "/"+bucket+"/large", newPattern(size), size, nil)
		}))
		if err == nil {
			err = phase("GET 1 × "+human(size)+" (signed requests)", "MB/s", size, timed(size, func() error {
				n, err := c.get(ctx, "/"+bucket+"/large", io.Discard)
				if err == nil && n != size {
					err = fmt.Errorf("got %d bytes, want %d", n, size)
				}
				return err
			}))
		}
	case "small":
		err = phase(fmt.Sprintf("PUT %d × 4 KiB, %d at a time", cfg.smallN, cfg.workers), "obj/s", smallMoved, objRate(func() error {
			return parallel(ctx, cfg.smallN, cfg.workers, func(i int) error {
				return c.do(ctx, http.MethodPut, fmt.Sprintf("/%s/small/%05d", bucket, i), bytes.NewReader(small), int64(len(small)), nil)
			})
		}))
		if err == nil {
			err = phase(fmt.Sprintf("GET %d × 4 KiB, %d at a time", cfg.smallN, cfg.workers), "obj/s", smallMoved, objRate(func() error {
				return parallel(ctx, cfg.smallN, cfg.workers, func(i int) error {
					n, err := c.get(ctx, fmt.Sprintf("/%s/small/%05d", bucket, i), io.Discard)
					if err == nil && n != int64(len(small)) {
						err = fmt.Errorf("small object %d: %d bytes", i, n)
					}
					return err
				})
			}))
		}
	case "aws":
		var src string
		if src, err = w.bigFile(size); err != nil {
			return nil, err
		}
		err = phase("aws s3 cp up 1 × "+human(size), "MB/s", size, timed(size, func() error {
			return awsCLI(ctx, c.base, "s3", "cp", "--quiet", src, "s3://"+bucket+"/aws-big")
		}))
		if err == nil {
			dst := filepath.Join(w.dir, "aws-big.down")
			err = phase("aws s3 cp down 1 × "+human(size), "MB/s", size, timed(size, func() error {
				return awsCLI(ctx, c.base, "s3", "cp", "--quiet", "s3://"+bucket+"/aws-big", dst)
			}))
			os.Remove(dst)
		}
	case "aws-small":
		var src string
		if src, err = w.smallFiles(cfg.smallN); err != nil {
			return nil, err
		}
		err = phase(fmt.Sprintf("aws s3 cp --recursive up %d × 4 KiB", cfg.smallN), "obj/s", smallMoved, objRate(func() error {
			return awsCLI(ctx, c.base, "s3", "cp", "--quiet", "--recursive", src, "s3://"+bucket+"/aws-small/")
		}))
		if err == nil {
			dst := filepath.Join(w.dir, "aws-small.down")
			err = phase(fmt.Sprintf("aws s3 cp --recursive down %d × 4 KiB", cfg.smallN), "obj/s", smallMoved, objRate(func() error {
				return awsCLI(ctx, c.base, "s3", "cp", "--quiet", "--recursive", "s3://"+bucket+"/aws-small/", dst)
			}))
			os.RemoveAll(dst)
		}
	case "multipart":
		mp := cfg.mpSize
		var want []byte
		err = phase("multipart PUT "+human(mp)+" (64 MiB parts, 4 at a time)", "MB/s", mp, timed(mp, func() error {
			sum, _, err := c.multipartPut(ctx, "/"+bucket+"/huge", mp, 64<<20, 4)
			want = sum
			return err
		}))
		if err == nil {
			err = phase("GET "+human(mp)+", MD5 checked", "MB/s", mp, timed(mp, func() error {
				h := md5.New()
				n, err := c.get(ctx, "/"+bucket+"/huge", h)
				if err == nil && (n != mp || !bytes.Equal(h.Sum(nil), want)) {
					err = fmt.Errorf("object came back different (%d bytes)", n)
				}
				return err
			}))
		}
	case "parts":
		const partSize = 100 << 10
		total := int64(cfg.parts) * partSize
		err = phase(fmt.Sprintf("%d parts × 100 KiB, 16 at a time", cfg.parts), "MB/s", total, func() (float64, string, error) {
			start := time.Now()
			_, done, err := c.multipartPut(ctx, "/"+bucket+"/many-parts", total, partSize, 16)
			el := time.Since(start)
			if err != nil && strings.Contains(err.Error(), "EntityTooSmall") {
				// S3's 5 MiB minimum part (MinIO keeps it; OBS allows 100 KB):
				// the bookkeeping figure is this store's alone.
				return 0, "refuses parts under 5 MiB at completion, as S3", nil
			}
			note := ""
			if k := min(1000, len(done)/5); k > 0 && err == nil {
				first := done[k-1].Sub(start)
				last := done[len(done)-1].Sub(done[len(done)-k-1])
				note = fmt.Sprintf("last %d parts %.2fx the time of the first %d", k, last.Seconds()/first.Seconds(), k)
			}
			return mbps(total, el), note, err
		})
	default:
		return nil, fmt.Errorf("unknown shape %q", shape)
	}
	return rs, err
}

// awsCLI runs the aws command line client against base.
func awsCLI(ctx context.Context, base string, args ...string) error {
	cmd := exec.CommandContext(ctx, "aws", append([]string{"--endpoint-url", base}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secretKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("aws %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// pattern is a deterministic, incompressible-looking byte stream of a given
// length that costs the client almost nothing to produce.
type pattern struct {
	block []byte
	off   int64
	n     int64
}

var patternBlock = func() []byte {
	b := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}()

func newPattern(n int64) *pattern { return &pattern{block: patternBlock, n: n} }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	i := p.off % int64(len(p.block))
	m := copy(b, p.block[i:])
	if rem := p.n - p.off; int64(m) > rem {
		m = int(rem)
	}
	p.off += int64(m)
	return m, nil
}

// patternAt is the pattern's bytes [off, off+n), for multipart parts.
func patternAt(off, n int64) io.Reader {
	return &pattern{block: patternBlock, n: off + n, off: off}
}

type client struct {
	base string
	http *http.Client
}

var signer = v4.NewSigner()

func (c *client) request(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	if body == nil {
		req.ContentLength = 0
	}
	req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	err = signer.SignHTTP(ctx, aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey}, req, "UNSIGNED-PAYLOAD", "s3", "us-east-1", time.Now())
	return req, err
}

func (c *client) do(ctx context.Context, method, path string, body io.Reader, size int64, into *http.Header) error {
	req, err := c.request(ctx, method, path, body, size)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if into != nil {
		*into = resp.Header
	}
	return nil
}

func (c *client) doBody(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := c.request(ctx, method, path, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode/100 != 2 {
		err = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return data, err
}

func (c *client) get(ctx context.Context, path string, w io.Writer) (int64, error) {
	req, err := c.request(ctx, http.MethodGet, path, nil, 0)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, data)
	}
	return io.Copy(w, resp.Body)
}

func (c *client) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := c.doBody(ctx, http.MethodGet, "/", nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// multipartPut uploads size bytes of the pattern in parts, conc at a time,
// and returns the MD5 of the whole.
func (c *client) multipartPut(ctx context.Context, path string, size, partSize int64, conc int) ([]byte, []time.Time, error) {
	data, err := c.doBody(ctx, http.MethodPost, path+"?uploads", nil)
	if err != nil {
		return nil, nil, err
	}
	var init struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.Unmarshal(data, &init); err != nil || init.UploadID == "" {
		return nil, nil, fmt.Errorf("initiate: %v %s", err, data)
	}
	n := int((size + partSize - 1) / partSize)
	etags := make([]string, n)
	var mu sync.Mutex
	var done []time.Time // when each part finished, in the order they did
	err = parallel(ctx, n, conc, func(i int) error {
		off := int64(i) * partSize
		sz := min(partSize, size-off)
		var h http.Header
		if err := c.do(ctx, http.MethodPut, fmt.Sprintf("%s?partNumber=%d&uploadId=%s", path, i+1, init.UploadID), patternAt(off, sz), sz, &h); err != nil {
			return err
		}
		etags[i] = h.Get("ETag")
		mu.Lock()
		done = append(done, time.Now())
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var sb strings.Builder
	sb.WriteString("<CompleteMultipartUpload>")
	for i, e := range etags {
		fmt.Fprintf(&sb, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i+1, e)
	}
	sb.WriteString("</CompleteMultipartUpload>")
	if _, err := c.doBody(ctx, http.MethodPost, path+"?uploadId="+init.UploadID, []byte(sb.String())); err != nil {
		return nil, nil, err
	}
	h := md5.New()
	if _, err := io.Copy(h, newPattern(size)); err != nil {
		return nil, nil, err
	}
	return h.Sum(nil), done, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func printTable(w io.Writer, servers []*server, results []result) {
	if len(servers) == 0 {
		return
	}
	type key struct{ load, shape, server string }
	rounds := map[key][]result{}
	var rows []key
	for _, r := range results {
		k := key{r.load, r.shape, r.server}
		if len(rounds[k]) == 0 && r.server == servers[0].name {
			rows = append(rows, k)
		}
		rounds[k] = append(rounds[k], r)
	}
	// Each cell is the round with the median value: one noisy round on a
	// shared machine does not decide a ratio.
	by := map[key]result{}
	for k, rs := range rounds {
		slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.value, b.value) })
		by[k] = rs[len(rs)/2]
	}
	fmt.Fprintf(w, "\n| load | workload |")
	for _, s := range servers {
		fmt.Fprintf(w, " %s | CPU s/GiB | peak RSS |", s.name)
	}
	if len(servers) == 2 {
		fmt.Fprintf(w, " %s / %s |", servers[0].name, servers[1].name)
	}
	fmt.Fprintf(w, "\n|---|---|")
	for range servers {
		fmt.Fprintf(w, "---:|---:|---:|")
	}
	if len(servers) == 2 {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, k := range rows {
		fmt.Fprintf(w, "| %s | %s |", k.load, k.shape)
		var vals []float64
		for _, s := range servers {
			r := by[key{k.load, k.shape, s.name}]
			v := fmt.Sprintf("%.1f %s", r.value, r.unit)
			if r.note != "" {
				v += " (" + r.note + ")"
			}
			fmt.Fprintf(w, " %s | %.1f | %.0f MiB |", v, r.cpuPerGiB, float64(r.peakRSS)/(1<<20))
			vals = append(vals, r.value)
		}
		if len(vals) == 2 && vals[1] > 0 {
			fmt.Fprintf(w, " %.2f× |", vals[0]/vals[1])
		}
		fmt.Fprintln(w)
	}
}
func buildMinio(ctx context.Context, tmp string) (string, error) {
	fmt.Fprintln(os.Stderr, "building MinIO (go install github.com/minio/minio@latest) in", tmp)
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/minio/minio@latest")
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(tmp, "bin"), "GOFLAGS=-mod=mod")
	cmd.Dir = tmp
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build minio: %w", err)
	}
	return filepath.Join(tmp, "bin", "minio"), nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// peakRSS reads the process's peak resident set (VmHWM).
func peakRSS(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// resetPeak starts a new VmHWM window (Linux: clear_refs 5).
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
