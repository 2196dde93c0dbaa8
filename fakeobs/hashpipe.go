package fakeobs

import (
	"crypto/md5"
	"io"
	"sync"

	"github.com/johannesboyne/gofakes3"
)

// A body large enough to matter (a multipart part, an unsized PUT) is hashed
// on a goroutine of its own while the disk write goes on, so that MD5 and
// the copy to the page cache run on two cores rather than one after the
// other on one. Buffers go round a small ring: one is read into while
// others are being written and hashed.

const (
	pipeMinSize = 1 << 20   // smaller bodies: hash inline
	pipeBufSize = 256 << 10 // one slot of the ring
	pipeBufs    = 4         // slots per body: 1 MiB of memory
)

var pipeBufPool = sync.Pool{New: func() any { b := make([]byte, pipeBufSize); return &b }}

// copyHashing is copyBody with the MD5 computed beside the write.
func copyHashing(w io.Writer, r io.Reader, size int64) ([]byte, error) {
	free := make(chan struct{}, pipeBufs) // one token per free slot
	full := make(chan []byte, pipeBufs)
	bufs := make([]*[]byte, pipeBufs)
	for i := range bufs {
		bufs[i] = pipeBufPool.Get().(*[]byte)
		free <- struct{}{}
	}
	h := md5.New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			h.Write(b)
			free <- struct{}{}
		}
	}()
	// Slots are filled and hashed in ring order, so the k-th token taken
	// (k >= pipeBufs) follows the release of slot k-pipeBufs: slot k%pipeBufs.
	next := 0
	finish := func() {
		close(full)
		<-done
		for _, b := range bufs {
			pipeBufPool.Put(b)
		}
	}
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size+1)
	}
	var n int64
	for {
		<-free
		buf := *bufs[next%pipeBufs]
		m, rerr := io.ReadFull(src, buf)
		if m > 0 {
			full <- buf[:m]
			next++
			if _, werr := w.Write(buf[:m]); werr != nil {
				finish()
				_, _ = io.Copy(io.Discard, src)
				return nil, diskError("write object data", werr)
			}
			n += int64(m)
		} else {
			free <- struct{}{} // slot unused: give it back
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			finish()
			return nil, bodyError(rerr)
		}
	}
	finish()
	if size >= 0 && n != size {
		if n < size {
			return nil, gofakes3.ErrIncompleteBody
		}
		return nil, gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "request body longer than Content-Length")
	}
	return h.Sum(nil), nil
}
