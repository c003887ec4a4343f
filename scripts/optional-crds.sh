#!/usr/bin/env bash
# The third-party CRDs Tritium's optional children need, taken from the Go modules that ship them
# (Gateway API, Prometheus Operator, KEDA, cert-manager), copied once into .cache/crds/. Prints that
# directory.
#
# The e2e control plane installs them, so HTTPRoute, ServiceMonitor, PodMonitor, PrometheusRule,
# ScaledObject and Certificate objects are validated by kube-apiserver against their official schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
GATEWAY_API=v1.6.3
PROMETHEUS_OPERATOR=v0.85.0
KEDA=v2.21.0
CERT_MANAGER=v1.21.2
OUT="${TRITIUM_CRD_CACHE:-$PWD/.cache/crds}/gateway-$GATEWAY_API-prom-$PROMETHEUS_OPERATOR-keda-$KEDA-cm-$CERT_MANAGER"
# .complete lists the files copied: a cache made before a CRD was added is completed, not used.
WANT="gateway.networking.k8s.io_gatewayclasses.yaml gateway.networking.k8s.io_gateways.yaml
gateway.networking.k8s.io_httproutes.yaml gateway.networking.k8s.io_referencegrants.yaml
monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml
monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_alertmanagerconfigs.yaml
keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml
cert-manager.io_certificates.yaml cert-manager.io_issuers.yaml cert-manager.io_clusterissuers.yaml"
if [ -f "$OUT/.complete" ] && [ "$(cat "$OUT/.complete")" = "$WANT" ]; then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { echo "optional-crds: Go is needed to fetch the CRD modules" >&2; exit 1; }

module_dir() {
  # `go mod download` needs no go.mod for an exact version; run it outside any module.
  (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

mkdir -p "$OUT"
gateway="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API")"
prometheus="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR")"
keda="$(module_dir "github.com/kedacore/keda/v2@$KEDA")"
cert_manager="$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER")"
for kind in gatewayclasses gateways httproutes referencegrants; do
  cp "$gateway/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$OUT/"
done
for kind in servicemonitors podmonitors prometheusrules alertmanagerconfigs; do
  cp "$prometheus/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$OUT/"
done
for kind in scaledobjects triggerauthentications; do
  cp "$keda/config/crd/bases/keda.sh_$kind.yaml" "$OUT/"
done
for kind in certificates issuers clusterissuers; do
  cp "$cert_manager/deploy/crds/cert-manager.io_$kind.yaml" "$OUT/"
done
chmod u+w "$OUT"/*.yaml
echo "$WANT" >"$OUT/.complete"
echo "$OUT"
