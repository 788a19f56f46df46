"""Registry of datasets: description, citation, licence, modality and label map (id -> ontology term).

Entries live in ``medground/data/datasets/*.yaml`` (shipped with the package). Two families:

* public datasets users bring themselves (TotalSegmentator, AMOS, BTCV, FLARE22, KiTS23, LiTS, the
  ten MSD tasks, BraTS, CHAOS, JSRT, Montgomery, Shenzhen, ACDC) - their official label maps;
* the converted forms of the sets in ``../shared/data`` (``btcv-ct``, ``chaos-mr``, ...), whose
  label maps are the ones written by :mod:`medground.data.convert`.

>>> from medground.data.registry import get_dataset
>>> get_dataset("btcv").labels[6]
'liver'
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medground.io.image import MedGroundInputError

DATASETS_DIR = Path(__file__).with_name("datasets")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    description: str
    modality: tuple[str, ...]
    labels: dict[int, str]                       # label value -> ontology term id (0 = background, omitted)
    citation: str = ""
    licence: str = ""
    url: str = ""
    dims: int = 3
    class_names: dict[int, str] = field(default_factory=dict)  # label value -> name used by the dataset
    source: str | None = None                    # registry name of the public dataset it derives from
    converter: str | None = None                 # folder of ../shared/data it is converted from
    orientation: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def term_ids(self) -> list[str]:
        return list(dict.fromkeys(self.labels.values()))

    def label_of(self, term_id: str) -> int:
        for k, v in self.labels.items():
            if v == term_id:
                return k
        raise MedGroundInputError(f"dataset {self.name!r} has no label for term {term_id!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "modality": list(self.modality), "dims": self.dims, "citation": self.citation,
            "licence": self.licence, "url": self.url,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "class_names": {str(k): v for k, v in sorted(self.class_names.items())},
            "source": self.source, "converter": self.converter, "orientation": self.orientation,
            "notes": self.notes, **({"extra": self.extra} if self.extra else {}),
        }


_KNOWN = {"name", "title", "description", "modality", "labels", "citation", "licence", "url", "dims",
          "class_names", "source", "converter", "orientation", "notes", "extra"}


def _parse(entry: dict[str, Any], where: str) -> DatasetInfo:
    unknown = set(entry) - _KNOWN
    if unknown:
        raise ValueError(f"{where}: dataset {entry.get('name')!r}: unknown fields {sorted(unknown)}")
    mod = entry.get("modality") or ()
    mod = (mod,) if isinstance(mod, str) else tuple(mod)
    labels = {int(k): str(v) for k, v in (entry.get("labels") or {}).items() if int(k) != 0}
    names = {int(k): str(v) for k, v in (entry.get("class_names") or {}).items()}
    return DatasetInfo(
        name=str(entry["name"]), title=str(entry.get("title") or entry["name"]),
        description=" ".join(str(entry.get("description") or "").split()), modality=mod, labels=labels,
        citation=" ".join(str(entry.get("citation") or "").split()), licence=str(entry.get("licence") or ""),
        url=str(entry.get("url") or ""), dims=int(entry.get("dims") or 3), class_names=names,
        source=entry.get("source"), converter=entry.get("converter"),
        orientation=" ".join(str(entry.get("orientation") or "").split()),
        notes=" ".join(str(entry.get("notes") or "").split()), extra=dict(entry.get("extra") or {}),
    )


def load_registry(directory: str | Path = DATASETS_DIR) -> dict[str, DatasetInfo]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, DatasetInfo] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=loader) or {}
        entries = doc.get("datasets") if isinstance(doc, dict) and "datasets" in doc else [doc]
        for e in entries:
            info = _parse(e, path.name)
            if info.name in out:
                raise ValueError(f"dataset {info.name!r} defined twice ({path.name})")
            out[info.name] = info
    return out


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, DatasetInfo]:
    return load_registry()


def list_datasets() -> list[str]:
    return sorted(_registry())


def all_datasets() -> list[DatasetInfo]:
    return [_registry()[n] for n in list_datasets()]


def get_dataset(name: str) -> DatasetInfo:
    reg = _registry()
    key = name.strip().lower().replace("_", "-")
    for cand in (name, key, key.replace("-", "_")):
        if cand in reg:
            return reg[cand]
    import difflib

    close = difflib.get_close_matches(key, list(reg), n=3, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}?" if close else f"; known: {', '.join(sorted(reg))}"
    raise MedGroundInputError(f"unknown dataset {name!r}{hint}")


def validate_against_ontology(info: DatasetInfo) -> list[str]:
    """Problems of ``info``'s label map w.r.t. the ontology (unknown term ids); empty when fine."""
    from medground.ontology import Ontology

    ont = Ontology.default()
    return [f"{info.name}: label {k} -> unknown term {v!r}" for k, v in info.labels.items() if v not in ont]
