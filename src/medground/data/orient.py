"""Canonical display orientation of slices.

Canonical display (what every training iterator yields and what converted datasets store):

* **axial CT/MR** - radiological convention: image rows run anterior (top) -> posterior (bottom),
  columns run patient right (image left) -> patient left (image right). The liver is on the image
  left, the spleen on the image right, the spine at the bottom.
* **frontal chest radiographs (PA)** - patient right on the image left, head at the top.
* pictures without anatomy frame (endoscopy, dermoscopy, fundus) - as captured.

Two tools:

* :func:`dihedral` / :func:`undihedral` - the 8 rotations/flips of a 2D array (used when the
  orientation of a picture has to be learnt from its labels, e.g. the BTCV/CHAOS JPEG slices).
* :func:`to_canonical_axial` / :func:`from_canonical_axial` - for volumes with a real affine:
  axial slices ``[z, row, col]`` in canonical display, and the way back to the original grid
  (a pure permutation/flip of voxel axes: no resampling, so the round trip is exact).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from medground.io.image import MedImage

# ------------------------------------------------------------------------------------ dihedral group
DIHEDRAL_NAMES = ("identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose")
"""Names of the 8 rotations/flips of a 2D array, indexed by ``k``.

``rot90`` is numpy's counter-clockwise ``np.rot90(a, 1)``; ``flip_lr`` mirrors columns,
``flip_ud`` mirrors rows, ``transpose`` swaps rows and columns, ``anti_transpose`` reflects about
the anti-diagonal (= ``rot180`` then ``transpose``).
"""
_INVERSE = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 5, 6: 6, 7: 7}


def dihedral_index(k: int | str) -> int:
    """``k`` as an integer 0..7 (accepts the names in :data:`DIHEDRAL_NAMES`)."""
    if isinstance(k, str):
        try:
            return DIHEDRAL_NAMES.index(k)
        except ValueError:
            raise ValueError(f"unknown dihedral transform {k!r}; use one of {DIHEDRAL_NAMES}") from None
    k = int(k)
    if not 0 <= k < 8:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    return k


def dihedral(arr: np.ndarray, k: int | str) -> np.ndarray:
    """Apply transform ``k`` to the first two axes (rows, cols) of ``arr``; trailing axes follow."""
    k = dihedral_index(k)
    a = np.asarray(arr)
    if a.ndim < 2:
        raise ValueError("dihedral needs an array with at least 2 dimensions")
    if k == 0:
        out = a
    elif k in (1, 2, 3):
        out = np.rot90(a, k, axes=(0, 1))
    elif k == 4:
        out = a[:, ::-1]
    elif k == 5:
        out = a[::-1]
    elif k == 6:
        out = a.swapaxes(0, 1)
    else:
        out = a[::-1, ::-1].swapaxes(0, 1)
    return np.ascontiguousarray(out)


def undihedral(arr: np.ndarray, k: int | str) -> np.ndarray:
    """Inverse of :func:`dihedral`: ``undihedral(dihedral(a, k), k) == a``."""
    return dihedral(arr, _INVERSE[dihedral_index(k)])


def dihedral_inverse(k: int | str) -> int:
    return _INVERSE[dihedral_index(k)]


def dihedral_shape(shape: Sequence[int], k: int | str) -> tuple[int, int]:
    """(rows, cols) after transform ``k`` of an array with ``shape[:2]``."""
    h, w = int(shape[0]), int(shape[1])
    return (w, h) if dihedral_index(k) in (1, 3, 6, 7) else (h, w)


def dihedral_coords(rc: np.ndarray, k: int | str, shape: Sequence[int]) -> np.ndarray:
    """Map (row, col) coordinates of an array of ``shape`` to their place after :func:`dihedral`.

    Works for fractional coordinates (centroids) as well as integer pixel indices.
    """
    k = dihedral_index(k)
    p = np.asarray(rc, dtype=float)
    r, c = p[..., 0], p[..., 1]
    h, w = float(shape[0] - 1), float(shape[1] - 1)
    table = {
        0: (r, c), 1: (w - c, r), 2: (h - r, w - c), 3: (c, h - r),
        4: (r, w - c), 5: (h - r, c), 6: (c, r), 7: (w - c, h - r),
    }
    nr, nc = table[k]
    return np.stack([nr, nc], axis=-1)


# ------------------------------------------------------------------------------------ volumes
@dataclass(frozen=True)
class AxialTransform:
    """How the voxel axes of an image map onto canonical axial slices ``[z, row, col]``.

    ``axes`` are the original voxel axes that become (slice, row, col); ``flips`` tell whether each
    is reversed. ``kind`` is ``"volume"`` (3D with an affine) or ``"picture"`` (2D, rows = y).
    """

    shape: tuple[int, int, int]
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    kind: str = "volume"

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return tuple(self.shape[a] for a in self.axes)  # type: ignore[return-value]

    @property
    def is_identity_display(self) -> bool:
        """True when the stored volume already is canonical (``data[:, :, z].T`` is the display)."""
        return self.axes == (2, 1, 0) and self.flips == (False, False, False)

    def forward(self, vol: np.ndarray) -> np.ndarray:
        """Original ``[x, y, z(, c)]`` array -> canonical ``[z, row, col(, c)]`` slices."""
        v = np.asarray(vol)
        if v.ndim == 2:
            v = v[:, :, None]
        if tuple(v.shape[:3]) != tuple(self.shape):
            raise ValueError(f"array shape {v.shape[:3]} does not match transform shape {self.shape}")
        order = list(self.axes) + list(range(3, v.ndim))
        out = np.transpose(v, order)
        sl = tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)
        return np.ascontiguousarray(out[sl])

    def inverse(self, slices: np.ndarray) -> np.ndarray:
        """Canonical ``[z, row, col(, c)]`` slices (e.g. predicted masks) -> the original grid."""
        s = np.asarray(slices)
        if tuple(s.shape[:3]) != self.out_shape:
            raise ValueError(f"slices shape {s.shape[:3]} does not match {self.out_shape}")
        sl = tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)
        s = s[sl]
        inv = np.argsort(self.axes)
        order = list(inv) + list(range(3, s.ndim))
        return np.ascontiguousarray(np.transpose(s, order))

    def slice_to_original(self, z: int) -> int:
        """Index along the original slice axis of canonical slice ``z``."""
        n = self.shape[self.axes[0]]
        return n - 1 - z if self.flips[0] else z

    def voxel_matrix(self) -> np.ndarray:
        """4x4 matrix mapping canonical-volume voxels ``(col, row, z, 1)`` to original voxels."""
        m = np.zeros((4, 4))
        m[3, 3] = 1.0
        # canonical voxel axis j: 0 = col, 1 = row, 2 = slice  <- original axes[2], axes[1], axes[0]
        for j, (ax, flip) in enumerate(((self.axes[2], self.flips[2]), (self.axes[1], self.flips[1]),
                                        (self.axes[0], self.flips[0]))):
            if flip:
                m[ax, j] = -1.0
                m[ax, 3] = self.shape[ax] - 1
            else:
                m[ax, j] = 1.0
        return m

    def canonical_affine(self, affine: np.ndarray) -> np.ndarray:
        """Affine of the canonical volume whose ``data[:, :, z].T`` is canonical slice ``z``."""
        return np.asarray(affine, dtype=float) @ self.voxel_matrix()

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "axes": list(self.axes), "flips": list(self.flips), "kind": self.kind}


def axial_transform(affine: np.ndarray, shape: Sequence[int]) -> AxialTransform:
    """The :class:`AxialTransform` of a volume with RAS ``affine`` (nearest axes; no resampling)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=float))
    world_to_vox = {int(w): (i, int(s)) for i, (w, s) in enumerate(ornt)}
    if len(world_to_vox) != 3:
        raise ValueError("degenerate affine: cannot tell the axial plane")
    s_ax, s_sign = world_to_vox[2]   # superior
    a_ax, a_sign = world_to_vox[1]   # anterior
    r_ax, r_sign = world_to_vox[0]   # right
    # slices inferior -> superior; rows anterior -> posterior; cols right -> left
    return AxialTransform(shape=tuple(int(s) for s in shape[:3]), axes=(s_ax, a_ax, r_ax),
                          flips=(s_sign < 0, a_sign > 0, r_sign > 0), kind="volume")


