"""Segmentation from boxes, points and text.

``medground.segment`` is both this package and the function of the public API: calling the
module, ``medground.segment(image, boxes=...)``, calls :func:`medground.segment.engine.segment`.
"""
import sys
import types

from medground.segment.engine import PropagationConfig, SegmentationResult, segment
from medground.segment.prompts import Prompt, parse_box, parse_point

__all__ = ["segment", "Prompt", "parse_box", "parse_point", "PropagationConfig", "SegmentationResult"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return segment(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
