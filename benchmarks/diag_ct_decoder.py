"""Per patient and structure, where a fine-tuned CT decoder changes the text pipeline's masks: Dice, false-positive
voxels on slices without the structure and inside its slices, missed voxels, with and without the decoder.

    python benchmarks/diag_ct_decoder.py cache/dec/decoder_ct_hb.pt [--cases 4] [--terms aorta,spleen]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from embcache import CachedEncoder  # noqa: E402


def main(argv=None):
    import medground
    from medground.data import list_cases, load_case, read_dataset
    from medground.evaluate.runner import _ref_masks
    from medground.models import load_model
    from medground.ontology import Ontology
    from medground.segment.text import TextConfig, segment_text

    ap = argparse.ArgumentParser()
    ap.add_argument("decoder")
    ap.add_argument("--root", default="cache/data/btcv-ct")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--terms", default="aorta,esophagus,inferior_vena_cava,spleen,adrenal_gland_right")
    ap.add_argument("--emb-cache", default="cache/tune_emb")
    a = ap.parse_args(argv)
    root = Path(a.root)
    labels = {int(k): v for k, v in read_dataset(root)["labels"].items() if int(k)}
    terms = a.terms.split(",")
    onto = Ontology.default()
    prompts = [onto.get(t).name for t in terms]
    model = CachedEncoder(load_model("litemedsam"), a.emb_cache)
    cfgs = {"pretrained": TextConfig(ct_decoder=None), "fine-tuned": TextConfig(ct_decoder=a.decoder)}
    print("| case | structure | decoder | Dice | FP off its slices | FP on its slices | missed | reference |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for c in list_cases(root, a.split)[: a.cases]:
        image = medground.load(root / c["image"])
        _, label, masks = load_case(root, c)
        refs = _ref_masks(c, label, masks, labels, terms)
        for name, cfg in cfgs.items():
            res, _ = segment_text(image, prompts, model=model, cfg=cfg, findings=None)
            for t, r in zip(terms, res):
                p, ref = np.transpose(r.mask, (2, 1, 0)), refs[t]
                rz = ref.any(axis=(1, 2))
                d = 2 * (p & ref).sum() / max(1, p.sum() + ref.sum())
                print(f"| {c['id']} | {t} | {name} | {d:.3f} | {int(p[~rz].sum())} | {int((p & ~ref)[rz].sum())} | "
                      f"{int((ref & ~p).sum())} | {int(ref.sum())} |", flush=True)


if __name__ == "__main__":
    main()
