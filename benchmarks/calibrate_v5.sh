#!/usr/bin/env bash
set -e
# Head v5 (configs/textseg_v5.yaml: head v4 fine-tuned with the size-weighted heat loss): calibration on the val
# patients, starting from the packaged head v4's per-term settings after session 7 (copied in first; --keep: a
# variant changes only the keys it names), then the held-out test run and the out-of-field-of-view prompts.
# Run from the repository root after `medground train --config configs/textseg_v5.yaml`.
# Usage: bash benchmarks/calibrate_v5.sh [v5 checkpoint] [checkpoint to take the starting calibration from]
# The shipped head v5 started from the packaged head v4 of commit 02b48ae (`git show
# 02b48ae:src/medground/models/weights/grounding.pt > v4.pt`, then pass v4.pt as the second argument) and was
# copied into src/medground/models/weights/ (with its .card.json / .history.json) afterwards.
W=${1:-cache/grounding_v5/grounding.pt}
FROM=${2:-src/medground/models/weights/grounding.pt}
EMB=${EMB:-cache/tune_emb}
python benchmarks/copy_calibration.py "$FROM" "$W" "head v4's calibration after session 7 (start of benchmarks/calibrate_v5.sh)"
python benchmarks/tune_textseg.py --weights $W --split val --datasets btcv-ct:4,chaos-mr:3,acdc-cmr:8 --emb-cache $EMB \
  --choose --keep --merge --write $W --out benchmarks/results/textseg_v5_calib_val_abd.md \
  --variants 'base={}' 'p35={"presence_threshold":0.35}' 'p5={"presence_threshold":0.5}' \
             'heat={"mask_from":"heat"}' 'dec={"mask_from":"decoder"}' 'dec4={"mask_from":"decoder","box_margin":4}' \
             'dec7={"mask_from":"decoder","box_margin":7}' 'dec10={"mask_from":"decoder","box_margin":10}'
python benchmarks/tune_textseg.py --weights $W --split val --datasets jsrt-cxr:37,covid-cxr:54 --emb-cache $EMB \
  --choose --keep --merge --write $W --out benchmarks/results/textseg_v5_calib_val_cxr.md \
  --variants 'base={}' 'p35={"presence_threshold":0.35}' 'heat={"mask_from":"heat"}' 'dec4={"mask_from":"decoder","box_margin":4}'
python benchmarks/bench_textseg.py --split test --modes text --weights $W --emb-cache $EMB \
  --datasets jsrt-cxr:37,covid-cxr:46,acdc-cmr:10,chaos-mr:3,btcv-ct:5 --out benchmarks/results/textseg_test_v5.md
python benchmarks/bench_absent.py --weights $W --emb-cache $EMB --out benchmarks/results/absent_v5.md
