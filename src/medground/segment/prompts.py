"""Spatial prompts (boxes and points) in the input's own voxel grid, parsed and validated."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medground.io.image import MedGroundInputError, MedImage


@dataclass
class Prompt:
    """One spatial prompt.

    kind: "box" (2D box on slice ``z``), "box3d" (x0,y0,z0,x1,y1,z1) or "point" (x, y, z: inside the object). Coordinates are voxel/pixel indices of the input as stored (x = first array axis).
    """

    kind: str
    coords: tuple[float, ...]
    z: int | None = None
    label: str | None = None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind}
        if self.kind == "box":
            d["box"] = [float(c) for c in self.coords]
            d["slice"] = self.z
        elif self.kind == "box3d":
            d["box3d"] = [float(c) for c in self.coords]
        else:
            d["point"] = [float(c) for c in self.coords]
        if self.label:
            d["label"] = self.label
        return d


def _numbers(text: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in str(text).replace(" ", "").strip("[]()").split(",") if v != ""]
    except ValueError:
        raise MedGroundInputError(f"{what} '{text}' must be comma-separated numbers") from None
    return vals


def parse_box(text: str, z: int | None = None, label: str | None = None) -> Prompt:
    vals = _numbers(text, "box")
    if len(vals) == 4:
        return Prompt("box", tuple(vals), z=z, label=label)
    if len(vals) == 6:
        return Prompt("box3d", tuple(vals), label=label)
    raise MedGroundInputError(f"box '{text}' needs 4 numbers x0,y0,x1,y1 (or 6 for a 3D box x0,y0,z0,x1,y1,z1)")


def parse_point(text: str, label: str | None = None) -> Prompt:
    vals = _numbers(text, "point")
    if len(vals) not in (2, 3):
        raise MedGroundInputError(f"point '{text}' needs 2 or 3 numbers x,y[,z]")
    z = int(round(vals[2])) if len(vals) == 3 else None
    return Prompt("point", tuple(vals), z=z, label=label)


def validate_prompt(p: Prompt, image: MedImage) -> Prompt:
    """Check a prompt against the image; fill in the slice for 2D images. Returns the prompt."""
    X, Y, Z = image.shape
    if p.kind in ("box", "point") and p.z is None:
        if Z == 1:
            p.z = 0
        elif p.kind == "box":
            raise MedGroundInputError(
                f"the image is a 3D volume ({X}x{Y}x{Z}): give the slice of the box with --slice (0..{Z - 1}) "
                "or a 3D box x0,y0,z0,x1,y1,z1")
        else:
            raise MedGroundInputError(f"the image is a 3D volume ({X}x{Y}x{Z}): a point needs x,y,z")
    if p.z is not None and not (0 <= p.z < Z):
        raise MedGroundInputError(f"slice {p.z} is outside the image (0..{Z - 1})")
    if p.kind == "point":
        x, y = p.coords[0], p.coords[1]
        if not (0 <= x <= X - 1 and 0 <= y <= Y - 1):
            raise MedGroundInputError(f"point ({x:g}, {y:g}) is outside the image (x 0..{X - 1}, y 0..{Y - 1})")
        return p
    if p.kind == "box":
        x0, y0, x1, y1 = p.coords
        lo, hi = (x0, y0), (x1, y1)
        dims = (X, Y)
    else:
        x0, y0, z0, x1, y1, z1 = p.coords
        lo, hi = (x0, y0, z0), (x1, y1, z1)
        dims = (X, Y, Z)
    names = "xyz"
    for i, (a, b, n) in enumerate(zip(lo, hi, dims)):
        if b < a:
            raise MedGroundInputError(f"box {list(p.coords)}: {names[i]}1 < {names[i]}0 (expected x0,y0,x1,y1 with x0<=x1)")
        if b == a and i < 2:
            raise MedGroundInputError(f"box {list(p.coords)} has zero size along {names[i]}")
        if a < 0 or b > n - 1:
            if b < 0 or a > n - 1:
                raise MedGroundInputError(
                    f"box {list(p.coords)} is outside the image ({names[i]} must lie in 0..{n - 1})")
            raise MedGroundInputError(
                f"box {list(p.coords)} extends outside the image ({names[i]} must lie in 0..{n - 1})")
    return p


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL prompt file: one object per line with "image" and "box" (+ "slice") or "point",
    optional "label". Blank lines and lines starting with # are skipped."""
    rows = []
    p = Path(path)
    if not p.exists():
        raise MedGroundInputError(f"prompt file not found: {p}")
    for n, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MedGroundInputError(f"{p.name} line {n} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "image" not in row or not ({"box", "point", "box3d", "prompt"} & set(row)):
            raise MedGroundInputError(
                f"{p.name} line {n} needs an \"image\" and a \"box\", \"box3d\", \"point\" or \"prompt\"")
        rows.append(row)
    if not rows:
        raise MedGroundInputError(f"{p.name} holds no prompts")
    return rows


def prompt_from_row(row: dict[str, Any]) -> Prompt | None:
    label = row.get("label")
    if "box" in row:
        z = row.get("slice", row.get("z"))
        return parse_box(",".join(str(v) for v in row["box"]) if isinstance(row["box"], list) else row["box"],
                         z=None if z is None else int(z), label=label)
    if "box3d" in row:
        return parse_box(",".join(str(v) for v in row["box3d"]), label=label)
    if "point" in row:
        return parse_point(",".join(str(v) for v in row["point"]) if isinstance(row["point"], list) else row["point"],
                           label=label)
    return None
