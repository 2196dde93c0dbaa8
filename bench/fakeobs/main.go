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
	minioBin := flag.String("minio", "", "MinIO binary to compare with (default: build it in the temp dir)")
	bigSize := flag.Int64("large-size", 2<<30, "size of the large object in bytes")
	smallN := flag.Int("small-count", 10000, "number of 4 KiB objects")
	workers := flag.Int("workers", 16, "parallel requests for the small objects")
	big := flag.Bool("big", false, "also upload and download a 5 GiB object in 64 MiB parts, checking its MD5")
	only := flag.String("only", "", "run only this server (fakeobs or minio)")
	flag.Parse()
	if *serve != "" {
		serveFakeobs(*serve, *addr)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *minioBin, *bigSize, *smallN, *workers, *big, *only); err != nil {
		fmt.Fprintln(os.Stderr, "fakeobs-bench:", err)
		os.Exit(1)
	}
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

type result struct {
	name    string
	value   float64
	unit    string
	peakRSS int64 // bytes
}

func run(ctx context.Context, minioBin string, bigSize int64, smallN, workers int, big bool, only string) error {
	tmp, err := os.MkdirTemp("", "fakeobs-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	results := map[string][]result{}
	var order []string
	if only == "" || only == "fakeobs" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		cmd := exec.Command(self, "-serve-fakeobs", filepath.Join(tmp, "fakeobs"), "-addr", port)
		rs, err := measure(ctx, "fakeobs", cmd, port, bigSize, smallN, workers, big)
		if err != nil {
			return fmt.Errorf("fakeobs: %w", err)
		}
		results["fakeobs"], order = rs, append(order, "fakeobs")
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
		rs, err := measure(ctx, "minio", cmd, port, bigSize, smallN, workers, big)
		if err != nil {
			return fmt.Errorf("minio: %w", err)
		}
		results["minio"], order = rs, append(order, "minio")
	}
	printTable(os.Stdout, order, results)
	return nil
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

func measure(ctx context.Context, name string, cmd *exec.Cmd, addr string, bigSize int64, smallN, workers int, big bool) ([]result, error) {
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	c := &client{base: "http://" + addr, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := c.do(ctx, http.MethodPut, "/"+bucket, nil, 0, nil); err != nil {
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	pid := cmd.Process.Pid
	var rs []result
	phase := func(label string, unit string, f func() (float64, error)) error {
		resetPeak(pid)
		fmt.Fprintf(os.Stderr, "%s: %s...\n", name, label)
		v, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		rs = append(rs, result{label, v, unit, peakRSS(pid)})
		return nil
	}
	sizeLabel := human(bigSize)
	if err := phase("PUT 1 × "+sizeLabel, "MB/s", func() (float64, error) {
		start := time.Now()
		if err := c.do(ctx, http.MethodPut, "/"+bucket+"/large", newPattern(bigSize), bigSize, nil); err != nil {
			return 0, err
		}
		return mbps(bigSize, time.Since(start)), nil
	}); err != nil {
		return nil, err
	}
	if err := phase("GET 1 × "+sizeLabel, "MB/s", func() (float64, error) {
		start := time.Now()
		n, err := c.get(ctx, "/"+bucket+"/large", io.Discard)
		if err == nil && n != bigSize {
			err = fmt.Errorf("got %d bytes, want %d", n, bigSize)
		}
		return mbps(bigSize, time.Since(start)), err
	}); err != nil {
		return nil, err
	}
	small := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	if err := phase(fmt.Sprintf("PUT %d × 4 KiB", smallN), "obj/s", func() (float64, error) {
		start := time.Now()
		err := parallel(ctx, smallN, workers, func(i int) error {
			return c.do(ctx, http.MethodPut, fmt.Sprintf("/%s/small/%05d", bucket, i), bytes.NewReader(small), int64(len(small)), nil)
		})
		return float64(smallN) / time.Since(start).Seconds(), err
	}); err != nil {
		return nil, err
	}
	if err := phase(fmt.Sprintf("GET %d × 4 KiB", smallN), "obj/s", func() (float64, error) {
		start := time.Now()
		err := parallel(ctx, smallN, workers, func(i int) error {
			n, err := c.get(ctx, fmt.Sprintf("/%s/small/%05d", bucket, i), io.Discard)
			if err == nil && n != int64(len(small)) {
				err = fmt.Errorf("small object %d: %d bytes", i, n)
			}
			return err
		})
		return float64(smallN) / time.Since(start).Seconds(), err
	}); err != nil {
		return nil, err
	}
	if big {
		const bigObj = 5 << 30
		var want []byte
		if err := phase("multipart PUT 5 GiB (64 MiB parts)", "MB/s", func() (float64, error) {
			start := time.Now()
			sum, err := c.multipartPut(ctx, "/"+bucket+"/huge", bigObj, 64<<20, 4)
			want = sum
			return mbps(bigObj, time.Since(start)), err
		}); err != nil {
			return nil, err
		}
		if err := phase("GET 5 GiB, MD5 checked", "MB/s", func() (float64, error) {
			start := time.Now()
			h := md5.New()
			n, err := c.get(ctx, "/"+bucket+"/huge", h)
			if err == nil && (n != bigObj || !bytes.Equal(h.Sum(nil), want)) {
				err = fmt.Errorf("5 GiB object came back different (%d bytes)", n)
			}
			return mbps(bigObj, time.Since(start)), err
		}); err != nil {
			return nil, err
		}
	}
	return rs, nil
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
func (c *client) multipartPut(ctx context.Context, path string, size, partSize int64, conc int) ([]byte, error) {
	data, err := c.doBody(ctx, http.MethodPost, path+"?uploads", nil)
	if err != nil {
		return nil, err
	}
	var init struct {
		UploadID string `xml:"UploadId"`
	}
	if err := xml.Unmarshal(data, &init); err != nil || init.UploadID == "" {
		return nil, fmt.Errorf("initiate: %v %s", err, data)
	}
	n := int((size + partSize - 1) / partSize)
	etags := make([]string, n)
	err = parallel(ctx, n, conc, func(i int) error {
		off := int64(i) * partSize
		sz := min(partSize, size-off)
		var h http.Header
		if err := c.do(ctx, http.MethodPut, fmt.Sprintf("%s?partNumber=%d&uploadId=%s", path, i+1, init.UploadID), patternAt(off, sz), sz, &h); err != nil {
			return err
		}
		etags[i] = h.Get("ETag")
		return nil
	})
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.WriteString("<CompleteMultipartUpload>")
	for i, e := range etags {
		fmt.Fprintf(&sb, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i+1, e)
	}
	sb.WriteString("</CompleteMultipartUpload>")
	if _, err := c.doBody(ctx, http.MethodPost, path+"?uploadId="+init.UploadID, []byte(sb.String())); err != nil {
		return nil, err
	}
	h := md5.New()
	if _, err := io.Copy(h, newPattern(size)); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
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

func printTable(w io.Writer, order []string, results map[string][]result) {
	if len(order) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| workload |")
	for _, s := range order {
		fmt.Fprintf(w, " %s | %s peak RSS |", s, s)
	}
	fmt.Fprintf(w, "\n|---|")
	for range order {
		fmt.Fprintf(w, "---:|---:|")
	}
	fmt.Fprintln(w)
	for i, r := range results[order[0]] {
		fmt.Fprintf(w, "| %s |", r.name)
		for _, s := range order {
			rr := results[s][i]
			fmt.Fprintf(w, " %.1f %s | %.0f MiB |", rr.value, rr.unit, float64(rr.peakRSS)/(1<<20))
		}
		fmt.Fprintln(w)
	}
}
