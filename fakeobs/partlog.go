package fakeobs

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// The part log, "parts" in an upload's directory, records the parts written
// in place into "data": one fixed slot per part number, at
// (number-1)×partSlotSize. The log grows in zero-filled chunks made durable
// once; recording a part then overwrites blocks already allocated, which
// fdatasync makes durable without a file-system journal commit. A new
// directory entry per part (a marker file, as earlier versions did) costs a
// journal commit per part, and on a busy machine every commit waits behind
// the writeback of everyone's dirty pages: that second commit per part was
// what made large uploads slower than MinIO's under a test run's load.
//
// A slot holds, little-endian: part number (4 bytes), MD5 (16), offset (8),
// size (8), last-modified in Unix nanoseconds (8), 16 zero bytes, and a
// CRC-32 of the 60 bytes before it. A zero slot is a part not recorded.
const (
	partLogName  = "parts"
	partSlotSize = 64
	partLogChunk = 64 << 10 // 1,024 slots: one journal commit per 1,024 parts at most
)

func encodePartSlot(p partFile) []byte {
	s := make([]byte, partSlotSize)
	binary.LittleEndian.PutUint32(s[0:], uint32(p.number))
	sum, _ := hex.DecodeString(p.etag)
	copy(s[4:20], sum)
	binary.LittleEndian.PutUint64(s[20:], uint64(p.off))
	binary.LittleEndian.PutUint64(s[28:], uint64(p.size))
	binary.LittleEndian.PutUint64(s[36:], uint64(p.mod.UnixNano()))
	binary.LittleEndian.PutUint32(s[60:], crc32.ChecksumIEEE(s[:60]))
	return s
}

// decodePartSlot reads the slot of part num; ok is false for an empty slot
// or one that does not check out.
func decodePartSlot(s []byte, num int) (partFile, bool) {
	if len(s) != partSlotSize || binary.LittleEndian.Uint32(s[60:]) != crc32.ChecksumIEEE(s[:60]) {
		return partFile{}, false
	}
	p := partFile{
		number:  int(binary.LittleEndian.Uint32(s[0:])),
		etag:    hex.EncodeToString(s[4:20]),
		off:     int64(binary.LittleEndian.Uint64(s[20:])),
		size:    int64(binary.LittleEndian.Uint64(s[28:])),
		mod:     time.Unix(0, int64(binary.LittleEndian.Uint64(s[36:]))),
		inPlace: true,
	}
	if p.number != num || p.off < 0 || p.size <= 0 {
		return partFile{}, false
	}
	return p, true
}

// readPartLog returns the parts recorded in the upload's log (none if it
// has no log yet).
func (b *backend) readPartLog(id gofakes3.UploadID) (map[int]partFile, error) {
	raw, err := b.root.ReadFile(path.Join(uploadPath(id), partLogName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fakeobs: read part log of %s: %w", id, err)
	}
	out := map[int]partFile{}
	for i := 0; (i+1)*partSlotSize <= len(raw) && i < gofakes3.MaxUploadPartNumber; i++ {
		if p, ok := decodePartSlot(raw[i*partSlotSize:(i+1)*partSlotSize], i+1); ok {
			out[p.number] = p
		}
	}
	return out, nil
}

// writePartSlot durably writes slot (a record, or zeros to clear one) for
// part num, growing the log first if the slot lies beyond it. The caller
// holds the upload's lock.
func (b *backend) writePartSlot(id gofakes3.UploadID, num int, slot []byte) error {
	name := path.Join(uploadPath(id), partLogName)
	f, err := b.root.OpenFile(name, os.O_RDWR, 0)
	created := false
	if errors.Is(err, fs.ErrNotExist) {
		f, err = b.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = true
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return gofakes3.ErrNoSuchUpload // aborted meanwhile
		}
		return diskError("open part log", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return diskError("stat part log", err)
	}
	off := int64(num-1) * partSlotSize
	if end := off + partSlotSize; fi.Size() < end {
		// Zeros written, not a hole or fallocate's unwritten extent: a later
		// overwrite of either would change the file's block map again.
		grown := (end + partLogChunk - 1) / partLogChunk * partLogChunk
		if _, err := f.WriteAt(make([]byte, grown-fi.Size()), fi.Size()); err != nil {
			return diskError("grow part log", err)
		}
		if err := syncData(f); err != nil {
			return diskError("sync part log", err)
		}
		if created {
			if err := b.syncDir(uploadPath(id)); err != nil {
				return err
			}
		}
	}
	if _, err := f.WriteAt(slot, off); err != nil {
		return diskError("record part", err)
	}
	if err := syncData(f); err != nil {
		return diskError("sync part log", err)
	}
	return nil
}
