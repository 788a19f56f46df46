"""Brain structures by atlas registration (CIT168 subcortical nuclei, cerebellar lobules, Julich-Brain areas).

The grounding heads learn from many labelled patients; for brain structures the labelled data here are
atlases (one template each), so a learned head has nothing to generalise from. Instead, the input
volume is registered to the atlases' reference template (the CIT168 T1w brain, MNI152 2009c) with
mutual information (similarity, then affine; optionally a coarse B-spline), and each atlas label map
is carried into the input's own voxel grid through that transform (nearest neighbour). The cerebellar
and Julich-Brain atlases live in (nearly) the same MNI space, so one registration serves all three.

Where the atlases come from (nothing is downloaded): ``$MEDGROUND_ATLASES`` (a converted data root
holding ``brain-cit168``/``brain-cerebellum``/``brain-julich``, or the raw ``brain-atlases`` folder
or the shared data root that contains it), else a converted root at ``./cache/data`` or the
checkout's ``cache/data``, else the user cache (``~/.cache/medground/atlases``, converted there once
from ``$MEDGROUND_SHARED_DATA``, ``./../shared/data`` or the checkout's ``../shared/data``).

Every output is in the input's own grid. A structure that maps outside the field of view is absent;
an input that does not register like a brain (implausible scale, no correlation with the template)
reports every atlas structure absent instead of drawing a blob.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medground.io.image import MedGroundInputError, MedImage

ATLASES = ("brain-cit168", "brain-cerebellum", "brain-julich")
REFERENCE = "brain-cit168"  # its template (a skull-stripped T1w brain) is the registration target
BRAIN = -1  # label value standing for the reference template's brain mask (term "brain")
_CACHE: dict = {}


@dataclass
class AtlasConfig:
    bspline: bool = False  # a coarse B-spline stage after the affine one (slower; affine measured as good)
    bins: int = 32
    sampling: float = 0.15
    seed: int = 1
    min_scale: float = 0.7  # similarity scale outside [min, max]: the input is not registered as a brain
    max_scale: float = 1.45
    min_correlation: float = 0.2  # template vs input inside the brain after registration (T1-like contrast)
    min_head_probability: float = 0.5  # below min_correlation: the image classifier must call it a head
    min_inside: float = 0.5  # fraction of a structure's atlas voxels inside the field of view to call it present
    min_inside_brain: float = 0.05  # the same for the term "brain" (a slab shows part of it)
    min_brain_in_view: float = 0.3  # less of the brain than this in the field of view: too little to register


@dataclass
class AtlasResult:
    masks: dict[str, np.ndarray]
    inside: dict[str, float]
    atlas: dict[str, str]
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- vocabulary and data
def atlas_term_index() -> dict[str, tuple[str, int]]:
    """term id -> (atlas dataset, label value), from the dataset registry (no data needed)."""
    if "index" not in _CACHE:
        from medground.data.registry import get_dataset

        idx: dict[str, tuple[str, int]] = {}
        for name in ATLASES:
            for value, term in get_dataset(name).labels.items():
                if int(value) != 0:
                    idx.setdefault(term, (name, int(value)))
        idx.setdefault("brain", (REFERENCE, BRAIN))  # the skull-stripped template's extent
        _CACHE["index"] = idx
    return _CACHE["index"]


# structures the atlases' labels tile (their union is the structure, up to the atlases' own gaps): only these,
# their sides, and a term whose parts are its own left and right are segmented as unions. Not "brainstem" or
# "midbrain" (a few nuclei inside them), nor "head" or "body" (every brain label, which is not a head)
TILED = frozenset({
    "thalamus", "cerebellum", "cerebellar_hemisphere_left", "cerebellar_hemisphere_right", "cerebellar_vermis",
    "cerebellar_nuclei", "dentate_nucleus", "hippocampus", "amygdala", "striatum", "globus_pallidus",
    "basal_ganglia", "nucleus_accumbens", "substantia_nigra", "red_nucleus", "hypothalamus", "cerebral_cortex",
    "frontal_lobe", "parietal_lobe", "temporal_lobe", "occipital_lobe", "insula", "cingulate_cortex",
})


def atlas_members(term_id: str) -> tuple[str, ...]:
    """The atlas labels that make up ``term_id``: itself when an atlas labels it; else, for a structure the atlases
    only label in parts (the thalamus: Julich-Brain's thalamic nuclei; a cerebellar hemisphere: its lobules), the
    atlas-labelled terms below it in the ontology, of its side when it has one (a sided term with no parts of its
    own, "right thalamus", takes the right-sided parts of its unsided whole). Empty: not an atlas structure."""
    key = ("members", term_id)
    if key in _CACHE:
        return _CACHE[key]
    idx = atlas_term_index()
    if term_id in idx:
        out: tuple[str, ...] = (term_id,)
    else:
        from medground.ontology import Ontology

        onto = Ontology.default()
        out = ()
        try:
            term = onto.get(term_id)
        except Exception:  # noqa: BLE001 - not an ontology term
            term = None
        if term is not None:
            below = [t.id if hasattr(t, "id") else str(t) for t in onto.descendants(term_id)]
            out = tuple(t for t in below if t in idx)
            side = getattr(term, "laterality", None)
            base = term_id
            if not out and side in ("left", "right") and term.parent:
                base = term.parent
                below = [t.id if hasattr(t, "id") else str(t) for t in onto.descendants(term.parent)]
                out = tuple(t for t in below if t in idx and getattr(onto.get(t), "laterality", None) == side)
            own_sides = all(onto.get(t).parent == base for t in out)  # "putamen" = left + right putamen
            if out and not own_sides and base not in TILED and term_id not in TILED:
                out = ()
    _CACHE[key] = out
    return out


def is_atlas_term(term_id: str) -> bool:
    return bool(atlas_members(term_id))


def _checkout_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medground" / "atlases"


def _has_converted(root: Path) -> bool:
    return all((root / n / "dataset.json").exists() for n in ATLASES)


def _raw_source(p: Path) -> Path | None:
    """The shared data root holding ``brain-atlases`` (given that root or the folder itself)."""
    if (p / "brain-atlases" / "CIT168").is_dir():
        return p
    if p.name == "brain-atlases" and (p / "CIT168").is_dir():
        return p.parent
    return None


def _convert_into_cache(src: Path) -> Path | None:
    from medground.data.convert import convert as run_convert

    dst = _user_cache()
    dst.mkdir(parents=True, exist_ok=True)
    run_convert(src, dst, datasets=list(ATLASES), verbose=False)
    return dst if _has_converted(dst) else None


def find_atlas_root() -> Path:
    """A converted data root holding the three brain atlases (see the module docstring).
    ``$MEDGROUND_ATLASES``, when set, is the only place looked at."""
    env = os.environ.get("MEDGROUND_ATLASES")
    if env:
        p = Path(env).expanduser()
        if _has_converted(p):
            return p
        src = _raw_source(p)
        found = _convert_into_cache(src) if src is not None else None
        if found is not None:
            return found
        raise MedGroundInputError(f"MEDGROUND_ATLASES={env} holds no brain atlases (expected the shared data's "
                                  "brain-atlases/ folder or a converted data root with brain-cit168, "
                                  "brain-cerebellum and brain-julich)")
    for c in (Path.cwd() / "cache" / "data", _checkout_root() / "cache" / "data", _user_cache()):
        if _has_converted(c):
            return c
    raws = [Path(os.environ["MEDGROUND_SHARED_DATA"]).expanduser()] if os.environ.get("MEDGROUND_SHARED_DATA") else []
    raws += [Path.cwd().parent / "shared" / "data", _checkout_root().parent / "shared" / "data"]
    for r in raws:
        src = _raw_source(r)
        found = _convert_into_cache(src) if src is not None else None
        if found is not None:
            return found
    raise MedGroundInputError(
        "brain atlas structures need the brain atlases (CIT168, cerebellum, Julich-Brain), which are not "
        "installed: set MEDGROUND_ATLASES to a folder holding them (the shared data's brain-atlases/ or a "
        "converted data root)")


def _load_atlas(root: Path, name: str):
    """(template float32 [x,y,z], label uint16 [x,y,z], affine RAS) of a converted atlas."""
    key = ("atlas", str(root), name)
    if key not in _CACHE:
        import nibabel as nib

        from medground.data.layout import read_dataset

        case = read_dataset(root / name)["cases"][0]
        img = nib.load(str(root / name / case["image"]))
        lab = nib.load(str(root / name / case["label"]))
        _CACHE[key] = (np.asarray(img.dataobj, dtype=np.float32), np.asarray(lab.dataobj).astype(np.uint16),
                       np.asarray(img.affine, dtype=np.float64), np.asarray(lab.affine, dtype=np.float64))
    return _CACHE[key]


# --------------------------------------------------------------------------- registration
def _to_sitk(arr: np.ndarray, affine: np.ndarray, dtype=np.float32):
    """A [x, y, z] array with a voxel -> RAS mm affine as a SimpleITK image whose physical frame is RAS
    (both images of a registration use the same frame, so no LPS flip is needed)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(arr, dtype=dtype).transpose(2, 1, 0)))
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    sp = np.linalg.norm(m, axis=0)
    d = m / np.where(sp > 0, sp, 1)
    u, _, vt = np.linalg.svd(d)  # nearest orthonormal direction matrix (sheared headers)
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(v) for v in np.asarray(affine)[:3, 3]])
    img.SetDirection([float(v) for v in (u @ vt).flatten()])
    return img


