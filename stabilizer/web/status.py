"""This instance's health for people: session store, WUZAPI circuit, retries and a chart of call outcomes.

The page shows what ``GET /health`` reports, read from the same checks; it is public like
``/health`` and shows no secrets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext

from ..logs import LogStats
from ..views.common import runtime
from ..views.health import circuit_check, store_check
from ..wuzapi.metrics import instance_snapshot
from .common import bp, render_page

# Chart geometry, in SVG user units.
CHART_WIDTH = 600
LABEL_WIDTH = 250
COUNT_WIDTH = 70
ROW_HEIGHT = 30
BAR_HEIGHT = 18
CHART_PADDING = 8


@dataclass(frozen=True)
class Bar:
    """One bar of the outcome chart."""

    label: str
    count: int
    kind: str  # CSS class: ok, retried, failed, rejected
    y: int
    width: float


def outcome_rows() -> list[tuple[str, str, str]]:
    """Return (metrics key, label, CSS class) for each outcome the WUZAPI client counts."""
    return [
        ("succeeded", gettext("Succeeded"), "ok"),
        ("succeeded_after_retry", gettext("Succeeded after retries"), "retried"),
        ("failed", gettext("Failed"), "failed"),
        ("failed_after_retry", gettext("Failed after retries"), "failed"),
        ("rejected_by_circuit", gettext("Rejected by the open circuit"), "rejected"),
    ]


def outcome_chart(calls: dict[str, Any]) -> dict[str, Any]:
    """Lay out a horizontal bar chart of call outcomes; bar widths are relative to the largest count."""
    rows = outcome_rows()
    counts = [int(calls.get(key) or 0) for key, _, _ in rows]
    largest = max(counts) or 1
    bar_area = CHART_WIDTH - LABEL_WIDTH - COUNT_WIDTH
    bars = [
        Bar(label=label, count=count, kind=kind, y=CHART_PADDING + index * ROW_HEIGHT,
            width=round(bar_area * count / largest, 1))
        for index, ((_, label, kind), count) in enumerate(zip(rows, counts, strict=True))
    ]
    return {
        "bars": bars,
        "total": sum(counts),
        "width": CHART_WIDTH,
        "height": CHART_PADDING * 2 + len(bars) * ROW_HEIGHT,
        "label_width": LABEL_WIDTH,
        "bar_area": bar_area,
        "bar_height": BAR_HEIGHT,
    }


def circuit_state_text(state: str) -> tuple[str, str]:
    """Return a short name for the circuit state and a sentence saying what it means for calls."""
    texts = {
        "closed": (gettext("Closed"), gettext("Calls go through.")),
        "open": (gettext("Open"), gettext("Calls to WUZAPI are paused.")),
        "half-open": (gettext("Half-open"), gettext("One trial call at a time decides whether calls resume.")),
        "disabled": (gettext("Disabled"), gettext("WUZAPI_CIRCUIT_ENABLED=false: calls always go through.")),
    }
    return texts.get(state, (state, ""))


@bp.get("/status")
def status():
    store = store_check()
    circuit = circuit_check()
    metrics = instance_snapshot(runtime().metrics)
    logs = LogStats.snapshot()
    return render_page(
        "status.html",
        store=store,
        circuit=circuit,
        circuit_text=circuit_state_text(str(circuit.get("state"))),  # (name, meaning)
        metrics=metrics,
        chart=outcome_chart(metrics.get("calls") or {}),
        dropped_log_records=logs.get("dropped", 0),
        process_id=os.getpid(),
    )
