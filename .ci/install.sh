#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Idempotent: it
# installs only what is missing, so a second run is quick.
# `install.sh demo` installs only what `malocal demo` needs.
set -euo pipefail
only="${1:-all}"

# Debian packages the tests use (real clients and tools, never mocks).
#   busybox-static  the small image that job tests run (e2e)
#   awscli s3cmd rclone python3-boto3  S3 clients against the object store
#   skopeo  copies images to and from the registry
#   mmdebstrap  builds an official base offline from Debian packages
#   python3-numpy dataset-fashion-mnist  the mnist samples and their data
#   python3-torch  mnist_ddp.py's unit tests and its benchmark's peer
#     (torchrun on the host)
#   chromium fonts-wqy-microhei  the browser the console's tests drive
#     (headless, chromedp), and a font for the Chinese pages
#   etcd-server containerd containernetworking-plugins conntrack openssl
#   iproute2 iptables  the one-node Kubernetes cluster of the kube tests
pkgs=(
  ca-certificates git make bash python3 busybox-static
  awscli s3cmd rclone python3-boto3 skopeo mmdebstrap
  python3-numpy dataset-fashion-mnist python3-torch
  chromium fonts-wqy-microhei
  etcd-server containerd containernetworking-plugins conntrack openssl iproute2 iptables
)

if [ "$only" = demo ]; then
  pkgs=(ca-certificates mmdebstrap dataset-fashion-mnist)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "Go 1.26 is required (https://go.dev/doc/install)" >&2; exit 1; }
command -v docker >/dev/null || { echo "Docker is required: install the Docker engine and start it" >&2; exit 1; }
docker info --format 'docker engine {{.ServerVersion}}' || { echo "the Docker engine is not reachable: start it (systemctl start docker)" >&2; exit 1; }

go mod download
[ "$only" = demo ] && exit 0

# The OCI distribution-spec conformance suite, built once and cached.
conformance="${OCI_CONFORMANCE_BIN:-$HOME/.cache/malocal/oci-conformance}"
if [ ! -x "$conformance" ]; then
  echo "building the OCI conformance suite into $conformance"
  sh .ci/conformance-install.sh "$conformance" >/dev/null
fi

# The linters of `make lint` (staticcheck) and the dead-code finder
# (deadcode, run by hand: it reports, it does not fail), built once and cached.
linters="$HOME/.cache/malocal/bin"
if [ ! -x "$linters/staticcheck" ]; then
  echo "installing staticcheck into $linters"
  GOBIN="$linters" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
if [ ! -x "$linters/deadcode" ]; then
  echo "installing deadcode into $linters"
  GOBIN="$linters" go install golang.org/x/tools/cmd/deadcode@v0.49.0
fi

# The Kubernetes binaries of the kube tests' cluster, built once and cached.
bash .ci/k8s-install.sh >/dev/null