def _picture_transform(shape: Sequence[int]) -> AxialTransform:
    """Pictures (and volumes without geometry) are displayed as stored: slice z is ``data[:, :, z].T``."""
    return AxialTransform(shape=(int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) > 2 else 1),
                          axes=(2, 1, 0), flips=(False, False, False), kind="picture")


def to_canonical_axial(image: MedImage) -> tuple[np.ndarray, AxialTransform]:
    """Canonical axial slices of ``image`` and the transform that maps them back.

    Returns ``(slices, transform)`` with ``slices`` of shape ``[z, rows, cols]`` (plus a trailing
    channel axis for colour) where rows run anterior -> posterior, columns patient right -> left and
    ``z`` runs inferior -> superior. 2D pictures (no geometry) give one slice ``data[:, :, 0].T``.
    Use :func:`from_canonical_axial` (or ``transform.inverse``) to put masks back on the input grid.
    """
    data = np.asarray(image.data)
    if data.ndim == 2:
        data = data[:, :, None]
    if image.ndim == 2 or not image.has_geometry:
        tr = _picture_transform(data.shape)
    else:
        tr = axial_transform(image.affine, data.shape[:3])
    return tr.forward(data), tr


def from_canonical_axial(slices: np.ndarray, transform: AxialTransform) -> np.ndarray:
    """Inverse of :func:`to_canonical_axial`: ``[z, rows, cols]`` masks -> the image's ``[x, y, z]`` grid."""
    return transform.inverse(slices)


