#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kubectl from the k8s.io/kubernetes Go module
# (tools/kube/go.mod pins the release) into .cache/kube/<version>/, once per version.
#
# Prints the directory that holds the binaries (and etcd) on its last line. Skips the build when
# KUBEBUILDER_ASSETS names a directory that already has them, like controller-runtime's envtest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VERSION="$(awk '/^require k8s.io\/kubernetes /{print $3}' tools/kube/go.mod)"
BINARIES=(kube-apiserver kube-controller-manager kubectl)

have_all() {
  local dir="$1" b
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

OUT="${TRITIUM_KUBE_CACHE:-$ROOT/.cache/kube}/$VERSION"
if have_all "$OUT"; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "build-control-plane: Go is needed to build Kubernetes $VERSION" >&2; exit 1; }
mkdir -p "$OUT"
MINOR="${VERSION#v1.}"; MINOR="${MINOR%%.*}"
# The binaries report their version only when the build stamps it (kubectl and helm read it).
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
cd tools/kube
for b in "${BINARIES[@]}"; do
  if [ ! -x "$OUT/$b" ]; then
    echo "build-control-plane: building $b $VERSION (several minutes the first time)" >&2
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "$OUT/$b.partial" "k8s.io/kubernetes/cmd/$b"
    mv "$OUT/$b.partial" "$OUT/$b"
  fi
done
echo "$OUT"
