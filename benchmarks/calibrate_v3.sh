#!/usr/bin/env bash
set -e
# Head v3 calibration on the val patients, then the held-out test run (benchmarks/README.md, section 4).
# Run from the repository root after `medground train --config configs/textseg_v3.yaml` (writes the checkpoint).
# LiteMedSAM embeddings of the slices are memoised in cache/tune_emb (first run encodes them).
W=src/medground/models/weights/grounding.pt
python benchmarks/tune_textseg.py --weights $W --split val \
  --datasets chaos-mr:3,btcv-ct:4 --emb-cache cache/tune_emb --choose --write $W \
  --out benchmarks/results/textseg_v3_calib_val_abd.md \
  --variants 'decoder={"mask_from":"decoder","presence_threshold":0.5,"heat_refine":null}' \
             'heat={"mask_from":"heat","presence_threshold":0.5,"heat_refine":null}' \
             'blend={"mask_from":"blend","presence_threshold":0.5,"heat_refine":null}' \
             'decoder_p35={"mask_from":"decoder","presence_threshold":0.35,"heat_refine":null}' \
             'heat_p35={"mask_from":"heat","presence_threshold":0.35,"heat_refine":null}' \
             'blend_p35={"mask_from":"blend","presence_threshold":0.35,"heat_refine":null}' \
             'heat_p25={"mask_from":"heat","presence_threshold":0.25,"heat_refine":null}' \
             'decoder_p25={"mask_from":"decoder","presence_threshold":0.25,"heat_refine":null}' \
             'decoder_g={"mask_from":"decoder","presence_threshold":0.5,"heat_refine":"guided"}' \
             'blend_g={"mask_from":"blend","presence_threshold":0.5,"heat_refine":"guided"}' \
             'decoder_p35_g={"mask_from":"decoder","presence_threshold":0.35,"heat_refine":"guided"}' \
             'heat_p35_g={"mask_from":"heat","presence_threshold":0.35,"heat_refine":"guided"}'
python benchmarks/tune_textseg.py --weights $W --split val \
  --datasets jsrt-cxr:37,covid-cxr:54,acdc-cmr:8 --emb-cache cache/tune_emb --choose --write $W --merge \
  --out benchmarks/results/textseg_v3_calib_val_cxr_cmr.md \
  --variants 'decoder={"mask_from":"decoder","presence_threshold":0.5,"heat_refine":null}' \
             'heat={"mask_from":"heat","presence_threshold":0.5,"heat_refine":null}' \
             'blend={"mask_from":"blend","presence_threshold":0.5,"heat_refine":null}'
python benchmarks/bench_textseg.py --split test --modes text --weights $W --emb-cache cache/tune_emb \
  --datasets jsrt-cxr:37,covid-cxr:46,acdc-cmr:10,chaos-mr:3,btcv-ct:5 --out benchmarks/results/textseg_test_v3.md
