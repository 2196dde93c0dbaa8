package audit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkAuditAddedLayer audits an image whose one added layer holds
// 100 MiB in 100 files of mildly compressible bytes, on a base this
// Auditor has already indexed: decompression, both digests, tar parsing
// and the signature scan. Run: go test -run '^$' -bench AddedLayer ./audit/
func BenchmarkAuditAddedLayer(b *testing.B) {
	f := newFixture(b)
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
	// Stored gzipped, as in a registry: go-containerregistry would
	// otherwise compress the layer again on every read.
	img := appendLayers(b, f.base, layerFromTar(b, gz(b, tarOf(b, es...))))
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
