"""Datasets: registry, standard on-disk layout, converters and training iterators.

* :mod:`medground.data.registry` - known datasets with label maps (label id -> ontology term).
* :mod:`medground.data.layout` - ``<root>/<dataset>/{dataset.json, splits.json, cases/<id>/...}``.
* :mod:`medground.data.convert` - converters from ``../shared/data``
  (``python -m medground.data.convert --src ../shared/data --dst DIR``).
* :mod:`medground.data.orient` - canonical display orientation: ``dihedral``, ``to_canonical_axial``.
* :func:`iter_slices` - 2D slices in canonical orientation with ``{term_id: mask}``.
"""
from medground.data.iterate import iter_cases, iter_slices, normalize_volume
from medground.data.layout import list_cases, load_case, make_splits, read_dataset, read_splits
from medground.data.orient import (
    DIHEDRAL_NAMES,
    AxialTransform,
    dihedral,
    from_canonical_axial,
    to_canonical_axial,
    to_canonical_volume,
    undihedral,
)
from medground.data.registry import DatasetInfo, get_dataset, list_datasets

__all__ = [
    "DIHEDRAL_NAMES", "AxialTransform", "DatasetInfo", "dihedral", "undihedral", "to_canonical_axial",
    "from_canonical_axial", "to_canonical_volume", "get_dataset", "list_datasets", "iter_slices", "iter_cases",
    "normalize_volume", "list_cases", "load_case", "make_splits", "read_dataset", "read_splits",
]
