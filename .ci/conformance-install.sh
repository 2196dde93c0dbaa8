#!/bin/sh
# Installs the OCI distribution-spec conformance suite binary to $1
# (a file path), for registry/conformance_test.go via OCI_CONFORMANCE_BIN.
set -eu
dest=${1:?usage: conformance-install.sh /path/to/conformance}
version=v0.0.0-20260831232431-97274622c111
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/opencontainers/distribution-spec/conformance@$version"
mkdir -p "$(dirname "$dest")"
mv "$tmp/conformance" "$dest"
echo "$dest"
