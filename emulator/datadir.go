package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/malocal/malocal/internal/durable"
	"github.com/malocal/malocal/registry"
)

// LayoutVersion is the version of the data dir layout this build writes.
// A later layout bumps it and migrates older dirs in EnsureDataDir.
const LayoutVersion = 1

// Names of the files and folders in the data dir.
const (
	layoutFile      = "layout-version"
	credentialsFile = "credentials.json"
	tokenFile       = "api-token"
	lockFile        = "malocal.lock"
	// ObjectsDir holds the object store: buckets as folders, objects as files.
	ObjectsDir = "objects"
	// RegistryDir holds registry blobs, manifests and tags.
	RegistryDir = "registry"
)

// Credentials are the S3 keys of the emulator's object store and the user
// name and password of its registry.
type Credentials struct {
	AccessKey        string `json:"access_key"`
	SecretKey        string `json:"secret_key"`
	Region           string `json:"region"`
	RegistryUsername string `json:"registry_username,omitempty"`
	RegistryPassword string `json:"registry_password,omitempty"`
}

// Registry returns the registry's credentials.
func (c Credentials) Registry() registry.Credentials {
	return registry.Credentials{Username: c.RegistryUsername, Password: c.RegistryPassword}
}

// RegistryUser is the user name of the registry's credentials.
const RegistryUser = "malocal"

// DefaultRegion is the region the object store reports and signs with.
const DefaultRegion = "cn-north-4"

// DefaultDataDir is $XDG_DATA_HOME/malocal, else ~/.local/share/malocal.
func DefaultDataDir() (string, error) {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "malocal"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the home directory for the default data dir (set --data-dir): %w", err)
	}
	return filepath.Join(home, ".local", "share", "malocal"), nil
}

// DataDir is an initialised data dir.
type DataDir struct {
	Path string
}

// EnsureDataDir creates the data dir (mode 0700) with its layout version,
// S3 credentials and API token, or checks an existing one. It is idempotent.
func EnsureDataDir(path string) (*DataDir, error) {
	if path == "" {
		return nil, errors.New("data dir path is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolving data dir %q: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %s: %w", abs, err)
	}
	if err := checkDataDirMode(abs); err != nil {
		return nil, err
	}
	d := &DataDir{Path: abs}
	if err := d.checkLayout(); err != nil {
		return nil, err
	}
	if c, err := d.Credentials(); errors.Is(err, os.ErrNotExist) {
		c := Credentials{AccessKey: "MA" + strings.ToUpper(randomHex(9)), SecretKey: randomHex(20), Region: DefaultRegion,
			RegistryUsername: RegistryUser, RegistryPassword: randomHex(20)}
		if err := writeJSON(filepath.Join(abs, credentialsFile), c, 0o600); err != nil {
			return nil, fmt.Errorf("storing S3 credentials: %w", err)
		}
	} else if err != nil {
		return nil, err
	} else if c.RegistryPassword == "" {
		// A data dir from before the registry had credentials.
		c.RegistryUsername, c.RegistryPassword = RegistryUser, randomHex(20)
		if err := writeJSON(filepath.Join(abs, credentialsFile), c, 0o600); err != nil {
			return nil, fmt.Errorf("storing registry credentials: %w", err)
		}
	}
	if _, err := d.Token(); errors.Is(err, os.ErrNotExist) {
		if err := WriteFileAtomic(filepath.Join(abs, tokenFile), []byte(randomHex(24)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("storing API token: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	return d, nil
}

// OpenDataDir opens an existing data dir without creating anything; client
// commands use it so a typo in --data-dir does not create a new empty dir.
func OpenDataDir(path string) (*DataDir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolving data dir %q: %w", path, err)
	}
	if _, err := os.Stat(filepath.Join(abs, layoutFile)); err != nil {
		return nil, fmt.Errorf("%s is not a malocal data dir (run `malocal up --data-dir %s` first, or pass the right --data-dir): %w", abs, abs, err)
	}
	if err := checkDataDirMode(abs); err != nil {
		return nil, err
	}
	return &DataDir{Path: abs}, nil
}

// checkDataDirMode refuses a data dir that other users could write: it
// holds the API token and the file that tells the CLI where to send it, so
// whoever can replace its files can run containers as this user. A dir
// that others can only read is made 0700.
func checkDataDirMode(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory: pass another --data-dir", dir)
	}
	if owner, ok := fileOwner(fi); ok && owner != os.Geteuid() {
		return fmt.Errorf("data dir %s belongs to uid %d, not to you (uid %d): use a data dir of your own (--data-dir), or take it with `chown -R %d %s`",
			dir, owner, os.Geteuid(), os.Geteuid(), dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("data dir %s is writable by other users (mode %04o): another user could replace its token or runtime files; make it yours alone with `chmod 700 %s` (and check its files), then start again",
			dir, perm, dir)
	} else if perm != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data dir %s has mode %04o; making it 0700: %w", dir, perm, err)
		}
	}
	return nil
}

// tightenTree makes the dirs under root 0700 and the files 0600 where
// they were open to other users (left by an older malocal).
func tightenTree(root string) error {
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if de.IsDir() {
			want = 0o700
		}
		if fi.Mode().Type()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 {
			return os.Chmod(p, fi.Mode().Perm()&want)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (d *DataDir) checkLayout() error {
	p := filepath.Join(d.Path, layoutFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		entries, rerr := os.ReadDir(d.Path)
		if rerr != nil {
			return fmt.Errorf("reading data dir: %w", rerr)
		}
		if len(entries) > 0 {
			return fmt.Errorf("%s is not empty and has no %s: refusing to use it as a malocal data dir; pick an empty or new --data-dir", d.Path, layoutFile)
		}
		return WriteFileAtomic(p, []byte(strconv.Itoa(LayoutVersion)+"\n"), 0o600)
	}
	if err != nil {
		return fmt.Errorf("reading data dir layout version: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("data dir %s: %s holds %q, not a number", d.Path, layoutFile, strings.TrimSpace(string(b)))
	}
	if v > LayoutVersion {
		return fmt.Errorf("data dir %s has layout version %d, newer than this malocal understands (%d): upgrade malocal", d.Path, v, LayoutVersion)
	}
	return nil
}

// Credentials reads the stored S3 credentials.
func (d *DataDir) Credentials() (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(filepath.Join(d.Path, credentialsFile))
	if err != nil {
		return c, fmt.Errorf("reading S3 credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parsing %s: %w", filepath.Join(d.Path, credentialsFile), err)
	}
	return c, nil
}

// Token reads the API bearer token.
func (d *DataDir) Token() (string, error) {
	b, err := os.ReadFile(filepath.Join(d.Path, tokenFile))
	if err != nil {
		return "", fmt.Errorf("reading API token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Sub returns the path of a folder of the data dir.
func (d *DataDir) Sub(name string) string { return filepath.Join(d.Path, name) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on Linux; a failure means the system is broken.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), mode)
}

// WriteFileAtomic writes data to path so that readers see the old content
// or the new, never a part, and the new survives a crash (durable.WriteFile).
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return durable.WriteFile(path, data, mode)
}
