"""The :class:`Term` record and the loader of the ontology's YAML data files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("anatomy", "finding")
LATERALITIES = ("left", "right", "none")
LEVELS = ("region", "system", "organ", "part", "group", "finding")

# Canonical modality codes (DICOM-like; XR = any radiograph) and accepted aliases.
MODALITIES = {
    "CT": "computed tomography", "MR": "magnetic resonance imaging", "XR": "radiography (X-ray)",
    "US": "ultrasound", "PT": "positron emission tomography", "NM": "nuclear medicine",
    "MG": "mammography", "ES": "endoscopy", "XC": "photography / dermoscopy", "OP": "ophthalmic (fundus) photography",
}
MODALITY_ALIASES = {
    "mri": "MR", "mr": "MR", "ct": "CT", "cect": "CT", "cta": "CT", "xr": "XR", "xray": "XR", "x-ray": "XR",
    "cxr": "XR", "dx": "XR", "cr": "XR", "radiograph": "XR", "radiography": "XR", "us": "US", "ultrasound": "US",
    "echo": "US", "pet": "PT", "pt": "PT", "nm": "NM", "spect": "NM", "mg": "MG", "mammography": "MG",
    "es": "ES", "endoscopy": "ES", "colonoscopy": "ES", "xc": "XC", "photo": "XC", "dermoscopy": "XC",
    "op": "OP", "fundus": "OP", "oct": "OP",
}


def canonical_modality(mod: str) -> str | None:
    """'MRI' -> 'MR', 'x-ray' -> 'XR', ...; None when unknown."""
    m = str(mod).strip()
    if m.upper() in MODALITIES:
        return m.upper()
    return MODALITY_ALIASES.get(m.lower())


@dataclass(frozen=True)
class Term:
    """One concept of the ontology (an anatomical structure or a finding)."""

    id: str
    name: str
    kind: str = "anatomy"
    level: str = "organ"
    synonyms: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    parent: str | None = None
    region: str | None = None
    system: str | None = None
    modalities: tuple[str, ...] = ()
    laterality: str = "none"
    pair: tuple[str, ...] = ()          # (left_id, right_id) for paired structures
    union_of: tuple[str, ...] = ()      # parts whose union this term is (pair sides, lobule parts...)
    codes: dict[str, str] = field(default_factory=dict)
    definition: str = ""
    datasets: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Term) and other.id == self.id

    def __repr__(self) -> str:
        return f"Term({self.id!r})"

    @property
    def is_paired(self) -> bool:
        return bool(self.pair)

    @property
    def parts(self) -> tuple[str, ...]:
        """Ids whose union this term denotes (pair sides or ``union_of``), or ``()``."""
        return self.union_of or self.pair

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "name": self.name, "kind": self.kind, "level": self.level,
            "synonyms": list(self.synonyms), "abbreviations": list(self.abbreviations),
            "parent": self.parent, "region": self.region, "system": self.system,
            "modalities": list(self.modalities), "laterality": self.laterality,
            "pair": list(self.pair), "union_of": list(self.union_of), "codes": dict(self.codes),
            "definition": self.definition, "datasets": dict(self.datasets),
        }
        return d


# ------------------------------------------------------------------------------------ loading
_FIELDS = {"id", "name", "kind", "level", "synonyms", "abbreviations", "parent", "region", "system",
           "modalities", "laterality", "pair", "union_of", "codes", "definition", "datasets", "sides"}
_SIDE_FIELDS = {"id", "name", "synonyms", "abbreviations", "codes", "datasets", "definition", "parent", "modalities"}


def _yaml_load(path: Path) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s and not s[:2].isupper() else s


def expand_sides(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Turn one raw entry with ``sides:`` into the base term plus its left and right terms."""
    sides = raw.pop("sides", None)
    if not sides:
        return [raw]
    out = [raw]
    pair = []
    for side in ("left", "right"):
        spec = dict(sides.get(side) or {})
        unknown = set(spec) - _SIDE_FIELDS
        if unknown:
            raise ValueError(f"{where}: term {raw['id']!r} side {side!r}: unknown fields {sorted(unknown)}")
        sid = spec.pop("id", f"{raw['id']}_{side}")
        name = spec.pop("name", f"{side} {raw['name']}")
        base_syn = [raw["name"]] + list(raw.get("synonyms") or [])
        gen_syn = [f"{raw['name']} {side}", f"{raw['name']} ({side})"]
        # "left renal parenchyma" etc. for multi-word synonyms keeps left/right searchable
        gen_syn += [f"{side} {s}" for s in base_syn[1:] if " " in s and not s.startswith(("left ", "right "))]
        syn = list(spec.pop("synonyms", [])) + gen_syn
        definition = spec.pop("definition", None) or (
            f"The {side} {raw['name']}: {_lower_first(raw.get('definition', ''))}" if raw.get("definition") else "")
        term = {
            "id": sid, "name": name, "kind": raw.get("kind"), "level": raw.get("level"),
            "parent": spec.pop("parent", raw["id"]), "region": raw.get("region"), "system": raw.get("system"),
            "modalities": spec.pop("modalities", raw.get("modalities")), "laterality": side,
            "synonyms": syn, "abbreviations": spec.pop("abbreviations", []),
            "codes": spec.pop("codes", {}), "datasets": spec.pop("datasets", {}), "definition": definition,
        }
        out.append(term)
        pair.append(sid)
    raw["pair"] = pair
    return out


