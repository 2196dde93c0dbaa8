package audit

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Limits bound what one layer may cost to read. Zero fields take defaults.
type Limits struct {
	// MaxEntries is the most tar entries one layer may hold (default 1,000,000).
	MaxEntries int
	// MaxLayerBytes is the most uncompressed bytes one layer may hold
	// (default: Options.MaxSize, since such a layer fails MA-SIZE-001 anyway).
	MaxLayerBytes int64
	// MaxRatio is the highest uncompressed:compressed ratio allowed once a
	// layer has produced more than 1 MiB (default 100; real layers are
	// rarely above 20, while a gzip bomb is near 1000 and a zstd one far above).
	MaxRatio float64
}

const (
	defaultMaxEntries   = 1_000_000
	defaultMaxRatio     = 100
	ratioFloor          = 1 << 20 // bytes out before the ratio is judged
	maxFindingsPerLayer = 1000
	xattrPrefix         = "SCHILY.xattr."
)

type kind uint8

const (
	kindFile kind = iota
	kindDir
	kindSymlink
	kindHardlink
	kindChar
	kindBlock
	kindFifo
	kindWhiteout // path is the target it hides
	kindOpaque   // path is the directory whose lower content it hides
)

func (k kind) String() string {
	return [...]string{"file", "directory", "symlink", "hardlink", "char device", "block device", "fifo", "whiteout", "opaque whiteout"}[k]
}

// entry is one tar entry, as much of it as the rules compare.
type entry struct {
	path   string // absolute and clean, e.g. /usr/bin/ls
	kind   kind
	mode   int64 // permission bits with setuid, setgid and sticky
	uid    int
	gid    int
	size   int64
	link   string // symlink target as written; hardlink target as a clean absolute path
	dev    string // "major:minor" of a char or block device
	xattrs string // the entry's xattrs in a canonical form, "" when none
	hash   []byte // sha256 of the content, only where it was asked for
}

func (e *entry) setuidRoot() bool {
	return e.kind == kindFile && e.uid == 0 && e.mode&(0o4000|0o2000) != 0
}

func (e *entry) hasCaps() bool {
	return strings.HasPrefix(e.xattrs, "security.capability=") || strings.Contains(e.xattrs, "\nsecurity.capability=")
}

// readSpec says what to do with a layer beyond hashing it.
type readSpec struct {
	parse      bool                // walk the tar entries
	keep       bool                // keep the entries for the caller
	hashPath   func(e *entry) bool // regular files whose content to hash
	sigs       *matcher            // signatures to scan regular files for; nil: none
	limits     Limits
	wantDigest v1.Hash // the compressed digest to verify; zero: not verified
}

// layerRead is the result of reading one layer.
type layerRead struct {
	diffID   v1.Hash // what the uncompressed stream hashes to; valid when complete
	format   string  // gzip, zstd or tar
	rawBytes int64
	size     int64 // uncompressed bytes
	entries  []entry
	bad      []Violation // without the layer fields, which the caller fills
	complete bool        // the whole stream was read and parsed
}

// sourceReader passes the stored bytes through, telling apart errors of the
// source (the audit could not run) from errors of decoding (the layer is bad).
type sourceReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// limitError is a cap being hit: a verdict, not a failure to audit.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

// boundedReader caps the uncompressed bytes and the decompression ratio.
type boundedReader struct {
	r     io.Reader
	src   *sourceReader
	n     int64
	max   int64
	ratio float64 // 0: not compressed, no ratio check
}

func (b *boundedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		return n, &limitError{fmt.Sprintf("layer is larger than the cap of %d uncompressed bytes", b.max)}
	}
	if b.ratio > 0 && b.n > ratioFloor && float64(b.n) > b.ratio*float64(max(b.src.n, 1)) {
		return n, &limitError{fmt.Sprintf("decompression ratio above %.0f:1 (%d bytes from %d): a compression bomb", b.ratio, b.n, b.src.n)}
	}
	return n, err
}

func newHasher(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported digest algorithm %q", alg)
}

// rawLayer is an optional capability of a layer: its stored bytes, read
// without go-containerregistry compressing them on the fly (which it does
// for the uncompressed layers of a docker-save tarball).
type rawLayer interface {
	RawLayer() (io.ReadCloser, error)
}

func openStored(l v1.Layer) (io.ReadCloser, error) {
	if r, ok := l.(rawLayer); ok {
		return r.RawLayer()
	}
	return l.Compressed()
}

