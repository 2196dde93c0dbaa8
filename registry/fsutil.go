package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/malocal/malocal/internal/durable"
)

// tmpPrefix marks files that are being written; no name we store (digest
// hex, tag, repository component) can start with a dot, so listings skip them.
const tmpPrefix = durable.TempPrefix

// syncDir makes a rename or create in dir durable.
func syncDir(dir string) error { return durable.SyncDir(dir) }

// mkdirAll is os.MkdirAll that also syncs the parent of every directory it
// creates, so a new path survives a crash together with the file put in it.
func mkdirAll(dir string) error { return durable.MkdirAll(dir, 0o700) }

// writeFileAtomic writes data to path via temp file, fsync, rename and fsync
// of the directory: readers see the old content or the new, never a part.
func writeFileAtomic(path string, data []byte) error { return durable.WriteFile(path, data, 0o600) }

// readDirNames lists the stored names in dir, sorted; a missing dir is empty.
func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
