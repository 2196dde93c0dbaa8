package audit

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

//go:embed signatures.rules
var builtinRules []byte

// Signature is one malicious-code pattern of rule MA-MAL-001.
type Signature struct {
	Name        string
	Pattern     []byte
	NoCase      bool // ASCII letters match in any case
	Description string
}

const (
	minPattern = 3
	maxPattern = 256
)

// BuiltinSignatures returns the signatures shipped with malocal: the EICAR
// test string, crypto-miner pool strings and reverse-shell one-liners.
func BuiltinSignatures() []Signature {
	sigs, err := ParseSignatures(bytes.NewReader(builtinRules))
	if err != nil {
		panic(fmt.Sprintf("audit: built-in signatures: %v", err)) // the embedded file is tested
	}
	return sigs
}

// ParseSignatures reads a rules file; the format is described at the top of
// signatures.rules: `NAME KIND "PATTERN" DESCRIPTION`, KIND text|itext|hex.
func ParseSignatures(r io.Reader) ([]Signature, error) {
	var out []Signature
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSignatureLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("line %d: rule %q defined twice", n, s.Name)
		}
		seen[s.Name] = true
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return out, nil
}

func parseSignatureLine(line string) (Signature, error) {
	name, rest, _ := strings.Cut(line, " ")
	rest = strings.TrimLeft(rest, " \t")
	kind, rest, _ := strings.Cut(rest, " ")
	rest = strings.TrimLeft(rest, " \t")
	if name == "" || strings.IndexFunc(name, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) >= 0 {
		return Signature{}, fmt.Errorf("bad rule name %q", name)
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil || !strings.HasPrefix(q, `"`) {
		return Signature{}, fmt.Errorf("rule %s: pattern must be a double-quoted string", name)
	}
	pat, err := strconv.Unquote(q)
	if err != nil {
		return Signature{}, fmt.Errorf("rule %s: %w", name, err)
	}
	s := Signature{Name: name, Description: strings.TrimSpace(rest[len(q):])}
	switch kind {
	case "text":
		s.Pattern = []byte(pat)
	case "itext":
		s.Pattern, s.NoCase = bytes.ToLower([]byte(pat)), true
	case "hex":
		b, err := hex.DecodeString(strings.ReplaceAll(pat, " ", ""))
		if err != nil {
			return Signature{}, fmt.Errorf("rule %s: %w", name, err)
		}
		s.Pattern = b
	default:
		return Signature{}, fmt.Errorf("rule %s: kind %q: use text, itext or hex", name, kind)
	}
	if len(s.Pattern) < minPattern || len(s.Pattern) > maxPattern {
		return Signature{}, fmt.Errorf("rule %s: pattern of %d bytes: want %d to %d", name, len(s.Pattern), minPattern, maxPattern)
	}
	if s.Description == "" {
		s.Description = s.Name
	}
	return s, nil
}

// matcher finds signatures in a stream in one pass: a bitmap of the
// patterns' first two bytes rejects almost every position, and only the
// few candidates left are compared in full. (One bytes.Index per pattern
// costs a pass per pattern; with some fifty patterns that was ten times
// slower.) It is shared read-only between scanners.
type matcher struct {
	names  []string
	pats   [][]byte // lowercased when nocase[i]
	nocase []bool
	// bits has a bit for the case-folded first two bytes of every pattern,
	// exact or not, so one test per position serves both kinds.
	bits   [1024]uint64
	byPair map[uint16][]int32
	maxLen int
}

var lowerTable = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] = byte(i) + 'a' - 'A'
		}
	}
	return t
}()

func newMatcher(sigs []Signature) *matcher {
	m := &matcher{byPair: map[uint16][]int32{}}
	for i, s := range sigs {
		p := s.Pattern
		if s.NoCase {
			p = bytes.ToLower(p)
		}
		m.names = append(m.names, s.Name)
		m.nocase = append(m.nocase, s.NoCase)
		m.pats = append(m.pats, p)
		m.maxLen = max(m.maxLen, len(p))
		k := uint16(lowerTable[p[0]])<<8 | uint16(lowerTable[p[1]])
		m.bits[k>>6] |= 1 << (k & 63)
		m.byPair[k] = append(m.byPair[k], int32(i))
	}
	return m
}

// scanner is an io.Writer that records which signatures occur in what is
// written to it. It keeps the last maxLen-1 bytes of each write, so a
// pattern split across two writes is still found.
type scanner struct {
	m    *matcher
	tail []byte // last maxLen-1 bytes seen
	win  []byte // reusable buffer for the boundary window
	hits []bool
	n    int
}

func (m *matcher) newScanner() *scanner {
	return &scanner{m: m, hits: make([]bool, len(m.names))}
}

func (s *scanner) reset() {
	s.tail = s.tail[:0]
	clear(s.hits)
	s.n = 0
}

func (s *scanner) Write(p []byte) (int, error) {
	if s.m.maxLen == 0 || len(p) == 0 {
		return len(p), nil
	}
	keep := s.m.maxLen - 1
	if len(s.tail) > 0 {
		// Only matches that start in the tail are new here; the rest lie
		// wholly inside p and are found below.
		s.win = append(append(s.win[:0], s.tail...), p[:min(len(p), keep)]...)
		s.search(s.win, len(s.tail))
	}
	s.search(p, len(p))
	if len(p) >= keep {
		s.tail = append(s.tail[:0], p[len(p)-keep:]...)
	} else {
		s.tail = append(s.tail, p...)
		if len(s.tail) > keep {
			s.tail = s.tail[len(s.tail)-keep:]
		}
	}
	s.n += len(p)
	return len(p), nil
}

// search marks the patterns found in b that start before limit.
func (s *scanner) search(b []byte, limit int) {
	m := s.m
	end := min(limit, len(b)-1)
	if end <= 0 {
		return
	}
	// Ranging over b[1:end+1] with the previous byte carried along keeps
	// the hot loop free of bounds checks.
	prev := uint16(lowerTable[b[0]])
	for j, c := range b[1 : end+1] {
		cur := uint16(lowerTable[c])
		k := prev<<8 | cur
		prev = cur
		if m.bits[k>>6]&(1<<(k&63)) == 0 {
			continue
		}
		i := j // the candidate starts at b[j]
		for _, id := range m.byPair[k] {
			if s.hits[id] {
				continue
			}
			p := m.pats[id]
			if m.nocase[id] {
				s.hits[id] = foldedAt(b[i:], p)
			} else {
				s.hits[id] = len(b)-i >= len(p) && bytes.Equal(b[i:i+len(p)], p)
			}
		}
	}
}

// foldedAt is whether b starts with the lowercase pattern p, ignoring the
// case of ASCII letters in b.
func foldedAt(b, p []byte) bool {
	if len(b) < len(p) {
		return false
	}
	for j, c := range p {
		if lowerTable[b[j]] != c {
			return false
		}
	}
	return true
}

// found returns the names of the signatures seen since the last reset.
func (s *scanner) found() []string {
	var out []string
	for i, h := range s.hits {
		if h {
			out = append(out, s.m.names[i])
		}
	}
	sort.Strings(out)
	return out
}
