"""Brain atlases: template image + maximum-probability label map (CIT168, cerebellum, Julich-Brain).

CIT168 and the cerebellar atlas are probabilistic, stored by niivue as PAQD (RGBA: R = most likely
label, G = second, B = probability of R, A = probability of G, 0-255). A voxel gets label R where
B/255 >= ``threshold`` (0.5 by default: the label beats everything else). The atlases are resampled
(nearest neighbour, via world coordinates) onto their template's grid. Julich-Brain ships one
label volume per hemisphere on the template grid: left = index i, right = 1000 + i.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medground.data.convert._common import canonical_pair, load_nifti, resample_nearest
from medground.data.layout import DatasetWriter


def paqd_labels(path: Path, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    d = np.asarray(img.dataobj)
    if d.dtype.names is None:  # a plain label volume
        return np.rint(d).astype(np.uint16), np.asarray(img.affine)
    r = d["R"].astype(np.uint16)
    p = d["B"].astype(np.float32) / 255.0
    return np.where(p >= threshold, r, 0).astype(np.uint16), np.asarray(img.affine)


def _write(dst: Path, name: str, cid: str, patient: str, template: Path, label_src: np.ndarray,
           label_affine: np.ndarray, meta: dict) -> Path:
    from medground.data.registry import get_dataset

    info = get_dataset(name)
    image = load_nifti(template, "MR")
    lab = resample_nearest(label_src, label_affine, image.shape, image.affine)
    can, can_lab, _ = canonical_pair(image, lab)
    writer = DatasetWriter(dst, info)
    writer.add_volume(cid, patient, can, can_lab, meta={**meta, "intensity": "template T1w (uint8)"})
    return writer.finish()


def convert_brain_atlases(src_root: Path, dst: Path, limit: int | None = None, threshold: float = 0.5, **_) -> list[Path]:
    import nibabel as nib

    src = src_root / "brain-atlases"
    outs = []
    lab, aff = paqd_labels(src / "CIT168" / "CIT168.nii.gz", threshold)
    outs.append(_write(dst, "brain-cit168", "cit168", "template_mni152_2009c",
                       src / "CIT168" / "CIT168toMNI152-2009c_T1w_brain.nii.gz", lab, aff,
                       {"atlas": "CIT168 (PAQD, max probability)", "probability_threshold": threshold}))
    lab, aff = paqd_labels(src / "Cerebellum" / "atl-Anatom.nii.gz", threshold)
    outs.append(_write(dst, "brain-cerebellum", "cerebellum", "template_mni152_nlin6asym",
                       src / "Cerebellum" / "MNI152NLin6AsymC.nii.gz", lab, aff,
                       {"atlas": "Diedrichsen 2009 cerebellum (PAQD, max probability)", "probability_threshold": threshold}))
    lh_img = nib.load(str(src / "Juelich31" / "JulichBrainAtlas31_LH.nii.gz"))
    rh = np.rint(np.asarray(nib.load(str(src / "Juelich31" / "JulichBrainAtlas31_RH.nii.gz")).dataobj)).astype(np.uint16)
    lh = np.rint(np.asarray(lh_img.dataobj)).astype(np.uint16)
    merged = lh.copy()
    merged[(rh > 0) & (lh == 0)] = rh[(rh > 0) & (lh == 0)] + 1000
    outs.append(_write(dst, "brain-julich", "julich", "template_icbm2009c",
                       src / "Juelich31" / "ICBM2009asym.nii.gz", merged, np.asarray(lh_img.affine),
                       {"atlas": "Julich-Brain 3.1 (maximum probability maps, LH = i, RH = 1000 + i)"}))
    return outs
