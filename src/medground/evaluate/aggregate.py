"""Collect per-case metrics and summarise them per class, per modality and overall.

Summary statistics (for each group):

* ``dice`` / ``nsd``: mean, median and standard deviation (population, ``ddof=0``) over the rows of
  the group. By default (``stats_over="all"``) every row counts, with the empty-mask rule of
  :func:`medground.evaluate.metrics.compute_metrics` (a true negative scores 1, a false positive or
  a miss scores 0). ``stats_over="ref_present"`` restricts them to rows whose reference is
  non-empty (the usual "segmentation quality" view).
* ``hd95``: the same statistics over the finite values only; ``n_undefined`` counts the rows whose
  HD95 is undefined (NaN: exactly one of prediction / reference empty).
* ``presence``: TP/FP/TN/FN counts with accuracy, sensitivity (present structures found) and
  specificity (absent structures reported absent), each ``None`` when its denominator is 0.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medground.evaluate.metrics import PRESENCE_CLASSES, compute_metrics
from medground.io.image import MedGroundInputError

SUMMARY_METRICS = ("dice", "nsd", "hd95")


def _finite(values: Iterable[Any]) -> np.ndarray:
    arr = np.array([float(v) for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def _stats(values: Sequence[Any]) -> dict[str, Any]:
    vals = _finite(values)
    if vals.size == 0:
        return {"n": 0, "mean": None, "median": None, "std": None}
    return {
        "n": int(vals.size),
        "mean": float(vals.mean()),
        "median": float(np.median(vals)),
        "std": float(vals.std()),
    }


def _ratio(num: int, den: int) -> float | None:
    return float(num) / den if den else None


def _presence(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    c = {k: 0 for k in PRESENCE_CLASSES}
    for r in rows:
        c[r["presence"]] += 1
    n = sum(c.values())
    return {
        **c,
        "accuracy": _ratio(c["TP"] + c["TN"], n),
        "sensitivity": _ratio(c["TP"], c["TP"] + c["FN"]),
        "specificity": _ratio(c["TN"], c["TN"] + c["FP"]),
    }


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}" if math.isfinite(float(v)) else "NaN"
    return str(v).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return lines


class Aggregator:
    """Per-case, per-class, per-modality metric rows and their summaries.

    >>> agg = Aggregator()
    >>> agg.add_pair("case1", "CT", "liver", pred, ref, spacing=(0.8, 0.8, 2.5))  # doctest: +SKIP
    >>> agg.write("out/eval")  # report.json + report.md                       # doctest: +SKIP
    """

    def __init__(self, nsd_tolerance_mm: float = 2.0, stats_over: str = "all") -> None:
        if stats_over not in ("all", "ref_present"):
            raise MedGroundInputError(f"stats_over must be 'all' or 'ref_present', got {stats_over!r}.")
        self.nsd_tolerance_mm = float(nsd_tolerance_mm)
        self.stats_over = stats_over
        self.rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ input
    def add(self, case_id: str, modality: str | None, class_name: str, metrics: dict[str, Any]) -> dict[str, Any]:
        """Add one row from a :func:`compute_metrics` result; returns the stored row."""
        for key in ("dice", "nsd", "hd95", "presence", "ref_present"):
            if key not in metrics:
                raise MedGroundInputError(f"metrics for {case_id}/{class_name} lack {key!r}.")
        row = {
            "case_id": str(case_id),
            "modality": str(modality) if modality else "unknown",
            "class_name": str(class_name),
        }
        row.update({k: v for k, v in metrics.items() if k != "presence_counts"})
        self.rows.append(row)
        return row

    def add_pair(
        self,
        case_id: str,
        modality: str | None,
        class_name: str,
        pred_mask: np.ndarray,
        ref_mask: np.ndarray,
        spacing: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Compute the metrics of one prediction/reference pair and add them."""
        m = compute_metrics(pred_mask, ref_mask, spacing, nsd_tolerance_mm=self.nsd_tolerance_mm)
        return self.add(case_id, modality, class_name, m)

    def __len__(self) -> int:
        return len(self.rows)

    # ---------------------------------------------------------------- summary
    def _group_summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        scored = rows if self.stats_over == "all" else [r for r in rows if r["ref_present"]]
        hd = [r["hd95"] for r in scored]
        hd_stats = _stats(hd)
        hd_stats["n_undefined"] = sum(1 for v in hd if v is None or not math.isfinite(float(v)))
        return {
            "n": len(rows),
            "n_ref_present": sum(1 for r in rows if r["ref_present"]),
            "dice": _stats([r["dice"] for r in scored]),
            "nsd": _stats([r["nsd"] for r in scored]),
            "hd95": hd_stats,
            "presence": _presence(rows),
        }

    def _grouped(self, key) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in self.rows:
            groups.setdefault(key(r), []).append(r)
        return {k: self._group_summary(groups[k]) for k in sorted(groups)}

    def summary(self) -> dict[str, Any]:
        """``overall``, ``per_class``, ``per_modality`` and ``per_modality_class`` (key ``"MOD/class"``)."""
        return {
            "overall": self._group_summary(self.rows),
            "per_class": self._grouped(lambda r: r["class_name"]),
            "per_modality": self._grouped(lambda r: r["modality"]),
            "per_modality_class": self._grouped(lambda r: f"{r['modality']}/{r['class_name']}"),
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole report (config, summary, per-case rows) as strict-JSON-ready data (NaN -> null)."""
        return _json_safe({
            "config": {
                "nsd_tolerance_mm": self.nsd_tolerance_mm,
                "stats_over": self.stats_over,
                "hd95_percentile": 95,
                "std": "population (ddof=0)",
                "empty_reference_rule": {
                    "ref empty, pred empty (TN)": {"dice": 1.0, "nsd": 1.0, "hd95": 0.0},
                    "ref empty, pred non-empty (FP)": {"dice": 0.0, "nsd": 0.0, "hd95": "NaN (undefined)"},
                    "ref non-empty, pred empty (FN)": {"dice": 0.0, "nsd": 0.0, "hd95": "NaN (undefined)"},
                },
                "metrics_backend": "MONAI compute_dice / compute_surface_dice / compute_hausdorff_distance",
            },
            "summary": self.summary(),
            "cases": self.rows,
        })

    # ---------------------------------------------------------------- writers
    def to_markdown(self, max_case_rows: int = 500) -> str:
        """A Markdown report: overall, per-class, per-modality and per-case tables."""
        s = self.summary()
        tol = self.nsd_tolerance_mm
        over = "all rows" if self.stats_over == "all" else "rows with a non-empty reference"
        lines = [
            "# Segmentation evaluation",
            "",
            f"{len(self.rows)} rows ({len({r['case_id'] for r in self.rows})} cases). "
            f"Dice, NSD (tolerance {tol:g} mm) and HD95 (mm) by MONAI; mean ± std (population) and median over {over}. "
            "HD95 is summarised over its finite values; `undef.` counts rows where it is undefined.",
            "",
            "Empty masks: reference and prediction both empty → Dice 1, NSD 1, HD95 0 (true negative); "
            "exactly one empty → Dice 0, NSD 0, HD95 undefined (false positive or miss). "
            "Presence: specificity = absent structures reported absent; sensitivity = present structures found.",
            "",
        ]

        header = ["group", "n", "ref present", "Dice mean ± std", "Dice median", "NSD mean ± std", "NSD median",
                  "HD95 mean ± std", "HD95 median", "HD95 undef.", "TP", "FP", "TN", "FN",
                  "presence acc.", "sens.", "spec."]

        def row(name: str, g: dict[str, Any]) -> list[str]:
            d, n, h, p = g["dice"], g["nsd"], g["hd95"], g["presence"]

            def ms(st: dict[str, Any], digits: int) -> str:
                if st["mean"] is None:
                    return "–"
                return f"{_fmt(st['mean'], digits)} ± {_fmt(st['std'], digits)}"

            return [_fmt(name), _fmt(g["n"]), _fmt(g["n_ref_present"]), ms(d, 3), _fmt(d["median"]), ms(n, 3),
                    _fmt(n["median"]), ms(h, 2), _fmt(h["median"], 2), _fmt(h["n_undefined"]),
                    _fmt(p["TP"]), _fmt(p["FP"]), _fmt(p["TN"]), _fmt(p["FN"]),
                    _fmt(p["accuracy"]), _fmt(p["sensitivity"]), _fmt(p["specificity"])]

        lines += ["## Overall", ""] + _table(header, [row("all", s["overall"])]) + [""]
        for title, key in (("Per class", "per_class"), ("Per modality", "per_modality"),
                           ("Per modality and class", "per_modality_class")):
            lines += [f"## {title}", ""] + _table(header, [row(k, v) for k, v in s[key].items()]) + [""]

        if max_case_rows > 0 and self.rows:
            lines += ["## Cases", ""]
            shown = self.rows[:max_case_rows]
            case_header = ["case", "modality", "class", "Dice", "NSD", "HD95 (mm)", "presence", "pred size", "ref size"]
            case_rows = []
            for r in shown:
                if "volume_pred_ml" in r:
                    ps, rs = f"{_fmt(r['volume_pred_ml'], 2)} ml", f"{_fmt(r['volume_ref_ml'], 2)} ml"
                elif "area_pred_mm2" in r:
                    ps, rs = f"{_fmt(r['area_pred_mm2'], 1)} mm²", f"{_fmt(r['area_ref_mm2'], 1)} mm²"
                else:
                    ps, rs = "–", "–"
                if r.get("units") == "voxel":  # no spacing given: sizes in voxels/pixels
                    ps, rs = f"{r.get('pred_voxels', '–')} vox", f"{r.get('ref_voxels', '–')} vox"
                case_rows.append([_fmt(r["case_id"]), _fmt(r["modality"]), _fmt(r["class_name"]), _fmt(r["dice"]),
                                  _fmt(r["nsd"]), _fmt(r["hd95"], 2), r["presence"], ps, rs])
            lines += _table(case_header, case_rows)
            if len(self.rows) > max_case_rows:
                lines += ["", f"({len(self.rows) - max_case_rows} more rows in report.json)"]
            lines.append("")
        return "\n".join(lines)

    def write(self, folder: str | Path, max_case_rows: int = 500) -> dict[str, Path]:
        """Write ``report.json`` and ``report.md`` into ``folder`` (created); returns their paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        pj, pm = out / "report.json", out / "report.md"
        pj.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        pm.write_text(self.to_markdown(max_case_rows=max_case_rows), encoding="utf-8")
        return {"json": pj, "markdown": pm}


def evaluate_pairs(
    pairs: Iterable[tuple[str, str | None, str, np.ndarray, np.ndarray, Sequence[float] | None]],
    nsd_tolerance_mm: float = 2.0,
    stats_over: str = "all",
    aggregator: Aggregator | None = None,
) -> Aggregator:
    """Score ``(case_id, modality, class_name, pred_mask, ref_mask, spacing)`` tuples into an Aggregator.

    Pairs are consumed one at a time (a generator keeps memory flat). Pass ``aggregator`` to append
    to an existing one (its own tolerance and ``stats_over`` are kept).
    """
    agg = aggregator if aggregator is not None else Aggregator(nsd_tolerance_mm, stats_over=stats_over)
    for item in pairs:
        if len(item) != 6:
            raise MedGroundInputError(
                "each pair must be (case_id, modality, class_name, pred_mask, ref_mask, spacing)."
            )
        case_id, modality, class_name, pred, ref, spacing = item
        agg.add_pair(case_id, modality, class_name, pred, ref, spacing)
    return agg


def write_report(aggregator: Aggregator, folder: str | Path, max_case_rows: int = 500) -> dict[str, Path]:
    """Write ``report.json`` and ``report.md`` for ``aggregator`` into ``folder``."""
    return aggregator.write(folder, max_case_rows=max_case_rows)


__all__ = ["Aggregator", "evaluate_pairs", "write_report", "SUMMARY_METRICS"]
