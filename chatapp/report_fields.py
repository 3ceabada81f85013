"""What a usage report can be grouped by and what it sums (no DuckDB needed to name them)."""

from __future__ import annotations

__all__ = ["REPORT_DIMENSIONS", "REPORT_MEASURES"]

REPORT_DIMENSIONS = {
    "user": "user_id",
    "org": "org_id",
    "model": "model",
    "key": "key_id",
    "day": "CAST(to_timestamp(ts) AS DATE)",
}

# The columns of a report after its dimension, in the order the SELECT below gives them.
REPORT_MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "failed",
)
