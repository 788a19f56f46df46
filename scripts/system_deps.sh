#!/usr/bin/env bash
# Debian packages used only by optional tests: Chromium (viewer browser test) and pgvector (server vector store).
set -euo pipefail
PKGS="chromium"
if ! command -v apt-get >/dev/null; then echo "no apt-get: skipping $PKGS"; exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
