"""Converters from the sets in ``../shared/data`` to the standard layout (see ``data/README.md``).

Command line::

    python -m medground.data.convert --src ../shared/data --dst /tmp/medground-data [--datasets btcv-ct,jsrt-cxr] [--limit 2]

Python::

    from medground.data.convert import convert
    convert("../shared/data", "/tmp/medground-data", datasets=["btcv-ct"], limit=2)

Each converter is keyed by its source folder and writes one or more datasets (named as in the
registry). Orientation decisions, with how they were verified, are documented per converter module
and in each dataset's registry entry (``orientation``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

from medground.io.image import MedGroundInputError

from medground.data.convert.abdomen import convert_btcv, convert_chaos
from medground.data.convert.brain import convert_brain_atlases
from medground.data.convert.cxr import convert_acdc, convert_covid, convert_jsrt
from medground.data.convert.pictures import convert_drive, convert_kvasir, convert_ph2
from medground.data.convert.volumes import convert_ct_lesions, convert_mr_tumour, convert_totalsegmentator

# source folder -> (converter, datasets it writes)
CONVERTERS: dict[str, tuple[Callable[..., list[Path]], tuple[str, ...]]] = {
    "btcv-ct": (convert_btcv, ("btcv-ct",)),
    "chaos-mr": (convert_chaos, ("chaos-mr",)),
    "acdc-cmr": (convert_acdc, ("acdc-cmr",)),
    "jsrt-cxr": (convert_jsrt, ("jsrt-cxr",)),
    "covid-cxr": (convert_covid, ("covid-cxr",)),
    "totalsegmentator": (convert_totalsegmentator, ("totalsegmentator-ct", "totalsegmentator-mr")),
    "ct-lesions": (convert_ct_lesions, ("ct-lesions",)),
    "mr-tumour": (convert_mr_tumour, ("mr-tumour",)),
    "endoscopy-kvasir": (convert_kvasir, ("endoscopy-kvasir",)),
    "dermoscopy-ph2": (convert_ph2, ("dermoscopy-ph2",)),
    "fundus-drive": (convert_drive, ("fundus-drive",)),
    "brain-atlases": (convert_brain_atlases, ("brain-cit168", "brain-cerebellum", "brain-julich")),
}
ALIASES = {"btcv": "btcv-ct", "chaos": "chaos-mr", "acdc": "acdc-cmr", "jsrt": "jsrt-cxr", "covid": "covid-cxr",
           "kvasir": "endoscopy-kvasir", "ph2": "dermoscopy-ph2", "drive": "fundus-drive", "brain": "brain-atlases",
           "totalsegmentator-ct": "totalsegmentator", "totalsegmentator-mr": "totalsegmentator",
           "brain-cit168": "brain-atlases", "brain-cerebellum": "brain-atlases", "brain-julich": "brain-atlases",
           "ct-lesion": "ct-lesions", "mr-tumor": "mr-tumour"}


def converter_names() -> list[str]:
    return list(CONVERTERS)


def _canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in CONVERTERS:
        raise MedGroundInputError(f"no converter for {name!r}; available: {', '.join(CONVERTERS)}")
    return key


def convert(src: str | Path, dst: str | Path, datasets: Iterable[str] | None = None, limit: int | None = None,
            verbose: bool = True, **options) -> dict[str, list[Path]]:
    """Convert the chosen source folders of ``src`` (default: all present) into ``dst``.

    ``limit`` keeps the first N patients (or images) of each set, for quick tests.
    Returns ``{source folder: [written dataset folders]}``.
    """
    from medground.data.convert._common import say

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise MedGroundInputError(f"source folder {src} does not exist")
    names = [_canonical_name(n) for n in datasets] if datasets else [n for n in CONVERTERS if (src / n).is_dir()]
    names = list(dict.fromkeys(names))
    dst.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {}
    for name in names:
        if not (src / name).is_dir():
            raise MedGroundInputError(f"{src / name} not found")
        t0 = time.time()
        fn, _ = CONVERTERS[name]
        out[name] = fn(src, dst, limit=limit, **options)
        if verbose:
            say(f"{name}: wrote {', '.join(p.name for p in out[name])} in {time.time() - t0:.1f} s")
    return out


__all__ = ["CONVERTERS", "convert", "converter_names"]