def load_raw_terms(data_dir: Path) -> list[dict[str, Any]]:
    """All raw term dicts from the YAML files in ``data_dir`` (sorted by file name)."""
    raws: list[dict[str, Any]] = []
    for path in sorted(Path(data_dir).glob("*.yaml")):
        doc = _yaml_load(path) or {}
        defaults = dict(doc.get("defaults") or {})
        for entry in doc.get("terms") or []:
            if not isinstance(entry, dict) or "id" not in entry:
                raise ValueError(f"{path.name}: every term needs an 'id': {entry!r}")
            unknown = set(entry) - _FIELDS
            if unknown:
                raise ValueError(f"{path.name}: term {entry['id']!r}: unknown fields {sorted(unknown)}")
            raw = {**defaults, **entry}
            raw.setdefault("name", raw["id"].replace("_", " "))
            for t in expand_sides(raw, path.name):
                for k, v in defaults.items():
                    if t.get(k) is None:
                        t[k] = v
                t["_file"] = path.name
                raws.append(t)
    return raws


def build_terms(raws: list[dict[str, Any]]) -> dict[str, Term]:
    """Validate raw dicts and build :class:`Term` objects, filling inherited region/system/modalities."""
    by_id: dict[str, dict[str, Any]] = {}
    for r in raws:
        tid = r["id"]
        if tid in by_id:
            raise ValueError(f"duplicate term id {tid!r} ({by_id[tid]['_file']} and {r['_file']})")
        if tid != tid.lower() or not tid.replace("_", "").isalnum():
            raise ValueError(f"term id {tid!r} is not snake_case")
        by_id[tid] = r

    def inherited(tid: str, key: str, seen=()):
        r = by_id[tid]
        if r.get(key):
            return r[key]
        p = r.get("parent")
        if p and p in by_id and p not in seen:
            return inherited(p, key, seen + (tid,))
        return None

    terms: dict[str, Term] = {}
    for tid, r in by_id.items():
        parent = r.get("parent")
        if parent is not None and parent not in by_id:
            raise ValueError(f"term {tid!r}: unknown parent {parent!r}")
        kind = r.get("kind") or "anatomy"
        if kind not in KINDS:
            raise ValueError(f"term {tid!r}: kind must be one of {KINDS}")
        lat = r.get("laterality") or "none"
        if lat not in LATERALITIES:
            raise ValueError(f"term {tid!r}: laterality must be one of {LATERALITIES}")
        level = r.get("level") or "organ"
        if level not in LEVELS:
            raise ValueError(f"term {tid!r}: level must be one of {LEVELS}")
        mods = tuple(inherited(tid, "modalities") or ())
        for m in mods:
            if m not in MODALITIES:
                raise ValueError(f"term {tid!r}: unknown modality {m!r}")
        region = inherited(tid, "region")
        system = r.get("system") or (tid if level == "system" else None)
        if system is None:
            system = inherited(tid, "system")
            if system is None:  # nearest ancestor that is a system
                p = parent
                while p is not None:
                    if by_id[p].get("level") == "system":
                        system = p
                        break
                    p = by_id[p].get("parent")
        codes = {str(k): str(v) for k, v in (r.get("codes") or {}).items()}
        terms[tid] = Term(
            id=tid, name=str(r.get("name") or tid.replace("_", " ")), kind=kind, level=level,
            synonyms=tuple(str(s) for s in (r.get("synonyms") or ())),
            abbreviations=tuple(str(s) for s in (r.get("abbreviations") or ())),
            parent=parent, region=region, system=system, modalities=mods, laterality=lat,
            pair=tuple(r.get("pair") or ()), union_of=tuple(r.get("union_of") or ()),
            codes=codes, definition=str(r.get("definition") or "").strip(),
            datasets=dict(r.get("datasets") or {}),
        )
    for t in terms.values():
        for ref in t.pair + t.union_of:
            if ref not in terms:
                raise ValueError(f"term {t.id!r}: pair/union_of refers to unknown term {ref!r}")
        for ref, what in ((t.region, "region"), (t.system, "system")):
            if ref is not None and ref not in terms:
                raise ValueError(f"term {t.id!r}: unknown {what} {ref!r}")
        if t.pair and len(t.pair) != 2:
            raise ValueError(f"term {t.id!r}: pair must have two members")
    return terms
