"""Names of the files a training run logs and other stages read back (one place, no string copies)."""

from __future__ import annotations

TEST_FEATURES_ARTIFACT = "evaluation/test_features.parquet"
"""The candidate's test rows (features + label), read by the promotion gate to compare models."""
