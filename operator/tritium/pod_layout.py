"""Where things live inside a serving pod: ports, paths and container names.

The renderer (Kubernetes), local mode (processes on one machine) and the data-plane servers all
read these constants, so a pod and a local run are wired identically.
"""

GATEWAY_PORT = 8080          # the only port the Service exposes
GATEWAY_METRICS_PORT = 9090  # Prometheus scrape port of the gateway (not behind the Service)
# The stage sidecars' TCP ports: kubelet probes and Prometheus scrapes (GET /metrics). The
# gateway calls the stages over Unix sockets (SOCKET_DIR), and a stage processes messages on its
# TCP port only from loopback (dataplane/stages/server.py).
PRE_PORT = 9001              # preprocessing sidecar
POST_PORT = 9002             # postprocessing sidecar
# Their container port names (<= 15 characters, IANA_SVC_NAME): the PodMonitor scrapes them by name.
PRE_PORT_NAME = "pre-http"
POST_PORT_NAME = "post-http"
TRITON_HTTP_PORT = 8000
TRITON_GRPC_PORT = 8001
TRITON_METRICS_PORT = 8002

MODEL_REPOSITORY = "/models"
CONFIG_DIR = "/etc/tritium"
SPEC_FILE = "inferenceservice.json"    # key in the revision ConfigMap and file in CONFIG_DIR
TRITON_CONFIG_FILE = "config.pbtxt"    # key in the revision ConfigMap
SCRIPTS_DIR = "/etc/tritium/scripts"   # user stage scripts (from a ConfigMap)
SECRETS_DIR = "/etc/tritium/secrets"   # API keys, TLS
PVC_ROOT = "/mnt/pvc"                  # pvc://CLAIM/path is mounted at PVC_ROOT/CLAIM
# The canary split of a blue-green rollout (a ConfigMap the operator updates; the gateway re-reads
# it, see dataplane/canary/traffic.py). A directory of its own: kubelet swaps the whole mount on update.
TRAFFIC_DIR = "/etc/tritium/traffic"
TRAFFIC_FILE = "traffic.json"          # key in the traffic ConfigMap and file in TRAFFIC_DIR

TRITON_CONTAINER = "triton"
PRE_CONTAINER = "preprocess"
POST_CONTAINER = "postprocess"
GATEWAY_CONTAINER = "gateway"
FETCH_CONTAINER = "fetch-model"

# The gateway reaches its stages over Unix sockets in this directory: the pod's "tmp" emptyDir,
# mounted at /tmp in the gateway and in both stage containers (render/deployment.py).
SOCKET_DIR = "/tmp"

RUN_AS_USER = 1000  # the NGC Triton image's triton-server user; the Tritium image uses the same uid
TRITON_EXIT_TIMEOUT = 20  # seconds Triton gives requests in flight after SIGTERM (--exit-timeout-secs)