def to_canonical_volume(image: MedImage) -> tuple[MedImage, AxialTransform]:
    """The same image re-ordered so that ``data[:, :, z].T`` is canonical axial slice ``z``.

    The affine is updated accordingly (nibabel axcodes become ``LPS``), so every voxel keeps its
    world position; the transform maps arrays back to the original grid.
    """
    slices, tr = to_canonical_axial(image)
    order = (2, 1, 0) + tuple(range(3, slices.ndim))
    data = np.ascontiguousarray(np.transpose(slices, order))
    affine = tr.canonical_affine(image.affine) if tr.kind == "volume" else image.affine.copy()
    out = MedImage(data=data, affine=affine, ndim=image.ndim, modality=image.modality,
                   has_geometry=image.has_geometry, photometric=image.photometric,
                   source_path=image.source_path, source_format=image.source_format, meta=dict(image.meta))
    return out, tr


# ------------------------------------------------------------------------------------ checks from labels
def label_centroids(label: np.ndarray, ids: Mapping[str, int | Sequence[int]]) -> dict[str, np.ndarray]:
    """Centroid (row, col) over all slices of each named structure in a ``[z, row, col]`` label array."""
    out = {}
    for name, lab in ids.items():
        labs = [lab] if np.isscalar(lab) else list(lab)
        idx = np.argwhere(np.isin(label, labs))
        if len(idx):
            out[name] = idx[:, 1:].mean(axis=0)
    return out


