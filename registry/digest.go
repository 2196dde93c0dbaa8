package registry

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"regexp"
	"strings"
)

// digest is a validated "algorithm:hex" content digest. We keep our own type
// because ggcr's v1.Hash knows only sha256 and the spec requires sha512 too.
type digest struct {
	alg string
	hex string
}

func (d digest) String() string { return d.alg + ":" + d.hex }

func parseDigest(s string) (digest, error) {
	alg, h, ok := strings.Cut(s, ":")
	want := 0
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	}
	if !ok || want == 0 || len(h) != want || strings.Trim(h, "0123456789abcdef") != "" {
		return digest{}, withMessage(errDigestInvalid, fmt.Sprintf("invalid digest %q", s))
	}
	return digest{alg, h}, nil
}

func newHasher(alg string) hash.Hash {
	if alg == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

func digestOf(alg string, b []byte) digest {
	h := newHasher(alg)
	h.Write(b)
	return digest{alg, hex.EncodeToString(h.Sum(nil))}
}

var (
	// From the distribution spec.
	nameRe = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

func validName(name string) bool { return len(name) <= 255 && nameRe.MatchString(name) }
