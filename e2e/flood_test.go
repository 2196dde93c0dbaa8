package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/malocal/malocal/api"
)

const floodConns = 25000

// floodHelpers is how many processes share the flood: each holds its
// share of the connections, so no process needs more than the usual
// open-file limit.
const floodHelpers = 2

// A test binary started with MALOCAL_FLOOD_ADDR set is a flood helper:
// it opens MALOCAL_FLOOD_N connections to that address, each sending one
// unauthenticated request and then staying idle, prints "held H refused R",
// then answers each "count" line on stdin with how many of them the server
// has not closed yet, and exits (closing them) at the end of stdin.
func init() {
	addr := os.Getenv("MALOCAL_FLOOD_ADDR")
	if addr == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv("MALOCAL_FLOOD_N"))
	base, _ := strconv.Atoi(os.Getenv("MALOCAL_FLOOD_SRC"))
	raiseSoftFileLimit()
	held, refused, err := flood(addr, n, base)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("held", len(held), "refused", refused)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println(stillOpen(held))
	}
	os.Exit(0)
}

func raiseSoftFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// flood opens n connections to addr from loopback source addresses
// 127.0.0.<src>…<src+7> (so the flood does not use up one address's
// ephemeral ports). It returns those the server accepted and how many it
// refused at accept.
func flood(addr string, n, src int) (held []net.Conn, refused int, err error) {
	var (
		mu      sync.Mutex
		next    atomic.Int64
		nRefuse atomic.Int64
		other   atomic.Value
		wg      sync.WaitGroup
	)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(src+w%8))}}
			for next.Add(1) <= int64(n) {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
						nRefuse.Add(1)
					} else {
						other.CompareAndSwap(nil, err)
					}
					continue
				}
				// Written even to a connection the server is closing: the
				// write lands in the socket buffer or fails; either is fine.
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: flood\r\n\r\n")
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if e, _ := other.Load().(error); e != nil {
		return held, int(nRefuse.Load()), e
	}
	return held, int(nRefuse.Load()), nil
}

// stillOpen counts the connections of cs the server has not closed: a
// read that times out means the connection is still there.
func stillOpen(cs []net.Conn) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	ch := make(chan net.Conn)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for c := range ch {
				for {
					c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					_, err := c.Read(buf) // the 403 answer first, then EOF once closed
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						n.Add(1)
						break
					}
					if err != nil {
						break
					}
				}
			}
		}()
	}
	for _, c := range cs {
		ch <- c
	}
	close(ch)
	wg.Wait()
	return int(n.Load())
}

// floodHelper is one running flood helper process.
type floodHelper struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	held  int
	refus int
}

func startFloodHelper(t *testing.T, addr string, n, src int) *floodHelper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MALOCAL_FLOOD_ADDR="+addr, "MALOCAL_FLOOD_N="+strconv.Itoa(n), "MALOCAL_FLOOD_SRC="+strconv.Itoa(src))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &floodHelper{cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return h
}

// wait reads the helper's "held H refused R" line.
func (h *floodHelper) wait(t *testing.T) {
	t.Helper()
	if !h.out.Scan() {
		t.Fatalf("flood helper ended: %v", h.out.Err())
	}
	if _, err := fmt.Sscanf(h.out.Text(), "held %d refused %d", &h.held, &h.refus); err != nil {
		t.Fatalf("flood helper: %q", h.out.Text())
	}
}

func (h *floodHelper) open(t *testing.T) int {
	t.Helper()
	io.WriteString(h.in, "count\n")
	if !h.out.Scan() {
		t.Fatalf("flood helper ended: %v", h.out.Err())
	}
	n, err := strconv.Atoi(h.out.Text())
	if err != nil {
		t.Fatalf("flood helper: %q", h.out.Text())
	}
	return n
}

// A neighbour opening 25,000 idle connections on the S3 port cannot take
// the emulator down: the S3 listener holds its bound of them (an idle one
// makes room for a newcomer), the CLI, an authenticated S3 GET and a
// registry pull answer within 5 s, the idle ones are closed after the idle
// timeout, and a slow-loris client is cut off.
func TestFloodOnTheS3PortStarvesNothing(t *testing.T) {
	const idle = 15 * time.Second
	e := Start(t, WithArgs("--idle-timeout", idle.String()))
	seedFloodTargets(t, e)

	start := time.Now()
	var helpers []*floodHelper
	for i := 0; i < floodHelpers; i++ {
		helpers = append(helpers, startFloodHelper(t, e.S3, floodConns/floodHelpers, 2+8*i))
	}
	connected, refused, open := 0, 0, 0
	for _, h := range helpers {
		h.wait(t)
		connected += h.held
		refused += h.refus
	}
	floodEnd := time.Now()
	for _, h := range helpers {
		open += h.open(t)
	}
	t.Logf("%d connections in %s: %d connected (%d of them still open), %d refused at accept",
		floodConns, time.Since(start).Round(time.Millisecond), connected, open, refused)
	if connected+refused != floodConns || open == 0 {
		t.Fatalf("connected %d + refused %d, want %d, some held open", connected, refused, floodConns)
	}

	assertResponsive(t, e, "during the flood")

	// Idle connections are closed after the idle timeout.
	time.Sleep(time.Until(floodEnd.Add(idle + 5*time.Second)))
	left := 0
	for _, h := range helpers {
		left += h.open(t)
	}
	if left != 0 {
		t.Errorf("%d of %d idle connections still open %s after the flood ended (idle timeout %s)", left, open, time.Since(floodEnd).Round(time.Second), idle)
	}

	// A slow-loris client, sending its headers a byte a second, is cut off
	// by the header timeout (10 s).
	c, err := net.Dial("tcp", e.S3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := time.Now()
	req := "GET /flood/k HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 60)
	cut := false
	for i := 0; i < len(req) && time.Since(s) < 30*time.Second; i++ {
		if _, err := c.Write([]byte{req[i]}); err != nil {
			cut = true
			break
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 512)); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				cut = true // the server answered (408) and closed, or reset
				break
			}
		}
	}
	t.Logf("slow-loris client cut off after %s", time.Since(s).Round(time.Second))
	if !cut || time.Since(s) > 20*time.Second {
		t.Errorf("slow-loris client still connected after %s", time.Since(s).Round(time.Second))
	}
}