def body_mask(image2d: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Largest bright connected component of a slice, holes filled (the patient's body)."""
    from scipy import ndimage

    img = np.asarray(image2d, dtype=np.float32)
    if threshold is None:
        lo, hi = np.percentile(img, [1, 99])
        threshold = lo + 0.08 * (hi - lo)
    b = ndimage.binary_opening(img > threshold, iterations=2)
    lab, n = ndimage.label(b)
    if n == 0:
        return b
    big = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    return ndimage.binary_fill_holes(big)


def abdominal_checks(label: np.ndarray, ids: Mapping[str, int], image: np.ndarray | None = None,
                     ct: bool = False) -> dict[str, bool]:
    """Anatomical sanity checks of canonical axial ``[z, row, col]`` labels (and optional image).

    ``ids`` maps some of ``liver, spleen, kidney_left, kidney_right, aorta`` to label values.
    Checks (all True in canonical orientation):

    * ``liver_left_of_spleen`` and ``right_kidney_left_of_left_kidney``: the second centroid lies to
      the image right of the first, more horizontally than vertically;
    * ``kidneys_posterior_to_liver`` (kidney centroids below the liver centroid);
    * with ``image``: ``kidneys_in_posterior_half`` of the body's antero-posterior extent, measured
      from the anterior abdominal wall; for CT also ``spine_posterior_to_aorta``: the image is
      brighter (vertebral bone) just below the aorta than just above it.
    """
    c = label_centroids(label, ids)
    res: dict[str, bool] = {}
    def left_of(a: str, b: str) -> bool:  # a is on the image left of b, mostly horizontally
        d = c[b] - c[a]
        return bool(d[1] > abs(d[0]))

    if "liver" in c and "spleen" in c:
        res["liver_left_of_spleen"] = left_of("liver", "spleen")
    kid = [k for k in ("kidney_right", "kidney_left") if k in c]
    if len(kid) == 2:
        res["right_kidney_left_of_left_kidney"] = left_of("kidney_right", "kidney_left")
    if kid and "liver" in c:
        res["kidneys_posterior_to_liver"] = bool(np.mean([c[k][0] for k in kid]) > c["liver"][0])
    if image is None:
        return res
    img = np.asarray(image, dtype=np.float32)
    depths = []
    for name in kid:
        zs = np.unique(np.argwhere(label == ids[name])[:, 0])
        for z in zs[:: max(1, len(zs) // 8)]:
            body = body_mask(img[z])
            rr, cc = np.nonzero(label[z] == ids[name])
            rows = np.nonzero(body[:, int(round(cc.mean()))])[0]
            if len(rows) > 1:
                depths.append((rr.mean() - rows.min()) / max(rows.max() - rows.min(), 1))
    if depths:
        res["kidneys_in_posterior_half"] = bool(np.median(depths) > 0.5)
    if ct and "aorta" in ids:
        diffs = []
        zs = np.unique(np.argwhere(label == ids["aorta"])[:, 0])
        for z in zs[:: max(1, len(zs) // 12)]:
            rr, cc = np.nonzero(label[z] == ids["aorta"])
            r0, r1 = rr.min(), rr.max()
            c0, c1 = max(cc.min(), 0), cc.max() + 1
            h = max(r1 - r0, 4)
            below = img[z, r1 + 1: r1 + 1 + 2 * h, c0:c1]
            above = img[z, max(r0 - 2 * h, 0): r0, c0:c1]
            if below.size and above.size:
                diffs.append(float(np.percentile(below, 90) - np.percentile(above, 90)))
        if diffs:
            res["spine_posterior_to_aorta"] = bool(np.median(diffs) > 0)
    return res


def infer_dihedral(label: np.ndarray, ids: Mapping[str, int], image: np.ndarray | None = None,
                   ct: bool = False) -> tuple[int, dict]:
    """Which transform ``k`` makes raw ``[z, row, col]`` labels canonical (most checks passed).

    Returns ``(k, {transform name: checks})`` for all 8 transforms; ties go to the lowest ``k``.
    """
    results = {}
    for k in range(8):
        lab = np.stack([dihedral(s, k) for s in label])
        img = None if image is None else np.stack([dihedral(s, k) for s in image])
        results[DIHEDRAL_NAMES[k]] = abdominal_checks(lab, ids, img, ct=ct)
    best = max(range(8), key=lambda k: (sum(results[DIHEDRAL_NAMES[k]].values()), -k))
    return best, results
