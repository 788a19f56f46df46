#!/usr/bin/env bash
# The README's main job on examples that ship with what pip installs (pydicom / pydicom-data):
# a chest radiograph (DICOM CR) and a CT slice (DICOM), segmented from boxes and from words.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo_out}
CXR=$(python -c "from pydicom.data import get_testdata_file as g; print(g('RG1_UNCR.dcm'))")
CT=$(python -c "from pydicom.data import get_testdata_file as g; print(g('CT_small.dcm'))")
medground info "$CXR"
# box prompts: the right lung on the radiograph, the aorta on the CT slice
medground segment "$CXR" --box 170,130,820,1560 --out "$OUT/cxr_box"
medground segment "$CT" --box 75,0,110,28 --out "$OUT/ct_box"
# text prompts (the grounding head shipped in the package)
medground segment "$CXR" --prompt "right lung" --prompt "left lung" --prompt heart --out "$OUT/cxr_text"
echo "masks, findings.json and overlay PNGs are in $OUT/"
