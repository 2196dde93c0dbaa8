package obsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Stats counts what a transfer did.
type Stats struct {
	Files   int   `json:"files"`
	Bytes   int64 `json:"bytes"`
	Skipped int   `json:"skipped"` // unchanged, by sync
	Deleted int   `json:"deleted"` // by sync --delete
}

// item is one file to move: a local path and a key.
type item struct {
	local string
	key   string
	size  int64
	mod   time.Time
}

// Copy copies src to dst, each a local path or an s3:// / obs:// URL. A
// folder (or a key prefix) needs recursive.
func (c *Client) Copy(ctx context.Context, src, dst string, recursive bool) (Stats, error) {
	return c.transfer(ctx, src, dst, recursive, false, false)
}

// Sync copies what is new or changed (by size, or a newer modification
// time on the source) from src to dst; with del, it also removes from dst
// what src lacks.
func (c *Client) Sync(ctx context.Context, src, dst string, del bool) (Stats, error) {
	return c.transfer(ctx, src, dst, true, true, del)
}

func dirPrefix(key string) string {
	if key != "" && !strings.HasSuffix(key, "/") {
		return key + "/"
	}
	return key
}

func (c *Client) transfer(ctx context.Context, src, dst string, recursive, onlyChanged, del bool) (Stats, error) {
	su, sRemote, err := ParseURL(src)
	if err != nil {
		return Stats{}, err
	}
	du, dRemote, err := ParseURL(dst)
	if err != nil {
		return Stats{}, err
	}
	switch {
	case !sRemote && dRemote:
		return c.upload(ctx, src, du, recursive, onlyChanged, del)
	case sRemote && !dRemote:
		return c.download(ctx, su, dst, recursive, onlyChanged, del)
	case sRemote && dRemote:
		return c.copyRemote(ctx, su, du, recursive, onlyChanged)
	default:
		return Stats{}, errors.New("one of source and destination must be an s3:// or obs:// URL")
	}
}

// ---- local → remote ----

func (c *Client) upload(ctx context.Context, src string, du URL, recursive, onlyChanged, del bool) (Stats, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return Stats{}, err
	}
	var items []item
	if !fi.IsDir() {
		key := du.Key
		if key == "" || strings.HasSuffix(key, "/") {
			key += filepath.Base(src)
		}
		items = []item{{local: src, key: key, size: fi.Size(), mod: fi.ModTime()}}
	} else {
		if !recursive {
			return Stats{}, fmt.Errorf("%s is a folder: use -r", src)
		}
		prefix := dirPrefix(du.Key)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			items = append(items, item{local: p, key: prefix + filepath.ToSlash(rel), size: info.Size(), mod: info.ModTime()})
			return nil
		})
		if err != nil {
			return Stats{}, fmt.Errorf("walk %s: %w", src, err)
		}
	}
	var st Stats
	if onlyChanged {
		remote := map[string]Entry{}
		prefix := dirPrefix(du.Key)
		if err := c.List(ctx, URL{du.Bucket, prefix}, true, func(e Entry) error { remote[e.Key] = e; return nil }); err != nil {
			return st, err
		}
		var todo []item
		for _, it := range items {
			r, ok := remote[it.key]
			delete(remote, it.key)
			if ok && r.Size == it.size && !it.mod.After(r.Modified) {
				st.Skipped++
				continue
			}
			todo = append(todo, it)
		}
		items = todo
		if del {
			for k := range remote {
				if _, err := c.Remove(ctx, URL{du.Bucket, k}, false); err != nil {
					return st, err
				}
				st.Deleted++
			}
		}
	}
	prog := c.newProgress(items)
	defer prog.finish()
	p := newPool(ctx, c.cfg.Parallel)
	var mu sync.Mutex
	for _, it := range items {
		p.Go(func(ctx context.Context) error {
			if err := c.putFile(ctx, it, du.Bucket, prog); err != nil {
				return err
			}
			mu.Lock()
			st.Files++
			st.Bytes += it.size
			mu.Unlock()
			prog.fileDone()
			return nil
		})
	}
	err = p.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return st, err
}

func (c *Client) putFile(ctx context.Context, it item, bucket string, prog *progress) error {
	f, err := os.Open(it.local)
	if err != nil {
		return err
	}
	defer f.Close()
	if it.size <= c.cfg.PartSize {
		_, err := c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(it.key),
			Body: io.NewSectionReader(f, 0, it.size), ContentLength: aws.Int64(it.size)})
		if err != nil {
			return fmt.Errorf("upload %s to s3://%s/%s: %w", it.local, bucket, it.key, err)
		}
		prog.add(it.size)
		return nil
	}
	return c.putMultipart(ctx, f, it, bucket, prog)
}

