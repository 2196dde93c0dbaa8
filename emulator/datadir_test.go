package emulator

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestRegistryCredentials: a new data dir gets registry credentials beside
// the S3 keys (mode 0600), and one from before they existed gets them on
// the next start, its S3 keys kept.
func TestRegistryCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	dd, err := EnsureDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dd.Credentials()
	if err != nil || c.RegistryUsername != RegistryUser || len(c.RegistryPassword) < 32 {
		t.Fatalf("credentials %+v, %v", c, err)
	}
	p := filepath.Join(dir, credentialsFile)
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", p, st, err)
	}
	if r := c.Registry(); r.Username != c.RegistryUsername || r.Password != c.RegistryPassword {
		t.Fatalf("Registry() = %+v", r)
	}
	// An older data dir: S3 keys only.
	old := Credentials{AccessKey: "MAOLD", SecretKey: "oldsecret", Region: DefaultRegion}
	b, _ := json.Marshal(old)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if dd, err = EnsureDataDir(dir); err != nil {
		t.Fatal(err)
	}
	c2, err := dd.Credentials()
	if err != nil || c2.AccessKey != "MAOLD" || c2.SecretKey != "oldsecret" || c2.RegistryPassword == "" || c2.RegistryPassword == c.RegistryPassword {
		t.Fatalf("upgraded credentials %+v, %v", c2, err)
	}
	// Stable from then on.
	if dd, err = EnsureDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if c3, _ := dd.Credentials(); c3 != c2 {
		t.Fatalf("credentials changed on a restart: %+v -> %+v", c2, c3)
	}
}
