"""`tritium up`: spec.runtime.env reaches the Triton process, as it reaches the pod's Triton container."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from tests.support.specs import manifest
from tritium.api.resource import parse_inference_service
from tritium.local.runner import LocalRun, triton_process_environment
from tritium.render import deployment
from tritium.render.metadata import revision_of

RUNTIME_ENV = {"runtime": {"env": [{"name": "OMP_NUM_THREADS", "value": "2"}, {"name": "TRITIUM_TEST_EMPTY"},
                                   {"name": "PYTHONUNBUFFERED", "value": "0"}]}}


def _isvc(spec: dict[str, Any]) -> Any:
    return parse_inference_service(manifest(spec))


def test_runtime_env_is_added_to_tritons_environment_and_wins() -> None:
    env = triton_process_environment(_isvc(RUNTIME_ENV), {"PATH": "/bin", "PYTHONUNBUFFERED": "1"})
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "2", "TRITIUM_TEST_EMPTY": "", "PYTHONUNBUFFERED": "0"}


def test_without_runtime_env_tritons_environment_is_the_base() -> None:
    base = {"PATH": "/bin"}
    env = triton_process_environment(_isvc({}), base)
    assert env == base and env is not base


def test_the_local_processes_that_get_it_are_the_pods_containers_that_do() -> None:
    """In the pod only the Triton container carries spec.runtime.env; locally only the Triton process."""
    isvc = _isvc(RUNTIME_ENV)
    pod = deployment.render(isvc, revision_of(isvc.spec))["spec"]["template"]["spec"]
    with_env = {c["name"] for c in pod["containers"] + pod.get("initContainers", [])
                if any(e.get("name") == "OMP_NUM_THREADS" for e in c.get("env", []))}
    assert with_env == {"triton"}
    run = LocalRun(isvc, sys.stdout)
    try:
        assert run.triton_env["OMP_NUM_THREADS"] == "2" and run.triton_env["TRITIUM_TEST_EMPTY"] == ""
        assert run.triton_env["PYTHONUNBUFFERED"] == "0"
        # The stages, the gateway and the fetcher: unchanged.
        assert run.env.get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")
        assert "TRITIUM_TEST_EMPTY" not in run.env
        assert run.env["PYTHONUNBUFFERED"] == "1"
    finally:
        shutil.rmtree(run.workdir, ignore_errors=True)
