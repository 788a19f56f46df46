"""Reference ranges (``data/reference_ranges.yaml``) and flagging of measurements against them."""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import Any

from medground.io.image import MedGroundInputError


@lru_cache(maxsize=1)
def reference_ranges() -> dict[str, dict[str, Any]]:
    """All reference ranges, keyed by canonical measure name (read once from the package data)."""
    import yaml

    text = resources.files("medground.measure").joinpath("data/reference_ranges.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return dict(data["measures"])


def _resolve(name: str) -> tuple[str, dict[str, Any]]:
    ranges = reference_ranges()
    key = str(name).strip().lower()
    if key in ranges:
        return key, ranges[key]
    for canon, entry in ranges.items():
        if key in (a.lower() for a in entry.get("aliases", [])):
            return canon, entry
    raise MedGroundInputError(f"no reference range for {name!r}; known: {', '.join(sorted(ranges))}.")


def reference_range(name: str) -> dict[str, Any]:
    """The entry of one measure (canonical name or alias), with ``name`` set to the canonical name."""
    canon, entry = _resolve(name)
    return {"name": canon, **entry}


def flag(measure_name: str, value: float | None) -> dict[str, Any]:
    """Compare a measurement with its adult reference range.

    Returns ``{"measure", "value", "status", "finding", "range", "unit", "population", "source"}``
    where ``status`` is ``"normal"``, ``"high"`` or ``"low"`` (``"unknown"`` when ``value`` is
    ``None`` or not finite), ``finding`` the suggested finding for high/low values (else ``None``)
    and ``range`` ``{"min", "max", "min_inclusive", "max_inclusive"}`` (``None`` = open bound).
    Unknown measure names raise MedGroundInputError.
    """
    canon, entry = _resolve(measure_name)
    normal = entry.get("normal", {})
    lo, hi = normal.get("min"), normal.get("max")
    lo_inc, hi_inc = bool(normal.get("min_inclusive", True)), bool(normal.get("max_inclusive", True))
    rng = {"min": lo, "max": hi, "min_inclusive": lo_inc, "max_inclusive": hi_inc}
    status, finding = "unknown", None
    v = None if value is None else float(value)
    if v is not None and math.isfinite(v):
        status = "normal"
        if hi is not None and (v > hi or (v == hi and not hi_inc)):
            status, finding = "high", entry.get("high_finding")
        elif lo is not None and (v < lo or (v == lo and not lo_inc)):
            status, finding = "low", entry.get("low_finding")
    return {
        "measure": canon,
        "value": v,
        "status": status,
        "finding": finding,
        "range": rng,
        "unit": entry.get("unit"),
        "population": entry.get("population"),
        "source": " ".join(str(entry.get("source", "")).split()),
    }