def _unit(a: np.ndarray, ct: bool) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if ct:  # brain window: tissue contrast inside the skull, bone saturated
        a = np.clip(a, -20.0, 100.0)
    fg = a[a > a.min()]
    if fg.size == 0:
        return np.zeros_like(a)
    lo, hi = np.percentile(fg, [1, 99.5])
    return np.clip((a - lo) / max(float(hi - lo), 1e-6), 0, 1)


def register_to_template(image: MedImage, cfg: AtlasConfig | None = None, root: Path | None = None):
    """Transform (input physical point -> template physical point) and facts about the registration."""
    import SimpleITK as sitk

    cfg = cfg or AtlasConfig()
    root = root or find_atlas_root()
    t0 = time.time()
    tpl, _, taff, _ = _load_atlas(root, REFERENCE)
    data = image.data if image.data.ndim == 3 else image.data.mean(axis=-1)
    ct = image.modality == "CT" or float(np.nanmin(data)) < -500
    fixed = _to_sitk(_unit(data, ct), image.affine)
    moving = _to_sitk(_unit(tpl, False), taff)
    mmask = sitk.Cast(_to_sitk((tpl > 0).astype(np.float32), taff) > 0.5, sitk.sitkUInt8)

    def method(shrink, smooth, sampling):
        """Mattes MI inside the template's brain, random sampling, a smoothed pyramid."""
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(cfg.bins)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(sampling, cfg.seed)
        reg.SetMetricMovingMask(mmask)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetShrinkFactorsPerLevel(shrink)
        reg.SetSmoothingSigmasPerLevel(smooth)
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        return reg

    def run(tx, shrink, smooth, iters, lr):
        reg = method(shrink, smooth, cfg.sampling)
        reg.SetOptimizerAsRegularStepGradientDescent(lr, 1e-4, iters, relaxationFactor=0.6)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(tx, inPlace=True)
        reg.Execute(fixed, moving)
        return reg.GetMetricValue()

    try:
        init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
        sim = sitk.Similarity3DTransform(init)
        run(sim, [8, 4], [4.0, 2.0], 200, 2.0)
        scale = float(sim.GetScale())
        aff = sitk.AffineTransform(3)
        aff.SetMatrix(sim.GetMatrix())
        aff.SetTranslation(sim.GetTranslation())
        aff.SetCenter(sim.GetCenter())
        metric = run(aff, [4, 2], [2.0, 1.0], 200, 1.0)
        det = float(np.linalg.det(np.asarray(aff.GetMatrix()).reshape(3, 3)))  # template mm3 per input mm3
        tx = aff
        if cfg.bspline:
            bs = sitk.BSplineTransformInitializer(fixed, [6, 6, 6], 3)
            reg = method([4, 2], [2.0, 1.0], 0.1)
            reg.SetOptimizerAsLBFGSB(1e-5, 40, 5, 1000)
            reg.SetMovingInitialTransform(aff)
            reg.SetInitialTransform(bs, inPlace=True)
            reg.Execute(fixed, moving)
            metric = reg.GetMetricValue()
            tx = sitk.CompositeTransform([aff, bs])
    except RuntimeError as exc:  # ITK: too few samples inside the mask etc.
        return None, {"ok": False, "reason": f"registration failed ({str(exc).strip().splitlines()[-1][:120]})",
                      "seconds": round(time.time() - t0, 1)}
    # how well the template fits: correlation inside the warped brain
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, tx, sitk.sitkLinear, 0.0))
    wmask = sitk.GetArrayFromImage(sitk.Resample(mmask, fixed, tx, sitk.sitkNearestNeighbor, 0)) > 0
    f = sitk.GetArrayFromImage(fixed)
    corr = float(np.corrcoef(warped[wmask], f[wmask])[0, 1]) if wmask.sum() > 100 else 0.0
    if not np.isfinite(corr):
        corr = 0.0
    fx = np.asarray(image.affine, dtype=np.float64)[:3, :3]
    brain_mm3 = float((tpl > 0).sum()) * abs(float(np.linalg.det(taff[:3, :3])))
    in_view = float(wmask.sum()) * abs(float(np.linalg.det(fx))) * abs(det) / max(brain_mm3, 1e-6)
    if in_view < cfg.min_brain_in_view:
        return tx, {"ok": False, "reason": f"too little of a brain in the field of view to register ({in_view:.0%})",
                    "brain_in_view": round(in_view, 3), "correlation": round(corr, 3),
                    "seconds": round(time.time() - t0, 1)}
    scale_ok = cfg.min_scale <= scale <= cfg.max_scale
    check = f"template correlation {corr:.2f}"
    ok = scale_ok and corr >= cfg.min_correlation
    if scale_ok and not ok:  # other contrasts (T2, FLAIR, CT) or thin slabs: ask the image classifier
        region, p_head = _head_check(image)
        ok = region == "head" and p_head >= cfg.min_head_probability
        check += f"; image classifier: {region} ({p_head:.2f})"
    info = {"ok": bool(ok), "brain_check": check, "template": "CIT168 T1w brain (MNI152 2009c)", "transform": "affine" +
            (" + B-spline" if cfg.bspline else ""), "similarity_scale": round(scale, 3),
            "affine_volume_ratio": round(det, 4), "brain_in_view": round(min(in_view, 1.0), 3),
            "mutual_information": round(-float(metric), 4), "correlation": round(corr, 3),
            "seconds": round(time.time() - t0, 1)}
    if not ok:
        info["reason"] = ("not a brain: " + (f"registration scale {scale:.2f} outside [{cfg.min_scale}, "
                                             f"{cfg.max_scale}]" if not scale_ok else check))
    return tx, info


