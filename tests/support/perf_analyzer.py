"""NVIDIA's perf_analyzer (from the tritonclient wheel), runnable without installing libraries.

The binary needs libb64.so.0d and libcudart.so.12: both are taken from the copies vendored in the
nvidia-pytriton wheel through a directory of symlinks, so nothing is installed system-wide.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def find_perf_analyzer() -> tuple[str, dict[str, str]] | None:
    """The perf_analyzer binary and an environment in which its shared libraries resolve (None: absent)."""
    binary = Path(sys.executable).parent / "perf_analyzer"
    if not binary.is_file():
        return None
    import pytriton

    libs = Path(pytriton.__file__).resolve().parents[1] / "nvidia_pytriton.libs"
    shim = Path(tempfile.mkdtemp(prefix="pa-libs-"))
    atexit.register(shutil.rmtree, shim, ignore_errors=True)
    for pattern, name in (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12")):
        found = sorted(libs.glob(pattern))
        if found:
            (shim / name).symlink_to(found[0])
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(shim), env.get("LD_LIBRARY_PATH", "")) if p)
    return str(binary), env