// readLayer streams one layer: verifies its compressed digest when asked,
// hashes its uncompressed bytes with the algorithm of want, and, when
// spec.parse, walks its entries as hostile input. A returned error means
// the source failed; anything wrong with the layer itself is in bad.
func readLayer(ctx context.Context, l v1.Layer, want v1.Hash, spec readSpec) (*layerRead, error) {
	rc, err := openStored(l)
	if err != nil {
		return nil, fmt.Errorf("open layer: %w", err)
	}
	defer rc.Close()
	src := &sourceReader{ctx: ctx, r: rc}
	var in io.Reader = src
	var dh hash.Hash
	if spec.wantDigest.Algorithm != "" {
		if dh, err = newHasher(spec.wantDigest.Algorithm); err != nil {
			return nil, err
		}
		in = io.TeeReader(src, dh)
	}
	uh, err := newHasher(want.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("diff_id %s: %w", want, err)
	}
	res := &layerRead{}
	var bounded *boundedReader
	fail := func(detail string) (*layerRead, error) {
		if src.err != nil {
			return nil, fmt.Errorf("read layer: %w", src.err)
		}
		res.bad = append(res.bad, Violation{Rule: RuleHostileLayer, Detail: detail})
		res.rawBytes = src.n
		if bounded != nil {
			res.size = bounded.n // as far as it was read
		}
		return res, nil
	}
	br := bufio.NewReaderSize(in, 64<<10)
	magic, _ := br.Peek(4)
	var dec io.Reader
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		res.format = "gzip"
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fail(fmt.Sprintf("corrupt gzip stream: %v", err))
		}
		defer zr.Close()
		dec = zr
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		res.format = "zstd"
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return fail(fmt.Sprintf("corrupt zstd stream: %v", err))
		}
		defer zr.Close()
		dec = zr
	default:
		res.format = "tar"
		dec = br
	}
	bounded = &boundedReader{r: dec, src: src, max: spec.limits.MaxLayerBytes}
	if res.format != "tar" {
		bounded.ratio = spec.limits.MaxRatio
	}
	ur := io.TeeReader(bounded, uh)
	streamErr := func(err error) (*layerRead, error) {
		var le *limitError
		if errors.As(err, &le) {
			return fail(le.msg)
		}
		return fail(fmt.Sprintf("corrupt %s stream: %v", res.format, err))
	}
	if spec.parse {
		if err := walkTar(ur, res, spec); err != nil {
			if src.err != nil {
				return nil, fmt.Errorf("read layer: %w", src.err)
			}
			var le *limitError
			if errors.As(err, &le) || !isStopped(err) {
				return streamErr(err)
			}
			res.rawBytes, res.size = src.n, bounded.n
			return res, nil
		}
	}
	// The tar reader stops at the end-of-archive blocks; the padding after
	// them is part of the diff_id too.
	if _, err := io.Copy(io.Discard, ur); err != nil {
		return streamErr(err)
	}
	if src.err != nil {
		return nil, fmt.Errorf("read layer: %w", src.err)
	}
	res.rawBytes, res.size = src.n, bounded.n
	res.diffID = v1.Hash{Algorithm: want.Algorithm, Hex: fmt.Sprintf("%x", uh.Sum(nil))}
	res.complete = true
	if dh != nil {
		// Read to the end of the stored blob so the digest covers all of it.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return nil, fmt.Errorf("read layer: %w", err)
		}
		got := fmt.Sprintf("%x", dh.Sum(nil))
		if got != spec.wantDigest.Hex {
			res.bad = append(res.bad, Violation{Rule: RuleLayerDiffID, Detail: fmt.Sprintf("blob hashes to %s:%s, not to its manifest digest %s", spec.wantDigest.Algorithm, got, spec.wantDigest)})
		}
	}
	return res, nil
}

// stopError ends a walk early after the reason was recorded as a violation.
type stopError struct{}

func (stopError) Error() string { return "layer walk stopped" }

func isStopped(err error) bool { return errors.As(err, new(stopError)) }

