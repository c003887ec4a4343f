"""Operator metrics (prometheus-client), served on --metrics-port."""

from prometheus_client import Counter, Histogram

RECONCILES = Counter(
    "tritium_operator_reconciles_total", "Reconciles of InferenceServices by result.", ["result"]
)
RECONCILE_DURATION = Histogram(
    "tritium_operator_reconcile_duration_seconds", "Time spent in one reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("tritium_operator_errors_total", "Errors while reconciling, by kind.", ["kind"])
API_WRITES = Counter(
    "tritium_operator_api_writes_total", "Write calls the operator made to the Kubernetes API.", ["verb", "kind"]
)
WEBHOOK_DELIVERIES = Counter(
    "tritium_operator_webhook_deliveries_total",
    "Rollout notifications to webhooks by outcome (delivered, failed after retries or refused, dropped unsent).",
    ["result"],
)
