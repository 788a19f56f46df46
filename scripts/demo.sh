#!/usr/bin/env bash
# The README's main job on examples that ship with what pip installs (pydicom / pydicom-data):
# a chest radiograph (DICOM CR) and a CT slice (DICOM), segmented from boxes and from words, then
# classified, reported (report.md/.html/.json + DICOM SR) and asked about.
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
# what kind of image it is, a grounded report (JSON, Markdown, HTML, DICOM SR) and a question
medground classify "$CXR"
medground report "$CXR" --out "$OUT/cxr_report"
medground ask "$CXR" "Are the lungs visible?"
echo "masks, findings.json, overlay PNGs and the report are in $OUT/"