// seedFloodTargets gives assertResponsive what it reads: an object and an
// image.
func seedFloodTargets(t *testing.T, e *Emulator) {
	t.Helper()
	e.MakeBucket(t, "flood")
	if _, err := e.S3Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("flood"), Key: aws.String("k"), Body: strings.NewReader("still here")}); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, fileLayer("hello.txt", "hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "test/flood:1", img)
}

// assertResponsive checks that the CLI (through the API), an
// authenticated S3 GET on the main S3 port and a registry pull each
// answer within 5 s.
func assertResponsive(t *testing.T, e *Emulator, when string) {
	t.Helper()
	ctx := context.Background()
	timed := func(what string, f func() error) {
		t.Helper()
		s := time.Now()
		err := f()
		d := time.Since(s)
		t.Logf("%s %s: %s", what, when, d.Round(time.Millisecond))
		if err != nil {
			t.Errorf("%s %s: %v", what, when, err)
		} else if d > 5*time.Second {
			t.Errorf("%s took %s %s, want under 5 s", what, d, when)
		}
	}
	timed("malocal status", func() error {
		if r := e.Run("status"); r.Code != 0 {
			return fmt.Errorf("exit %d: %s", r.Code, r.Stderr)
		}
		return nil
	})
	// When the S3 listener is full of idle connections, a new client
	// takes the place of one of them.
	timed("S3 GET", func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := e.S3Client().GetObject(cctx, &s3.GetObjectInput{Bucket: aws.String("flood"), Key: aws.String("k")})
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != "still here" {
			return fmt.Errorf("read %q", b)
		}
		return nil
	})
	timed("registry pull", func() error {
		ref, err := name.ParseReference(e.Registry+"/test/flood:1", name.Insecure)
		if err != nil {
			return err
		}
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuth(e.RegistryAuth()))
		if err != nil {
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
	})
}

// jobFlood is a job that floods its own network's gateway, the S3 address
// its environment gives it: it opens FLOOD_N connections, each sending
// one unauthenticated request and then staying idle, prints "held H
// refused R", and holds them until it is stopped. Python: one process
// holds them all, far under the pids limit.
const jobFlood = `import os, resource, socket, sys, time, urllib.parse
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
u = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL"])
held, refused = [], 0
start = time.time()
for i in range(int(os.environ["FLOOD_N"])):
    try:
        s = socket.create_connection((u.hostname, u.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: flood\r\n\r\n")
        held.append(s)
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        refused += 1
print("held", len(held), "refused", refused, "in %.1f s" % (time.time() - start), flush=True)
time.sleep(600)
`

// A job's container that opens thousands of idle connections to its
// gateway cannot take the emulator down: while it holds them, the CLI,
// an authenticated S3 GET on the main port and a registry pull answer
// within 5 s.
func TestFloodFromInsideAJobStarvesNothing(t *testing.T) {
	const n = 6000
	e, img := pythonJobEnv(t)
	seedFloodTargets(t, e)
	e.MakeBucket(t, "code")
	j := submit(t, e, api.JobSpec{Name: "flood", Image: img, AppURL: "s3://code/x/",
		Env: map[string]string{"FLOOD_N": strconv.Itoa(n)}, Command: []string{"python3", "-c", jobFlood}})
	logs := waitLog(t, e, j.ID, "held ", 5*time.Minute)
	var held, refused int
	if i := strings.Index(logs, "held "); i < 0 {
		t.Fatalf("no flood report:\n%s", logs)
	} else if _, err := fmt.Sscanf(logs[i:], "held %d refused %d", &held, &refused); err != nil {
		t.Fatalf("flood report: %v\n%s", err, logs)
	}
	t.Logf("the job's flood of its gateway: %s", strings.TrimSpace(logs[strings.Index(logs, "held "):]))
	if held+refused != n || held == 0 {
		t.Fatalf("held %d + refused %d, want %d, some held", held, refused, n)
	}

	assertResponsive(t, e, "during a job's flood of its gateway")

	if _, err := e.Client().StopJob(context.Background(), j.ID); err != nil {
		t.Fatalf("stopping the flood job: %v", err)
	}
	if j = waitFinal(t, e, j.ID, 2*time.Minute); j.Status != api.StatusCanceled {
		t.Errorf("the flood job ended %s (%s), want canceled", j.Status, j.Reason)
	}
	assertResponsive(t, e, "after a job's flood of its gateway")
}
