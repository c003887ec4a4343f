"""Helpers shared by the test suites: Kubernetes schema validation, CRD checks, example specs."""
