package fakeobs

import (
	"bytes"
	"crypto/md5"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/johannesboyne/gofakes3"
)

func TestCopyHashing(t *testing.T) {
	for _, n := range []int{0, 1, pipeBufSize - 1, pipeBufSize, pipeBufSize + 1, 5*pipeBufSize + 7} {
		data := randBytes(uint64(n), n)
		want := md5.Sum(data)
		// Whole reads and short ones: the ring must not mix up its slots.
		for _, r := range []io.Reader{bytes.NewReader(data), iotest.HalfReader(bytes.NewReader(data))} {
			var out bytes.Buffer
			sum, err := copyHashing(&out, r, int64(n))
			if err != nil || !bytes.Equal(sum, want[:]) || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("%d bytes: err %v, sum ok %v, data ok %v", n, err, bytes.Equal(sum, want[:]), bytes.Equal(out.Bytes(), data))
			}
		}
	}
	data := randBytes(9, 3*pipeBufSize)
	if _, err := copyHashing(&bytes.Buffer{}, bytes.NewReader(data), int64(len(data))+1); !errors.Is(err, gofakes3.ErrIncompleteBody) {
		t.Errorf("short body: %v", err)
	}
	if _, err := copyHashing(&bytes.Buffer{}, bytes.NewReader(data), int64(len(data))-1); err == nil {
		t.Error("long body accepted")
	}
	if _, err := copyHashing(failWriter{}, bytes.NewReader(data), -1); err == nil {
		t.Error("write error lost")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk on fire") }
