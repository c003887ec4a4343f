"""Work directories of the benchmarks: made under the system temp dir, removed when the run ends."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def work_dir(prefix: str) -> Path:
    """A new directory, removed at exit (normal or by an exception): runs leave nothing behind."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
