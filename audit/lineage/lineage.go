// Package lineage decides which official base an image is built on. It is
// the one rule the auditor, the base catalog and the console share, so
// that they always name the same base.
package lineage

// Candidate is one build of an official base as matching needs it.
type Candidate struct {
	DiffIDs    []string // the base's rootfs.diff_ids
	Superseded bool
}

// Match returns the index in bases of the base whose diff_ids are the
// longest exact prefix of image (the image's rootfs.diff_ids), or -1 when
// none is. On a tie, a current build wins over a superseded one, then the
// earlier candidate wins. A base with no diff_ids matches nothing.
func Match(bases []Candidate, image []string) int {
	best := -1
	for i, b := range bases {
		if len(b.DiffIDs) == 0 || len(b.DiffIDs) > len(image) || !prefix(b.DiffIDs, image) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		cur := bases[best]
		if len(b.DiffIDs) > len(cur.DiffIDs) || len(b.DiffIDs) == len(cur.DiffIDs) && cur.Superseded && !b.Superseded {
			best = i
		}
	}
	return best
}

func prefix(p, s []string) bool {
	for i := range p {
		if p[i] != s[i] {
			return false
		}
	}
	return true
}
