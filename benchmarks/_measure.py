"""Small helpers shared by the benchmark scripts: wall time and peak RSS of a block."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


@contextmanager
def measure(interval: float = 0.02) -> Iterator[Measurement]:
    """Wall time and peak resident memory (sampled) of the enclosed block."""
    process = psutil.Process()
    result = Measurement(start_rss_mb=process.memory_info().rss / 2**20)
    peak = [result.start_rss_mb]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss / 2**20)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        result.peak_rss_mb = max(peak[0], process.memory_info().rss / 2**20)


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def code_version() -> dict[str, object]:
    """The commit the benchmark ran on and whether the working tree had changes beside it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def write_results(path: Path, payload: dict[str, object]) -> None:
    """Write a benchmark's results with when it ran and on which code (``measured_at``, ``code``)."""
    import datetime as dt

    stamped = {"measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), "code": code_version()} | payload
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamped, indent=2, default=str) + "\n")
