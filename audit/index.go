package audit

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// DefaultProtected lists the base content that custom images must leave as
// it is. An entry ending in "/" protects a directory and everything under
// it; any other entry protects that one path.
var DefaultProtected = []string{
	"/bin/", "/sbin/", "/usr/", "/lib/", "/lib64/",
	"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow",
	"/etc/sudoers", "/etc/sudoers.d/",
	"/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d/",
	"/etc/pam.d/", "/etc/security/", "/etc/nsswitch.conf",
	"/home/work/run_train.sh", "/home/work/malocal_toolkit/", "/home/work/moxing/",
}

// protector answers whether a base path is protected.
type protector struct {
	dirs  []string // "/usr/" style prefixes
	exact map[string]bool
}

func newProtector(list []string) (*protector, error) {
	p := &protector{exact: map[string]bool{}}
	for _, s := range list {
		if !strings.HasPrefix(s, "/") {
			return nil, fmt.Errorf("protected path %q is not absolute", s)
		}
		if strings.HasSuffix(s, "/") && s != "/" {
			p.dirs = append(p.dirs, path.Clean(s)+"/")
			p.exact[path.Clean(s)] = true
		} else {
			p.exact[path.Clean(s)] = true
		}
	}
	return p, nil
}

func (p *protector) covers(name string) bool {
	if p.exact[name] {
		return true
	}
	for _, d := range p.dirs {
		if strings.HasPrefix(name, d) {
			return true
		}
	}
	return false
}

// fsIndex is the merged file system of a base: every path that its layers
// leave visible, hardlinks resolved to the attributes of their target.
type fsIndex struct {
	files  map[string]*entry
	sorted []string // keys of files, sorted; built by seal
	size   int64    // uncompressed bytes of the base's layers
}

func newIndex() *fsIndex { return &fsIndex{files: map[string]*entry{}} }

// apply lays one layer's entries over the index, as overlayfs would.
func (ix *fsIndex) apply(es []entry) {
	for i := range es {
		e := es[i]
		switch e.kind {
		case kindWhiteout:
			if old := ix.files[e.path]; old != nil {
				delete(ix.files, e.path)
				if old.kind == kindDir {
					ix.dropUnder(e.path)
				}
			}
		case kindOpaque:
			ix.dropUnder(e.path)
		default:
			if old := ix.files[e.path]; old != nil && old.kind == kindDir && e.kind != kindDir {
				ix.dropUnder(e.path)
			}
			if e.kind == kindHardlink {
				e = resolveLink(e, ix.files[e.link])
			}
			ix.files[e.path] = &e
		}
	}
}

// resolveLink gives a hardlink the attributes of its target, as the file
// system will; link keeps the target's path for reports.
func resolveLink(e entry, target *entry) entry {
	if target == nil || target.kind != kindFile {
		return e
	}
	r := *target
	r.path, r.link, r.kind = e.path, e.link, kindFile
	return r
}

func (ix *fsIndex) dropUnder(dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p := range ix.files {
		if strings.HasPrefix(p, prefix) {
			delete(ix.files, p)
		}
	}
}

func (ix *fsIndex) seal() {
	ix.sorted = ix.sorted[:0]
	for p := range ix.files {
		ix.sorted = append(ix.sorted, p)
	}
	sort.Strings(ix.sorted)
}

// under returns the protected paths of the index strictly below dir, and
// dir itself when self is set.
func (ix *fsIndex) under(dir string, self bool, prot *protector) []string {
	var out []string
	if self {
		if _, ok := ix.files[dir]; ok && prot.covers(dir) {
			out = append(out, dir)
		}
	}
	prefix := strings.TrimSuffix(dir, "/") + "/"
	i := sort.SearchStrings(ix.sorted, prefix)
	for ; i < len(ix.sorted) && strings.HasPrefix(ix.sorted[i], prefix); i++ {
		if prot.covers(ix.sorted[i]) {
			out = append(out, ix.sorted[i])
		}
	}
	return out
}

// sameType is whether two entries are of one file type (a resolved
// hardlink is a file).
func sameType(a, b *entry) bool { return typeOf(a) == typeOf(b) }

func typeOf(e *entry) kind {
	if e.kind == kindHardlink {
		return kindFile
	}
	return e.kind
}

// differences lists how cur differs from the base entry b of the same type.
func differences(b, cur *entry) []string {
	var d []string
	if b.mode != cur.mode {
		d = append(d, fmt.Sprintf("mode %04o → %04o", b.mode, cur.mode))
	}
	if b.uid != cur.uid {
		d = append(d, fmt.Sprintf("uid %d → %d", b.uid, cur.uid))
	}
	if b.gid != cur.gid {
		d = append(d, fmt.Sprintf("gid %d → %d", b.gid, cur.gid))
	}
	switch typeOf(b) {
	case kindFile:
		switch {
		case cur.kind == kindHardlink:
			// A link whose target we could not resolve to hashed content.
			d = append(d, "replaced by a hardlink to "+cur.link)
		case b.size != cur.size:
			d = append(d, fmt.Sprintf("content (size %d → %d)", b.size, cur.size))
		case b.hash == nil || cur.hash == nil || string(b.hash) != string(cur.hash):
			d = append(d, "content")
		}
	case kindSymlink:
		if b.link != cur.link {
			d = append(d, fmt.Sprintf("link target %q → %q", b.link, cur.link))
		}
	}
	if b.xattrs != cur.xattrs {
		d = append(d, "xattrs")
	}
	return d
}
