package samples

import "testing"

func TestDpkgInstalled(t *testing.T) {
	status := []byte("Package: libc6\nStatus: install ok installed\nVersion: 2.36\n\n" +
		"Package: libibverbs1\nStatus: deinstall ok config-files\nArchitecture: amd64\n\n" +
		"Package: python3\nStatus: install ok installed\n")
	for pkg, want := range map[string]bool{"libc6": true, "python3": true, "libibverbs1": false, "libibverbs": false, "python3-torch": false} {
		if got := dpkgInstalled(status, pkg); got != want {
			t.Errorf("dpkgInstalled(%q) = %v, want %v", pkg, got, want)
		}
	}
}
