"""The billing export: one CSV row per UTC day, key and model (CLI `usage --csv` and the API)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from vllm_gateway.db.usage import COUNTED

COLUMNS = ("day", "key_id", "model", *COUNTED, "total_tokens", "cost_usd")


def csv_row(row: Any) -> dict[str, Any]:
    """A usage_daily row with its counts as ints, its total tokens and its cost (to a
    millionth of a dollar, the precision budgets are kept in)."""
    counts = {name: int(row[name] or 0) for name in COUNTED}
    total = counts["prompt_tokens"] + counts["completion_tokens"]
    return {
        "day": row["day"],
        "key_id": row["key_id"],
        "model": row["model"],
        **counts,
        "total_tokens": total,
        "cost_usd": round(float(row["cost_usd"] or 0.0), 6),
    }


def usage_csv(rows: Iterable[Any]) -> str:
    """The rows as CSV text with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_row(row))
    return out.getvalue()
