#!/usr/bin/env bash
set -e
# Heat smoothed along z, per term (session 7): each slice's heat logits become 0.5 x its own + 0.25 x each
# neighbour's. Compared with none on the val patients; a term takes it only where it wins by 0.01 (oesophagus, IVC).
# The shipped checkpoint was a copy of the packaged one (after calibrate_v4_whole.sh) written by the first command,
# then copied back into src/medground/models/weights/. Run from the repository root.
W=${1:-src/medground/models/weights/grounding.pt}
EMB=${EMB:-cache/tune_emb}
python benchmarks/tune_textseg.py --weights $W --split val --datasets btcv-ct:4,chaos-mr:3,acdc-cmr:8 --emb-cache $EMB \
  --choose --keep --merge --write $W --out benchmarks/results/textseg_v4_zsmooth_val.md \
  --variants 'base={}' 'zs25={"heat_z_smooth":0.25}'
python benchmarks/bench_textseg.py --split test --modes text --weights $W --emb-cache $EMB \
  --datasets jsrt-cxr:37,covid-cxr:46,acdc-cmr:10,chaos-mr:3,btcv-ct:5 --out benchmarks/results/textseg_test_v4_s7.md
