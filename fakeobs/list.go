package fakeobs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/johannesboyne/gofakes3"
)

type listQuery struct {
	prefix, delim, marker string
	max                   int64
}

type listItem struct {
	key    string
	prefix bool // a common prefix, not an object
	info   objInfo
}

type listResult struct {
	items     []listItem
	truncated bool
	next      string // last key or common prefix returned, when truncated
}

var errListFull = errors.New("list page full")

// list walks the bucket in S3 key order (UTF-8 bytes), skipping subtrees
// that lie wholly before the marker or outside the prefix, so a page costs
// about max-keys file reads however large the bucket is.
func (b *backend) list(bucket string, q listQuery) (*listResult, error) {
	if err := b.requireBucket(bucket); err != nil {
		return nil, err
	}
	res := &listResult{}
	if q.max <= 0 {
		if q.max == 0 {
			return res, nil
		}
		q.max = gofakes3.DefaultMaxBucketKeys
	}
	fsys := b.root.FS()
	var skip string // the common prefix emitted last: its keys are folded into it

	emit := func(it listItem) error {
		if int64(len(res.items)) == q.max {
			res.truncated = true
			return errListFull
		}
		res.items = append(res.items, it)
		res.next = it.key
		return nil
	}
	visit := func(key string) error {
		if !strings.HasPrefix(key, q.prefix) || key <= q.marker {
			return nil
		}
		if skip != "" && strings.HasPrefix(key, skip) {
			return nil
		}
		if q.delim != "" {
			rest := key[len(q.prefix):]
			if i := strings.Index(rest, q.delim); i >= 0 {
				cp := q.prefix + rest[:i+len(q.delim)]
				skip = cp
				if cp <= q.marker {
					return nil
				}
				return emit(listItem{key: cp, prefix: true})
			}
		}
		if checkKey(key) != nil {
			return nil // a file placed by hand under a name S3 cannot address
		}
		f, info, err := b.openObject(bucket, key)
		if err != nil {
			if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey) {
				return nil // deleted while we walked
			}
			return err
		}
		f.Close()
		return emit(listItem{key: key, info: info})
	}

	type entry struct {
		name  string // on disk
		seg   string // in the key: name, or the segment behind an alias
		order string
		dir   bool
	}
	var walk func(dir, kp string) error
	walk = func(dir, kp string) error {
		des, err := fs.ReadDir(fsys, dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("fakeobs: list %s: %w", dir, err)
		}
		ents := make([]entry, 0, len(des))
		for _, d := range des {
			if !d.IsDir() && !d.Type().IsRegular() {
				continue
			}
			seg := d.Name()
			if strings.HasPrefix(seg, aliasPrefix) {
				// Sorted and matched by its segment, not its hash.
				var ok bool
				if seg, ok = b.aliasSegment(bucket, strings.TrimPrefix(dir+"/"+d.Name(), bucket+"/"), d.Name()); !ok {
					continue
				}
			}
			if d.IsDir() {
				ents = append(ents, entry{d.Name(), seg, seg + "/", true})
			} else {
				ents = append(ents, entry{d.Name(), seg, seg, false})
			}
		}
		// A directory sorts as "name/", as its keys do.
		sort.Slice(ents, func(i, j int) bool { return ents[i].order < ents[j].order })
		for _, e := range ents {
			if !e.dir {
				if err := visit(kp + e.seg); err != nil {
					return err
				}
				continue
			}
			p := kp + e.seg + "/"
			if !strings.HasPrefix(p, q.prefix) && !strings.HasPrefix(q.prefix, p) {
				continue
			}
			if p <= q.marker && !strings.HasPrefix(q.marker, p) {
				continue
			}
			if skip != "" && strings.HasPrefix(p, skip) {
				continue
			}
			if _, err := b.root.Stat(dataPath(bucket, p)); err == nil {
				if err := visit(p); err != nil {
					return err
				}
			}
			if err := walk(path.Join(dir, e.name), p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(bucket, ""); err != nil && !errors.Is(err, errListFull) {
		return nil, err
	}
	if !res.truncated {
		res.next = ""
	}
	return res, nil
}

func (b *backend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	q := listQuery{max: page.MaxKeys}
	if prefix != nil {
		if prefix.HasPrefix {
			q.prefix = prefix.Prefix
		}
		if prefix.HasDelimiter {
			q.delim = prefix.Delimiter
		}
	}
	if page.HasMarker {
		q.marker = page.Marker
	}
	res, err := b.list(name, q)
	if err != nil {
		return nil, err
	}
	out := gofakes3.NewObjectList()
	out.IsTruncated = res.truncated
	out.NextMarker = res.next
	for _, it := range res.items {
		if it.prefix {
			out.AddPrefix(it.key)
			continue
		}
		out.Add(&gofakes3.Content{
			Key:          it.key,
			LastModified: gofakes3.NewContentTime(it.info.mod),
			ETag:         `"` + it.info.etag + `"`,
			Size:         it.info.size,
			StorageClass: "STANDARD",
		})
	}
	return out, nil
}
