package fakeobs

import (
	"bytes"
	"log/slog"
	"os"
	"path"
	"testing"
)

// The direct writer must leave exactly the bytes written, at the offset
// given, whatever the body's length against the alignment and the buffer.
func TestDirectWriterKeepsEveryByte(t *testing.T) {
	b, err := openBackend(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	sizes := []int{1, directAlign - 1, directAlign, directAlign + 1, directBufSize - 1, directBufSize, directBufSize + 1, 3*directBufSize + 17}
	for _, off := range []int64{0, 5 * directAlign} {
		for i, n := range sizes {
			name := path.Join(tmpDir, randomName())
			f, err := b.root.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			w := b.newDirectWriter(name, f, off)
			if w == nil {
				t.Fatalf("no direct I/O on the test's file system (%s): the test cannot tell anything", os.TempDir())
			}
			want := randBytes(uint64(i), n)
			// Odd write sizes, as a network body arrives.
			for rest := want; len(rest) > 0; {
				k := min(len(rest), 70001)
				if _, err := w.Write(rest[:k]); err != nil {
					t.Fatal(err)
				}
				rest = rest[k:]
			}
			if err := w.flush(); err != nil {
				t.Fatal(err)
			}
			w.close()
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := b.root.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(got)) != off+int64(n) || !bytes.Equal(got[off:], want) || !bytes.Equal(got[:off], make([]byte, off)) {
				t.Fatalf("offset %d, %d bytes: file holds %d bytes, not what was written", off, n, len(got))
			}
		}
	}
}

// A writer that cannot open its file directly gives way to the page cache.
func TestDirectWriterRefusesUnalignedOffset(t *testing.T) {
	b, err := openBackend(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if w := b.newDirectWriter(path.Join(tmpDir, "x"), nil, 100); w != nil {
		t.Fatal("a direct writer at an unaligned offset")
	}
}
