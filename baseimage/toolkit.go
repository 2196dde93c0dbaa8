package baseimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The platform user and the paths of the toolkit layer.
const (
	WorkUser = "work"
	WorkUID  = 1101
	WorkGID  = 1101
	WorkHome = "/home/work"
	CacheDir = "/cache"
	// JobDir is where run_train.sh downloads the code dir.
	JobDir = WorkHome + "/user-job-dir"
	// RunTrain is the path of run_train.sh in a base image.
	RunTrain = WorkHome + "/run_train.sh"
)

// LayerTime is the modification time of every entry of the toolkit layer,
// so that the layer, and with it the image digest, depends only on the
// toolkit and the base.
var LayerTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

//go:embed toolkit/run_train.sh toolkit/malocal_toolkit/*.py toolkit/moxing/*.py
var toolkitFS embed.FS

// Toolkit returns the toolkit files as they are laid out under /home/work:
// run_train.sh, malocal_toolkit/ (S3 client, downloader, log uploader) and
// moxing/.
func Toolkit() fs.FS {
	sub, err := fs.Sub(toolkitFS, "toolkit")
	if err != nil {
		panic(err) // the embedded tree always has the directory
	}
	return sub
}

// ToolkitDigest is a sha256 over the toolkit's paths and contents: the
// toolkit's version, recorded in every base image's labels.
func ToolkitDigest() string {
	h := sha256.New()
	for _, f := range toolkitFiles() {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", f.name, f.mode, len(f.data))
		h.Write(f.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type toolkitFile struct {
	name string // relative to /home/work
	mode int64
	data []byte
}

func toolkitFiles() []toolkitFile {
	var out []toolkitFile
	tk := Toolkit()
	err := fs.WalkDir(tk, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(tk, p)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		out = append(out, toolkitFile{name: p, mode: mode, data: data})
		return nil
	})
	if err != nil {
		panic(err) // reading the embedded tree cannot fail
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// ErrNoPython is returned when a source image has no python3.
var ErrNoPython = errors.New("no python3 in the source image (looked for /usr/bin/python3, /usr/local/bin/python3, /bin/python3): the toolkit needs python3; build from an image that has it, or from debian:bookworm --include python3")

// pythonPaths are where a base is checked for python3.
var pythonPaths = []string{"usr/bin/python3", "usr/local/bin/python3", "bin/python3"}

// baseFS is what the toolkit layer needs to know of the base's filesystem.
type baseFS struct {
	files   map[string]*tar.Header // etc/passwd, etc/group, etc/shadow
	content map[string][]byte
	exists  map[string]bool // the paths of interest that exist
}

var interesting = []string{"etc/passwd", "etc/group", "etc/shadow", "home", "cache",
	"bin/bash", "usr/bin/bash", "usr/bin/python3", "usr/local/bin/python3", "bin/python3",
	"usr/bin/python", "usr/local/bin/python", "bin/python"}

// hasPythonCommand says whether the base has a `python` command (Debian's
// python-is-python3, or a python image's own).
func (b *baseFS) hasPythonCommand() bool {
	return b.exists["usr/bin/python"] || b.exists["usr/local/bin/python"] || b.exists["bin/python"]
}

// inspectBase reads the base's layers from the top down, headers only
// except for the few /etc files it keeps, and applies whiteouts and opaque
// directories, stopping once every path of interest is decided.
func inspectBase(img v1.Image, extra ...string) (*baseFS, error) {
	want := map[string]bool{}
	for _, p := range interesting {
		want[p] = true
	}
	for _, p := range extra {
		want[p] = true
	}
	b := &baseFS{files: map[string]*tar.Header{}, content: map[string][]byte{}, exists: map[string]bool{}}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the base image's layers: %w", err)
	}
	decided := map[string]bool{} // found or deleted by an upper layer
	for i := len(layers) - 1; i >= 0 && len(decided) < len(want); i-- {
		hidden, err := scanLayer(layers[i], want, decided, b)
		if err != nil {
			return nil, fmt.Errorf("reading layer %d of the base image: %w", i+1, err)
		}
		for p := range want {
			if b.exists[p] || hidden(p) {
				decided[p] = true
			}
		}
	}
	return b, nil
}

// scanLayer records the wanted, undecided paths one layer holds, and
// returns what the layer's whiteouts hide in the layers below.
func scanLayer(l v1.Layer, want, decided map[string]bool, b *baseFS) (func(string) bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var gone, opaque []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := cleanName(hdr.Name)
		dir, base := path.Split(name)
		switch {
		case base == ".wh..wh..opq":
			opaque = append(opaque, strings.TrimSuffix(dir, "/"))
			continue
		case strings.HasPrefix(base, ".wh."):
			gone = append(gone, dir+strings.TrimPrefix(base, ".wh."))
			continue
		}
		if !want[name] || decided[name] {
			continue
		}
		b.exists[name] = true
		if strings.HasPrefix(name, "etc/") && hdr.Typeflag == tar.TypeReg {
			if hdr.Size > 4<<20 {
				return nil, fmt.Errorf("base /%s is %d bytes: too large", name, hdr.Size)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading /%s: %w", name, err)
			}
			b.files[name], b.content[name] = hdr, data
		}
	}
	return func(p string) bool {
		for _, g := range gone {
			if p == g || strings.HasPrefix(p, g+"/") {
				return true
			}
		}
		for _, d := range opaque {
			if d == "" || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}, nil
}

func (b *baseFS) hasPython() bool {
	for _, p := range pythonPaths {
		if b.exists[p] {
			return true
		}
	}
	return false
}

func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

// addUser returns the passwd, group and shadow files of the base with the
// work user and group appended. A base that already has them with the right
// ids is left as it is; one that has them with other ids, or gives uid or
// gid 1101 to someone else, is an error.
func addUser(b *baseFS) (passwd, group, shadow []byte, err error) {
	shell := "/bin/sh"
	if b.exists["bin/bash"] || b.exists["usr/bin/bash"] {
		shell = "/bin/bash"
	}
	uid, gid := strconv.Itoa(WorkUID), strconv.Itoa(WorkGID)
	passwd, err = appendEntry(b.content["etc/passwd"], "passwd",
		WorkUser+":x:"+uid+":"+gid+"::"+WorkHome+":"+shell,
		func(f []string) (bool, error) {
			if len(f) < 4 {
				return false, nil
			}
			switch {
			case f[0] == WorkUser && f[2] == uid && f[3] == gid:
				return true, nil
			case f[0] == WorkUser:
				return false, fmt.Errorf("the base already has a user %s with uid %s gid %s (want %s:%s)", WorkUser, f[2], f[3], uid, gid)
			case f[2] == uid:
				return false, fmt.Errorf("uid %s is already taken by user %q in the base", uid, f[0])
			}
			return false, nil
		})
	if err != nil {
		return nil, nil, nil, err
	}
	group, err = appendEntry(b.content["etc/group"], "group", WorkUser+":x:"+gid+":",
		func(f []string) (bool, error) {
			if len(f) < 3 {
				return false, nil
			}
			switch {
			case f[0] == WorkUser && f[2] == gid:
				return true, nil
			case f[0] == WorkUser:
				return false, fmt.Errorf("the base already has a group %s with gid %s (want %s)", WorkUser, f[2], gid)
			case f[2] == gid:
				return false, fmt.Errorf("gid %s is already taken by group %q in the base", gid, f[0])
			}
			return false, nil
		})
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := b.files["etc/shadow"]; ok {
		shadow, err = appendEntry(b.content["etc/shadow"], "shadow", WorkUser+":!:19723:0:99999:7:::",
			func(f []string) (bool, error) { return f[0] == WorkUser, nil })
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return passwd, group, shadow, nil
}

// hasEntry says whether a colon-separated database has an entry match
// accepts.
func hasEntry(data []byte, match func([]string) bool) bool {
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && match(strings.Split(l, ":")) {
			return true
		}
	}
	return false
}

// appendEntry appends line to a colon-separated database unless check says
// an entry is already there.
func appendEntry(data []byte, what, line string, check func([]string) (bool, error)) ([]byte, error) {
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		present, err := check(strings.Split(l, ":"))
		if err != nil {
			return nil, fmt.Errorf("/etc/%s: %w", what, err)
		}
		if present {
			return data, nil
		}
	}
	out := append([]byte(nil), data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, line+"\n"...), nil
}

// toolkitTar writes the toolkit layer's tar for a base.
func toolkitTar(b *baseFS) ([]byte, error) {
	passwd, group, shadow, err := addUser(b)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(hdr *tar.Header, data []byte) error {
		hdr.ModTime = LayerTime
		hdr.Format = tar.FormatPAX
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	etc := func(name string, data []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}
		if old, ok := b.files[name]; ok {
			hdr.Mode, hdr.Uid, hdr.Gid = old.Mode&0o7777, old.Uid, old.Gid
			hdr.Uname, hdr.Gname = old.Uname, old.Gname
		}
		return write(hdr, data)
	}
	dir := func(name string, mode int64, uid, gid int) error {
		return write(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}, nil)
	}
	if err := etc("etc/group", group); err != nil {
		return nil, err
	}
	if err := etc("etc/passwd", passwd); err != nil {
		return nil, err
	}
	if shadow != nil {
		if err := etc("etc/shadow", shadow); err != nil {
			return nil, err
		}
	}
	if err := dir("cache", 0o755, WorkUID, WorkGID); err != nil {
		return nil, err
	}
	if !b.exists["home"] {
		if err := dir("home", 0o755, 0, 0); err != nil {
			return nil, err
		}
	}
	if err := dir("home/work", 0o755, WorkUID, WorkGID); err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	for _, f := range toolkitFiles() {
		if d := path.Dir(f.name); d != "." && !dirs[d] {
			dirs[d] = true
			if err := dir("home/work/"+d, 0o755, 0, 0); err != nil {
				return nil, err
			}
		}
		if err := write(&tar.Header{Typeflag: tar.TypeReg, Name: "home/work/" + f.name, Mode: f.mode}, f.data); err != nil {
			return nil, err
		}
	}
	if err := dir("home/work/user-job-dir", 0o755, WorkUID, WorkGID); err != nil {
		return nil, err
	}
	// The platform's run commands say `python`: a base without that command
	// (a source without Debian's python-is-python3) gets the same link.
	if !b.hasPythonCommand() && b.exists["usr/bin/python3"] {
		if err := write(&tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/bin/python", Linkname: "python3", Mode: 0o777}, nil); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ToolkitLayer returns the toolkit layer for base: the work user and group
// added to the base's /etc/passwd, /etc/group (and /etc/shadow when the
// base has one), /home/work and /cache owned by work, and the toolkit files
// in /home/work. The layer is deterministic: the same base gives the same
// layer. It fails with ErrNoPython when the base has no python3.
func ToolkitLayer(base v1.Image) (v1.Layer, error) {
	b, err := inspectBase(base)
	if err != nil {
		return nil, err
	}
	if !b.hasPython() {
		return nil, ErrNoPython
	}
	data, err := toolkitTar(b)
	if err != nil {
		return nil, err
	}
	mt := types.DockerLayer
	if m, err := base.MediaType(); err == nil && m == types.OCIManifestSchema1 {
		mt = types.OCILayer
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(mt))
}