func (c *Client) putMultipart(ctx context.Context, f *os.File, it item, bucket string, prog *progress) error {
	cr, err := c.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(it.key)})
	if err != nil {
		return fmt.Errorf("start upload of s3://%s/%s: %w", bucket, it.key, err)
	}
	n := int((it.size + c.cfg.PartSize - 1) / c.cfg.PartSize)
	parts := make([]types.CompletedPart, n)
	p := newPool(ctx, c.cfg.Parallel)
	for i := range n {
		off := int64(i) * c.cfg.PartSize
		size := min(c.cfg.PartSize, it.size-off)
		p.Go(func(ctx context.Context) error {
			out, err := c.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(it.key), UploadId: cr.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: io.NewSectionReader(f, off, size), ContentLength: aws.Int64(size)})
			if err != nil {
				return fmt.Errorf("upload part %d of %s: %w", i+1, it.local, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			prog.add(size)
			return nil
		})
	}
	err = p.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		_, err = c.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(it.key), UploadId: cr.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
		if err != nil {
			err = fmt.Errorf("complete upload of s3://%s/%s: %w", bucket, it.key, err)
		}
	}
	if err != nil {
		// Leave no parts behind; a fresh context, since ctx may be canceled.
		actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = c.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(it.key), UploadId: cr.UploadId})
	}
	return err
}

// ---- remote → local ----

// localPath joins a key's relative part under dir, refusing keys that would
// land outside it.
func localPath(dir, rel string) (string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("key part %q cannot be a local file name", rel)
	}
	for _, seg := range strings.Split(rel, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return "", fmt.Errorf("key part %q would leave the destination folder", rel)
		}
	}
	return filepath.Join(dir, filepath.FromSlash(rel)), nil
}

func (c *Client) download(ctx context.Context, su URL, dst string, recursive, onlyChanged, del bool) (Stats, error) {
	var items []item
	if !recursive {
		if su.Key == "" || strings.HasSuffix(su.Key, "/") {
			return Stats{}, fmt.Errorf("%s is a folder: use -r", su)
		}
		head, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(su.Bucket), Key: aws.String(su.Key)})
		if err != nil {
			return Stats{}, fmt.Errorf("stat %s: %w", su, err)
		}
		local := dst
		if fi, err := os.Stat(dst); (err == nil && fi.IsDir()) || strings.HasSuffix(dst, string(filepath.Separator)) {
			local = filepath.Join(dst, path.Base(su.Key))
		}
		items = []item{{local: local, key: su.Key, size: aws.ToInt64(head.ContentLength), mod: aws.ToTime(head.LastModified)}}
	} else {
		prefix := dirPrefix(su.Key)
		err := c.List(ctx, URL{su.Bucket, prefix}, true, func(e Entry) error {
			rel := strings.TrimPrefix(e.Key, prefix)
			if strings.HasSuffix(rel, "/") {
				return nil // a "folder/" marker: the folders come with the files
			}
			local, err := localPath(dst, rel)
			if err != nil {
				return fmt.Errorf("s3://%s/%s: %w", su.Bucket, e.Key, err)
			}
			items = append(items, item{local: local, key: e.Key, size: e.Size, mod: e.Modified})
			return nil
		})
		if err != nil {
			return Stats{}, err
		}
	}
	var st Stats
	if onlyChanged {
		want := map[string]bool{}
		var todo []item
		for _, it := range items {
			want[it.local] = true
			// Last-Modified headers carry whole seconds, and so does the mtime
			// getFile sets: compare at that precision.
			if fi, err := os.Stat(it.local); err == nil && fi.Size() == it.size && !it.mod.Truncate(time.Second).After(fi.ModTime()) {
				st.Skipped++
				continue
			}
			todo = append(todo, it)
		}
		items = todo
		if del {
			err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						return nil
					}
					return err
				}
				if d.Type().IsRegular() && !want[p] {
					if err := os.Remove(p); err != nil {
						return err
					}
					st.Deleted++
				}
				return nil
			})
			if err != nil {
				return st, fmt.Errorf("delete extra files in %s: %w", dst, err)
			}
		}
	}
	prog := c.newProgress(items)
	defer prog.finish()
	p := newPool(ctx, c.cfg.Parallel)
	var mu sync.Mutex
	for _, it := range items {
		p.Go(func(ctx context.Context) error {
			if err := c.getFile(ctx, su.Bucket, it, prog); err != nil {
				return err
			}
			mu.Lock()
			st.Files++
			st.Bytes += it.size
			mu.Unlock()
			prog.fileDone()
			return nil
		})
	}
	err := p.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return st, err
}

