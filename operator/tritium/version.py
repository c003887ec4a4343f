"""The package version (kept equal to pyproject.toml's and the chart's appVersion by tests)."""

__version__ = "0.1.0"
