"""`tritium operator` as a process: liveness endpoint, metrics endpoint, clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import aiohttp

from tests.support.kube_emulator import kubeconfig_for, running_emulator
from tests.support.operator_runner import api_client, eventually
from tests.support.operator_scenarios import create, make_isvc, wait_children


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_operator_process_serves_liveness_and_metrics() -> None:
    liveness, metrics = _free_port(), _free_port()
    async with running_emulator() as (_, url):
        with kubeconfig_for(url):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tritium.cli", "operator", "--liveness-port", str(liveness),
                 "--metrics-port", str(metrics)],
                env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            client = api_client()
            try:
                async with aiohttp.ClientSession() as http:
                    async def live() -> bool:
                        try:
                            async with http.get(f"http://127.0.0.1:{liveness}/healthz") as resp:
                                return resp.status == 200
                        except aiohttp.ClientError:
                            return False

                    await eventually(live, timeout=30)
                    created = await create(client, make_isvc("process", "default"))
                    await wait_children(client, "default", "process", created["metadata"]["uid"])

                    async def counted() -> bool:
                        async with http.get(f"http://127.0.0.1:{metrics}/metrics") as resp:
                            text = await resp.text()
                        return 'tritium_operator_reconciles_total{result="success"}' in text and \
                            "tritium_operator_reconcile_duration_seconds_bucket" in text

                    await eventually(counted)
                proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(proc.wait, 30)
                assert code == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else code
            finally:
                if proc.poll() is None:
                    proc.kill()
                await client.close()