def _head_check(image: MedImage) -> tuple[str, float]:
    """Body region of the image by the packaged classifier, and its probability of 'head'."""
    try:
        from medground.classify import classify

        c = classify(image)
    except Exception:  # noqa: BLE001 - no classifier: no second opinion
        return "unknown", 0.0
    probs = (c.get("probabilities") or {}).get("body_region") or {}
    p_head = float(probs.get("head", c.get("body_region_confidence", 0.0) if c.get("body_region") == "head" else 0.0))
    return str(c.get("body_region")), p_head


def segment_atlas(image: MedImage, term_ids: list[str], cfg: AtlasConfig | None = None) -> AtlasResult:
    """Masks (input grid, bool [x, y, z]) of atlas terms by registration to the atlas template."""
    import SimpleITK as sitk

    if image.ndim != 3 or image.data.shape[2] < 2:
        raise MedGroundInputError("brain atlas structures need a 3D volume with its geometry (NIfTI, DICOM "
                                  "series or NRRD), not a 2D picture")
    if not image.has_geometry:
        raise MedGroundInputError("brain atlas structures need the volume's geometry (voxel spacing and "
                                  "orientation), which this file does not carry")
    cfg = cfg or AtlasConfig()
    idx = atlas_term_index()
    unknown = [t for t in term_ids if not atlas_members(t)]
    if unknown:
        raise ValueError(f"not atlas terms: {unknown}")
    composite = {t: atlas_members(t) for t in term_ids if t not in idx}  # unions of atlas labels
    requested = term_ids
    term_ids = list(dict.fromkeys([t for t in term_ids if t in idx] + [m for ms in composite.values() for m in ms]))
    root = find_atlas_root()
    tx, info = register_to_template(image, cfg, root)
    shape = image.data.shape[:3]
    masks = {t: np.zeros(shape, dtype=bool) for t in term_ids}
    inside = {t: 0.0 for t in term_ids}
    atlas_of = {t: idx[t][0] for t in term_ids}
    volumes: dict[str, tuple[float, float]] = {}  # term -> (mm3 expected, mm3 in view)
    if tx is None or not info["ok"]:
        return _unite(AtlasResult(masks, inside, atlas_of, info), requested, composite, volumes, cfg)
    ref = _to_sitk(np.zeros(shape, np.uint8), image.affine, np.uint8)
    vox_mm3 = float(abs(np.linalg.det(image.affine[:3, :3]))) or 1.0
    for name in sorted({idx[t][0] for t in term_ids}):
        tpl, lab, taff, laff = _load_atlas(root, name)
        if any(idx[t] == (name, BRAIN) for t in term_ids):
            if not np.allclose(taff, laff) or tpl.shape != lab.shape:
                raise ValueError(f"{name}: template and labels on different grids")
            lab = lab.copy()
            lab[(tpl > 0) & (lab == 0)] = np.iinfo(np.uint16).max  # brain voxels outside every nucleus
        lab_img = _to_sitk(lab, laff, np.uint16)
        warped = sitk.GetArrayFromImage(sitk.Resample(lab_img, ref, tx, sitk.sitkNearestNeighbor, 0)).transpose(2, 1, 0)
        lab_mm3 = float(abs(np.linalg.det(laff[:3, :3])))
        for t in term_ids:
            if idx[t][0] != name:
                continue
            value = idx[t][1]
            m = (warped > 0) if value == BRAIN else (warped == value)
            # fraction of the structure (by volume, through the affine's scaling) inside the field of view
            expect = float(((lab > 0) if value == BRAIN else (lab == value)).sum()) * lab_mm3
            got = float(m.sum()) * vox_mm3 * abs(float(info["affine_volume_ratio"]))
            frac = min(got / expect, 1.0) if expect > 0 else 0.0
            inside[t] = frac
            volumes[t] = (expect, got)
            # the brain is present with any sizeable part of it in view (slabs); a nucleus needs most of itself
            need = cfg.min_inside_brain if value == BRAIN else cfg.min_inside
            masks[t] = m if frac >= need else np.zeros(shape, dtype=bool)
            if t not in requested:  # a part of a composite: kept whole, the union is judged below
                masks[t] = m
    return _unite(AtlasResult(masks, inside, atlas_of, info), requested, composite, volumes, cfg)


def _unite(res: AtlasResult, requested: list[str], composite: dict, volumes: dict, cfg: AtlasConfig) -> AtlasResult:
    """The requested terms only, each composite the union of its parts' masks, present when at least
    ``cfg.min_inside`` of the parts' joint volume is in the field of view."""
    shape = next(iter(res.masks.values())).shape if res.masks else (0, 0, 0)
    masks, inside, atlas_of = {}, {}, {}
    for t in requested:
        if t not in composite:
            masks[t], inside[t], atlas_of[t] = res.masks[t], res.inside[t], res.atlas[t]
            continue
        parts = composite[t]
        expect = sum(volumes.get(m, (0.0, 0.0))[0] for m in parts)
        got = sum(volumes.get(m, (0.0, 0.0))[1] for m in parts)
        frac = min(got / expect, 1.0) if expect > 0 else 0.0
        union = np.zeros(shape, dtype=bool)
        for m in parts:
            union |= res.masks[m]
        masks[t] = union if frac >= cfg.min_inside else np.zeros(shape, dtype=bool)
        inside[t] = frac
        atlas_of[t] = " + ".join(sorted({res.atlas[m] for m in parts})) + f" ({len(parts)} labels)"
    return AtlasResult(masks, inside, atlas_of, res.info)
