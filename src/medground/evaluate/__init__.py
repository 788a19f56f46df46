"""Segmentation evaluation: per-case metrics (MONAI) and per-class / per-modality reports.

* :func:`compute_metrics` — Dice, NSD, HD95, sizes and presence class of one mask pair.
* :class:`Aggregator` / :func:`evaluate_pairs` — collect rows, summarise, write ``report.json``
  and ``report.md``.
"""
from medground.evaluate.aggregate import Aggregator, evaluate_pairs, write_report
from medground.evaluate.metrics import PRESENCE_CLASSES, compute_metrics, presence_class

__all__ = ["compute_metrics", "presence_class", "PRESENCE_CLASSES", "Aggregator", "evaluate_pairs", "write_report"]
