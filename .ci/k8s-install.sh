#!/usr/bin/env bash
# Builds the Kubernetes control plane, kubelet and CoreDNS that the
# Kubernetes backend's end-to-end tests run as a one-node cluster, from the
# Go module proxy, into a cache directory keyed on the version. A second run
# with the binaries present does nothing. Usage: k8s-install.sh [DIR]
set -euo pipefail

version=v1.37.2
staging=v0.37.2
coredns=v1.15.0
dest="${1:-${MALOCAL_K8S_BIN:-$HOME/.cache/malocal/k8s-$version}}"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet coredns)

have=1
for b in "${bins[@]}"; do [ -x "$dest/$b" ] || have=0; done
if [ "$have" = 1 ]; then echo "$dest"; exit 0; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# k8s.io/kubernetes replaces its staging modules with ./staging paths;
# a module that requires it must name their released versions instead.
go mod init malocal.local/k8s-tools >/dev/null 2>&1
modfile=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[ -n "$modfile" ] || { echo "cannot download k8s.io/kubernetes@$version from the module proxy" >&2; exit 1; }
grep -E '=> \./staging/' "$modfile" | awk '{print $1}' | sort -u | while read -r m; do
  go mod edit -replace "$m=$m@$staging"
done
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
go get "k8s.io/kubernetes@$version" >/dev/null
go mod tidy >/dev/null

mkdir -p "$dest"
p=${K8S_BUILD_P:-2}
go build -p "$p" -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" \
  -o "$dest/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet

# CoreDNS in its own module: its dependencies need not agree with Kubernetes'.
mkdir -p "$tmp/dns" && cd "$tmp/dns"
go mod init malocal.local/coredns >/dev/null 2>&1
go get "github.com/coredns/coredns@$coredns" >/dev/null
go build -p "$p" -trimpath -ldflags "-s -w" -o "$dest/coredns" github.com/coredns/coredns
echo "$dest"
