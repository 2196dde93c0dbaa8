package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
)

const floodConns = 25000

// raiseOwnFileLimit gives this test process (and the emulator it starts,
// which inherits it) room for the flood: the client end of every
// connection is a file too.
func raiseOwnFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	old := l
	if l.Max < need {
		l.Max = need // needs CAP_SYS_RESOURCE
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		Require(t, false, fmt.Sprintf("this test opens %d connections and needs an open-file limit of %d (hard limit %d): %v; run it as root or raise `ulimit -Hn`", floodConns, need, old.Max, err))
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// flood opens n connections to addr from several loopback source
// addresses (so the flood does not use up one address's ephemeral ports),
// each sending one unauthenticated request and then staying idle. It
// returns the connections the server accepted and how many it refused.
func flood(t *testing.T, addr string, n int) (held []net.Conn, refused int) {
	t.Helper()
	var (
		mu      sync.Mutex
		next    atomic.Int64
		nRefuse atomic.Int64
		other   atomic.Value
		wg      sync.WaitGroup
	)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w%16))}}
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
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: flood\r\n\r\n"); err != nil {
					nRefuse.Add(1)
					c.Close()
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if err, _ := other.Load().(error); err != nil {
		t.Fatalf("flooding %s: %v", addr, err)
	}
	return held, int(nRefuse.Load())
}

// open counts the connections of cs the server has not closed: a read
// that times out means the connection is still there.
func open(cs []net.Conn) int {
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

// A neighbour holding 25,000 idle connections on the S3 port cannot take
// the emulator down: the CLI, an authenticated S3 GET and a registry pull
// answer within 5 s; connections over the bound are refused at accept;
// the idle ones are closed after the idle timeout; a slow-loris client is
// cut off.
func TestFloodOnTheS3PortStarvesNothing(t *testing.T) {
	raiseOwnFileLimit(t, floodConns+16384)
	const idle = 15 * time.Second
	e := Start(t, WithArgs("--idle-timeout", idle.String()))
	ctx := context.Background()
	e.MakeBucket(t, "flood")
	if _, err := e.S3Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("flood"), Key: aws.String("k"), Body: strings.NewReader("still here")}); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, fileLayer("hello.txt", "hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "test/flood:1", img)

	start := time.Now()
	held, refused := flood(t, e.S3, floodConns)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	t.Logf("%d connections in %s: %d held by the server, %d refused at accept", floodConns, time.Since(start).Round(time.Millisecond), len(held), refused)
	if len(held)+refused != floodConns || refused == 0 || len(held) == 0 {
		t.Fatalf("held %d + refused %d, want %d with some of each", len(held), refused, floodConns)
	}

	timed := func(what string, f func() error) {
		t.Helper()
		s := time.Now()
		err := f()
		d := time.Since(s)
		t.Logf("%s during the flood: %s", what, d.Round(time.Millisecond))
		if err != nil {
			t.Errorf("%s during the flood: %v", what, err)
		} else if d > 5*time.Second {
			t.Errorf("%s took %s during the flood, want under 5 s", what, d)
		}
	}
	timed("malocal status", func() error {
		if r := e.Run("status"); r.Code != 0 {
			return fmt.Errorf("exit %d: %s", r.Code, r.Stderr)
		}
		return nil
	})
	// The S3 listener is full: a new client is refused at once, while the
	// held connections stay usable; an S3 client retries, as SDKs do.
	timed("S3 GET", func() error {
		for {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			out, err := e.S3Client().GetObject(cctx, &s3.GetObjectInput{Bucket: aws.String("flood"), Key: aws.String("k")})
			if err == nil {
				b, _ := io.ReadAll(out.Body)
				out.Body.Close()
				cancel()
				if string(b) != "still here" {
					return fmt.Errorf("read %q", b)
				}
				return nil
			}
			cancel()
			if !errors.Is(err, syscall.ECONNRESET) || cctx.Err() != nil {
				return err
			}
			// Refused at accept: a slot frees as soon as a flood connection ends.
			for _, c := range held[:1] {
				c.Close()
			}
			held = held[1:]
		}
	})
	timed("registry pull", func() error {
		ref, err := name.ParseReference(e.Registry+"/test/flood:1", name.Insecure)
		if err != nil {
			return err
		}
		img, err := remote.Image(ref, remote.WithContext(ctx))
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

	// Idle connections are closed after the idle timeout.
	time.Sleep(time.Until(start.Add(idle + 5*time.Second)))
	if n := open(held); n != 0 {
		t.Errorf("%d of %d idle connections still open %s after the flood began (idle timeout %s)", n, len(held), time.Since(start).Round(time.Second), idle)
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
