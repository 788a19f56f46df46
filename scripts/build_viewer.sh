#!/usr/bin/env bash
# Rebuild the web viewer's bundled NiiVue (src/medground/serve/static/vendor/) from viewer/ with npm.
# Only needed after changing viewer/package.json (e.g. a NiiVue upgrade): the built bundle is committed,
# so installing medground needs no npm. The page's own code (static/*.js, *.css, index.html) is not built.
set -euo pipefail
cd "$(dirname "$0")/../viewer"
command -v npm >/dev/null || { echo "build_viewer.sh: npm is not installed (apt-get install npm)" >&2; exit 2; }
npm ci --no-audit --no-fund
node build.mjs
