"""Segmentation from boxes, points and text."""
from medground.segment.engine import PropagationConfig, SegmentationResult, segment
from medground.segment.prompts import Prompt, parse_box, parse_point

__all__ = ["segment", "Prompt", "parse_box", "parse_point", "PropagationConfig", "SegmentationResult"]
