"""The kopf operator: the only part that talks to the Kubernetes API."""
