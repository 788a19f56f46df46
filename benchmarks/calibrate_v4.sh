#!/usr/bin/env bash
set -e
# Head v4 (configs/textseg_v4.yaml: head v3's slices + negatives across domains): calibration on the val patients,
# starting from head v3's per-term settings (copied in first; --keep), then the held-out test run and the
# out-of-field-of-view prompts. Run from the repository root after `medground train --config configs/textseg_v4.yaml`.
# Usage: bash benchmarks/calibrate_v4.sh [v4 checkpoint] [checkpoint to take the starting calibration from]
# The shipped head v4 started from head v3's calibration with box margins (the packaged checkpoint of commit
# 67b3912: `git show 67b3912:src/medground/models/weights/grounding.pt > v3.pt`, then pass v3.pt as the second
# argument) and was copied into src/medground/models/weights/ (with its .card.json / .history.json) afterwards.
W=${1:-cache/grounding_v4/grounding.pt}
FROM=${2:-src/medground/models/weights/grounding.pt}
EMB=${EMB:-cache/tune_emb}
python benchmarks/copy_calibration.py "$FROM" "$W" "head v3's calibration (start of benchmarks/calibrate_v4.sh)"
python benchmarks/tune_textseg.py --weights $W --split val --datasets btcv-ct:4,chaos-mr:3 --emb-cache $EMB \
  --choose --keep --merge --write $W --out benchmarks/results/textseg_v4_calib_val_abd.md \
  --variants 'base={}' 'p35={"presence_threshold":0.35}' 'p5={"presence_threshold":0.5}' \
             'heat={"mask_from":"heat"}' 'dec4={"mask_from":"decoder","box_margin":4}' \
             'dec7={"mask_from":"decoder","box_margin":7}' 'dec10={"mask_from":"decoder","box_margin":10}'
python benchmarks/tune_textseg.py --weights $W --split val --datasets jsrt-cxr:37,covid-cxr:54,acdc-cmr:8 --emb-cache $EMB \
  --choose --keep --merge --write $W --out benchmarks/results/textseg_v4_calib_val_cxr_cmr.md \
  --variants 'base={}' 'p35={"presence_threshold":0.35}' 'heat={"mask_from":"heat"}' 'dec4={"mask_from":"decoder","box_margin":4}'
python benchmarks/bench_textseg.py --split test --modes text --weights $W --emb-cache $EMB \
  --datasets jsrt-cxr:37,covid-cxr:46,acdc-cmr:10,chaos-mr:3,btcv-ct:5 --out benchmarks/results/textseg_test_v4.md
python benchmarks/bench_absent.py --weights $W --emb-cache $EMB --out benchmarks/results/absent_v4.md
