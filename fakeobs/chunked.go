package fakeobs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// chunkedReader decodes an aws-chunked body, checking each chunk's signature
// (for the signed forms) as the chunk ends. Bytes of a chunk reach the
// backend before its signature is checked, but a failure makes the read
// fail, and the backend commits nothing unless the body reads to EOF.
type chunkedReader struct {
	br     *bufio.Reader
	signed bool
	key    []byte
	date   string // X-Amz-Date of the request
	scope  string
	prev   string // signature of the previous chunk (seeded by the request's)
	st     *bodyState

	remaining int64
	sig       string
	h         hash.Hash
	done      bool
}

func newChunkedReader(body io.Reader, signed bool, key []byte, sr *sigRequest, st *bodyState) *chunkedReader {
	return &chunkedReader{
		br: bufio.NewReaderSize(body, 64<<10), signed: signed, key: key,
		date: sr.amzDateRaw, scope: sr.scope(), prev: sr.signature, st: st, h: sha256.New(),
	}
}

func badChunk(msg string) *authFailure {
	return &authFailure{http.StatusBadRequest, "IncompleteBody", "malformed aws-chunked body: " + msg}
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.remaining == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.nextChunk(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	c.h.Write(p[:n])
	c.remaining -= int64(n)
	if c.remaining == 0 {
		if err := c.endChunk(); err != nil {
			return n, err
		}
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *chunkedReader) line() (string, error) {
	l, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", c.st.fail(badChunk("line too long"))
		}
		if err == io.EOF {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimRight(string(l), "\r\n"), nil
}

func (c *chunkedReader) nextChunk() error {
	hdr, err := c.line()
	if err != nil {
		return err
	}
	sizeStr, ext, _ := strings.Cut(hdr, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
	if err != nil || size < 0 {
		return c.st.fail(badChunk("bad chunk size"))
	}
	c.sig = ""
	if v, ok := strings.CutPrefix(ext, "chunk-signature="); ok {
		c.sig = v
	}
	if c.signed && c.sig == "" {
		return c.st.fail(signatureMismatch())
	}
	c.h.Reset()
	if size > 0 {
		c.remaining = size
		return nil
	}
	// The final, empty chunk: check it, then read trailers up to a blank line.
	if err := c.checkChunkSig(); err != nil {
		return err
	}
	var trailer strings.Builder
	trailerSig := ""
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if l == "" {
			break
		}
		k, v, _ := strings.Cut(l, ":")
		if strings.EqualFold(strings.TrimSpace(k), "x-amz-trailer-signature") {
			trailerSig = strings.TrimSpace(v)
			continue
		}
		trailer.WriteString(strings.ToLower(strings.TrimSpace(k)) + ":" + strings.TrimSpace(v) + "\n")
	}
	if c.signed && trailer.Len() > 0 {
		sts := strings.Join([]string{"AWS4-HMAC-SHA256-TRAILER", c.date, c.scope, c.prev, sha256Hex(trailer.String())}, "\n")
		want := hex.EncodeToString(hmacSHA256(c.key, sts))
		if subtle.ConstantTimeCompare([]byte(want), []byte(trailerSig)) != 1 {
			return c.st.fail(signatureMismatch())
		}
	}
	c.done = true
	return nil
}

func (c *chunkedReader) endChunk() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.br, crlf[:]); err != nil {
		return io.ErrUnexpectedEOF
	}
	if !bytes.Equal(crlf[:], []byte("\r\n")) {
		return c.st.fail(badChunk("chunk not followed by CRLF"))
	}
	return c.checkChunkSig()
}

func (c *chunkedReader) checkChunkSig() error {
	if !c.signed {
		return nil
	}
	sts := strings.Join([]string{"AWS4-HMAC-SHA256-PAYLOAD", c.date, c.scope, c.prev, emptySHA256, hex.EncodeToString(c.h.Sum(nil))}, "\n")
	want := hex.EncodeToString(hmacSHA256(c.key, sts))
	if subtle.ConstantTimeCompare([]byte(want), []byte(c.sig)) != 1 {
		return c.st.fail(signatureMismatch())
	}
	c.prev = c.sig
	return nil
}
