"""Grounded structured reports: panels of structures, measurements with units and methods, reference
ranges, and report.json / report.md / report.html / DICOM SR (report.dcm).

* :func:`build_report` - segment the panel's structures by text prompt and write the report;
* :func:`report_from_masks` - the measurement/report stage alone, on given masks;
* :func:`detect_context`, :func:`choose_panel`, :func:`load_panel` - modality/region and panels.
The schema of report.json is documented in ``docs/REPORT_SCHEMA.md``.
"""
from medground.report.builder import REPORT_VERSION, build_report, report_from_masks
from medground.report.panels import choose_panel, detect_context, load_panel, panel_keys

__all__ = ["build_report", "report_from_masks", "detect_context", "choose_panel", "load_panel", "panel_keys",
           "REPORT_VERSION"]
