"""What a test does when a tool it runs for real (helm, promtool) is not installed."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_tool(message: str, in_ci: str) -> NoReturn:
    """Skip on a developer machine; fail when CI is set, where every check must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}: {in_ci}")
    pytest.skip(message)
