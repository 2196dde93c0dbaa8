package audit

import (
	"bytes"
	"context"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FuzzReadLayer feeds arbitrary bytes to the layer reader, as a hostile
// registry or tarball could: it must never panic, never fail to audit
// (the bytes come from memory, so no error is the source's), and a layer
// it cannot read to its end must carry a MA-LAYER-001 finding.
func FuzzReadLayer(f *testing.F) {
	f.Add(tarOf(f, file("a", "b", 0o644)))
	f.Add(gz(f, tarOf(f, dir("usr"), file("usr/x", eicar, 0o4755), hardlink("y", "usr/x"), whiteout(".wh.z"))))
	f.Add(zstdOf(f, tarOf(f, symlink("l", "/"), file("l/x", "x", 0o644))))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	m := newMatcher(BuiltinSignatures())
	f.Fuzz(func(t *testing.T, data []byte) {
		spec := readSpec{parse: true, keep: true, sigs: m, hashPath: func(*entry) bool { return true },
			limits: Limits{MaxEntries: 1000, MaxLayerBytes: 8 << 20, MaxRatio: 100}}
		r, err := readLayer(context.Background(), bytesLayer(data), sha(nil), spec)
		if err != nil {
			t.Fatalf("error from an in-memory layer: %v", err)
		}
		if !r.complete && len(r.bad) == 0 {
			t.Fatal("incomplete read without a finding")
		}
		ix := newIndex()
		ix.apply(r.entries)
		ix.seal()
		newChecker(ix, mustProtector(t), &Report{}).layer(1, "sha256:x", r.entries)
	})
}

func mustProtector(t *testing.T) *protector {
	p, err := newProtector(DefaultProtected)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bytesLayer is a layer whose stored bytes are b.
type bytesLayer []byte

func (b bytesLayer) Digest() (v1.Hash, error)           { return sha(b), nil }
func (b bytesLayer) DiffID() (v1.Hash, error)           { return sha(b), nil }
func (b bytesLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
func (b bytesLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(b)), nil
}
func (b bytesLayer) Size() (int64, error)                { return int64(len(b)), nil }
func (b bytesLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
