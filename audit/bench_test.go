package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
)

var benchLayer struct {
	once sync.Once
	blob []byte // gzip of a tar of 100 files of 1 MiB
}

// benchBlob is 100 MiB in 100 files of mildly compressible bytes, stored
// gzipped as in a registry.
func benchBlob(b *testing.B) []byte {
	benchLayer.once.Do(func() {
		r := rand.New(rand.NewPCG(7, 7))
		words := []string{"tensor ", "model ", "epoch ", "loss ", "grad ", "0.125 ", "weights\n", "import "}
		var es []tf
		for i := 0; i < 100; i++ {
			buf := make([]byte, 0, 1<<20)
			for len(buf) < 1<<20-16 {
				if r.IntN(4) == 0 {
					buf = append(buf, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
				} else {
					buf = append(buf, words[r.IntN(len(words))]...)
				}
			}
			es = append(es, file(fmt.Sprintf("home/work/user-job-dir/data/%03d.bin", i), string(buf), 0o644))
		}
		benchLayer.blob = gz(b, tarOf(b, es...))
	})
	return benchLayer.blob
}

// BenchmarkAuditAddedLayer audits an image whose one added layer is
// benchBlob, on a base this Auditor has already indexed: decompression,
// the diff_id, tar parsing and the signature scan. Compare with
// BenchmarkFloorGunzipSHA256 of the same run: wall time on a shared
// machine says little by itself.
// Run: go test -run '^$' -bench 'AddedLayer|Floor' ./audit/
func BenchmarkAuditAddedLayer(b *testing.B) {
	f := newFixture(b)
	blob := benchBlob(b)
	// Stored gzipped: go-containerregistry would otherwise compress the
	// layer again on every read.
	img := appendLayers(b, f.base, layerFromTar(b, blob))
	a := NewAuditor(f.catalog, nil)
	mustAudit(b, a, f.base, Options{}) // index the base once
	b.SetBytes(100 << 20)
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op") }()
	for b.Loop() {
		rep, err := a.Audit(context.Background(), img, Options{})
		if err != nil || rep.Verdict != Pass {
			b.Fatalf("%v %v", err, rep.Violations)
		}
	}
}

// BenchmarkFloorGunzipSHA256 is the least any audit must do with the same
// layer: decompress it and hash it.
func BenchmarkFloorGunzipSHA256(b *testing.B) {
	blob := benchBlob(b)
	b.SetBytes(100 << 20)
	b.ResetTimer()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op") }()
	for b.Loop() {
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, zr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScan is the signature scan alone, over text-like bytes.
func BenchmarkScan(b *testing.B) {
	m := newMatcher(BuiltinSignatures())
	r := rand.New(rand.NewPCG(1, 1))
	words := []string{"tensor ", "model ", "epoch ", "loss ", "grad ", "0.125 ", "weights\n", "import ", "stream ", "nccl "}
	buf := make([]byte, 0, 1<<20)
	for len(buf) < 1<<20-16 {
		buf = append(buf, words[r.IntN(len(words))]...)
	}
	s := m.newScanner()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		s.reset()
		for off := 0; off < len(buf); off += 128 << 10 {
			s.Write(buf[off:min(off+128<<10, len(buf))])
		}
	}
}
