"""Shared constants and helpers of the serving tests (imported by conftest and the test modules)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
API_KEY = "test-key-4f0c1d2e9a8b7c6d5e4f3a2b"
OTHER_KEY = "second-key-0a1b2c3d4e5f6a7b8c9d"
TEST_LEADS = 4000


@dataclass(frozen=True)
class TrainedModel:
    home: Path
    env: dict[str, str]
    leads: list[dict[str, Any]]  # raw leads (API format), newest of the simulated export

    def lead(self, i: int = 0) -> dict[str, Any]:
        return json.loads(json.dumps(self.leads[i]))

    def batch(self, n: int, start: int = 0) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.leads[start : start + n]))


def serving_environment(trained: TrainedModel, **extra: str) -> dict[str, str]:
    """Environment for a service instance pointing at the test model."""
    env = {
        **trained.env,
        "LEADSCORE_API_KEYS": f"{API_KEY},{OTHER_KEY}",
        "LEADSCORE_RELOAD_SECONDS": "0",
        "LEADSCORE_MODEL_NAME": "leadscore",
    }
    env.update(extra)
    return env