// walkTar reads the entries of one layer. A violation of an entry is
// recorded and the walk goes on; a violation of the stream (caps, corrupt
// data) ends it.
func walkTar(r io.Reader, res *layerRead, spec readSpec) error {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	linkable := map[string]bool{} // earlier entries a hardlink may name
	symlinks := map[string]bool{} // symlinks of this layer, to catch paths through them
	var sc *scanner
	if spec.sigs != nil {
		sc = spec.sigs.newScanner()
	}
	buf := make([]byte, 128<<10)
	// Findings are kept up to a bound, so that a layer of a million bad
	// entries cannot make the audit itself use a lot of memory.
	dropped := 0
	note := func(v Violation) {
		if len(res.bad) < maxFindingsPerLayer {
			res.bad = append(res.bad, v)
		} else {
			dropped++
		}
	}
	defer func() {
		if dropped > 0 {
			res.bad = append(res.bad, Violation{Rule: RuleHostileLayer, Detail: fmt.Sprintf("%d more findings in this layer not kept", dropped)})
		}
	}()
	bad := func(p, format string, a ...any) {
		note(Violation{Rule: RuleHostileLayer, Path: p, Detail: fmt.Sprintf(format, a...)})
	}
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return err
		}
		if n >= spec.limits.MaxEntries {
			bad("", "more than %d entries in one layer", spec.limits.MaxEntries)
			return stopError{}
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p, why := cleanName(hdr.Name)
		if why != "" {
			bad(hdr.Name, "%s", why)
			continue
		}
		if seen[p] {
			bad(p, "path appears twice in one layer")
			continue
		}
		seen[p] = true
		if len(symlinks) > 0 {
			if via := throughSymlink(p, symlinks); via != "" {
				bad(p, "path goes through %s, a symlink in the same layer", via)
				continue
			}
		}
		e := entry{path: p, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid, size: hdr.Size, xattrs: xattrsOf(hdr)}
		dir, base := path.Split(p)
		switch {
		case base == ".wh..wh..opq":
			e.kind, e.path = kindOpaque, path.Clean(dir)
		case strings.HasPrefix(base, ".wh..wh."):
			bad(p, "reserved whiteout name %q", base)
			continue
		case strings.HasPrefix(base, ".wh."):
			t := base[len(".wh."):]
			if t == "" || t == "." || t == ".." || strings.Contains(t, "/") {
				bad(p, "bad whiteout name %q", base)
				continue
			}
			e.kind, e.path = kindWhiteout, path.Join(dir, t)
		default:
			switch hdr.Typeflag {
			case tar.TypeReg, '\x00':
				e.kind = kindFile
			case tar.TypeDir:
				e.kind, e.size = kindDir, 0
			case tar.TypeSymlink:
				e.kind, e.link, e.size = kindSymlink, hdr.Linkname, 0
				symlinks[p] = true
			case tar.TypeLink:
				t, why := cleanName(hdr.Linkname)
				if why != "" {
					bad(p, "hardlink target %q: %s", hdr.Linkname, why)
					continue
				}
				if !linkable[t] {
					// Extraction resolves a hardlink in the layer being
					// unpacked: a target in a lower layer (or a later
					// entry) fails the pull, and a target outside the
					// image reads what the engine has on disk.
					bad(p, "hardlink to %s, which is not an earlier file of the same layer", t)
					continue
				}
				e.kind, e.link, e.size = kindHardlink, t, 0
			case tar.TypeChar:
				e.kind, e.dev = kindChar, fmt.Sprintf("%d:%d", hdr.Devmajor, hdr.Devminor)
			case tar.TypeBlock:
				e.kind, e.dev = kindBlock, fmt.Sprintf("%d:%d", hdr.Devmajor, hdr.Devminor)
			case tar.TypeFifo:
				e.kind = kindFifo
			default:
				bad(p, "unsupported tar entry type %q", hdr.Typeflag)
				continue
			}
		}
		if e.kind == kindFile && hdr.Size > 0 {
			var ws []io.Writer
			var h hash.Hash
			if spec.hashPath != nil && spec.hashPath(&e) {
				h = sha256.New()
				ws = append(ws, h)
			}
			if sc != nil {
				sc.reset()
				ws = append(ws, sc)
			}
			if len(ws) > 0 {
				if _, err := io.CopyBuffer(io.MultiWriter(ws...), tr, buf); err != nil {
					return err
				}
				if h != nil {
					e.hash = h.Sum(nil)
				}
				if sc != nil {
					if names := sc.found(); len(names) > 0 {
						note(Violation{Rule: RuleMalware, Path: p, Detail: "matches signature " + strings.Join(names, ", ")})
					}
				}
			}
		} else if e.kind == kindFile && spec.hashPath != nil && spec.hashPath(&e) {
			e.hash = emptySHA256[:]
		}
		if e.kind != kindDir && e.kind != kindWhiteout && e.kind != kindOpaque {
			linkable[e.path] = true
		}
		if spec.keep {
			res.entries = append(res.entries, e)
		}
	}
}

var emptySHA256 = sha256.Sum256(nil)

// cleanName turns a tar name into a clean absolute path, or says why it is
// hostile: absolute, with a .. component, or empty.
func cleanName(name string) (string, string) {
	if strings.HasPrefix(name, "/") {
		return "", "absolute path in layer"
	}
	if strings.ContainsRune(name, 0) {
		return "", "NUL byte in path"
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", "path with a .. component escapes the root"
		}
	}
	p := path.Clean("/" + name)
	return p, ""
}

// throughSymlink returns the ancestor of p that is in symlinks, or "".
func throughSymlink(p string, symlinks map[string]bool) string {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if symlinks[d] {
			return d
		}
	}
	return ""
}

// xattrsOf renders an entry's xattrs canonically, so two entries compare
// by string equality.
func xattrsOf(h *tar.Header) string {
	var kv []string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			kv = append(kv, strings.TrimPrefix(k, xattrPrefix)+"="+fmt.Sprintf("%x", v))
		}
	}
	if len(kv) == 0 {
		return ""
	}
	sort.Strings(kv)
	return strings.Join(kv, "\n")
}