// getFile downloads to a temp file beside the target and renames it, so
// an interrupted download never leaves a truncated file under the name.
func (c *Client) getFile(ctx context.Context, bucket string, it item, prog *progress) error {
	if err := os.MkdirAll(filepath.Dir(it.local), 0o755); err != nil {
		return err
	}
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(it.key)})
	if err != nil {
		return fmt.Errorf("download s3://%s/%s: %w", bucket, it.key, err)
	}
	defer out.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(it.local), "."+filepath.Base(it.local)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, &countReader{r: out.Body, prog: prog}); err != nil {
		tmp.Close()
		return fmt.Errorf("download s3://%s/%s: %w", bucket, it.key, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), it.local); err != nil {
		return err
	}
	// The object's time, so that the next sync sees the file as current.
	if mod := aws.ToTime(out.LastModified); !mod.IsZero() {
		_ = os.Chtimes(it.local, mod, mod)
	}
	return nil
}

// ---- remote → remote ----

func (c *Client) copyRemote(ctx context.Context, su, du URL, recursive, onlyChanged bool) (Stats, error) {
	type pair struct {
		src, dst string
		size     int64
	}
	var pairs []pair
	if !recursive {
		dk := du.Key
		if dk == "" || strings.HasSuffix(dk, "/") {
			dk += path.Base(su.Key)
		}
		pairs = []pair{{su.Key, dk, 0}}
	} else {
		sp, dp := dirPrefix(su.Key), dirPrefix(du.Key)
		if err := c.List(ctx, URL{su.Bucket, sp}, true, func(e Entry) error {
			pairs = append(pairs, pair{e.Key, dp + strings.TrimPrefix(e.Key, sp), e.Size})
			return nil
		}); err != nil {
			return Stats{}, err
		}
	}
	var st Stats
	var mu sync.Mutex
	p := newPool(ctx, c.cfg.Parallel)
	for _, pr := range pairs {
		p.Go(func(ctx context.Context) error {
			if onlyChanged {
				h, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(du.Bucket), Key: aws.String(pr.dst)})
				if err == nil && aws.ToInt64(h.ContentLength) == pr.size {
					mu.Lock()
					st.Skipped++
					mu.Unlock()
					return nil
				}
			}
			_, err := c.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(du.Bucket), Key: aws.String(pr.dst),
				CopySource: aws.String(su.Bucket + "/" + escapeKey(pr.src))})
			if err != nil {
				return fmt.Errorf("copy s3://%s/%s: %w", su.Bucket, pr.src, err)
			}
			mu.Lock()
			st.Files++
			st.Bytes += pr.size
			mu.Unlock()
			return nil
		})
	}
	err := p.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return st, err
}

func escapeKey(k string) string {
	segs := strings.Split(k, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return strings.Join(segs, "/")
}

// ---- progress ----

const progressMin = 16 << 20

type progress struct {
	w          io.Writer
	total      int64
	files      int
	done       atomic.Int64
	filesDone  atomic.Int64
	start      time.Time
	stop       chan struct{}
	wg         sync.WaitGroup
	finishOnce sync.Once
}

func (c *Client) newProgress(items []item) *progress {
	p := &progress{w: c.cfg.Progress, files: len(items), start: time.Now(), stop: make(chan struct{})}
	for _, it := range items {
		p.total += it.size
	}
	if p.w == nil || p.total < progressMin {
		p.w = nil
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.print()
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) { p.done.Add(n) }
func (p *progress) fileDone()   { p.filesDone.Add(1) }

func (p *progress) print() {
	done := p.done.Load()
	secs := time.Since(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(done) / secs
	}
	pct := 100 * done / max(p.total, 1)
	line := fmt.Sprintf("\r%s / %s  %3d%%  %s/s  files %d/%d ", human(done), human(p.total), pct, human(int64(rate)), p.filesDone.Load(), p.files)
	fmt.Fprint(p.w, line)
}

func (p *progress) finish() {
	p.finishOnce.Do(func() {
		if p.w == nil {
			return
		}
		close(p.stop)
		p.wg.Wait()
		p.print()
		fmt.Fprintln(p.w)
	})
}

func human(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

type countReader struct {
	r    io.Reader
	prog *progress
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.prog.add(int64(n))
	return n, err
}
