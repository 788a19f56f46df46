#!/usr/bin/env bash
# The test command of the README (run inside the venv made by scripts/setup.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
# pytest exits 5 when it collected no tests: that is a failure here too.
exit $rc
