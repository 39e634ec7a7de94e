#!/usr/bin/env bash
# Regenerates the heatmap grids shown in README.md from the demo audit: runs (or resumes) conf/demo.yaml,
# then `lrp-audit heatmaps` on its least confident samples (docs/images/heatmaps-least-confident.png);
# then the same samples explained with composite EpsilonPlus instead of the demo's EpsilonPlusFlat
# (scripts/demo_strokes.py -> audits/demo-epsilonplus; docs/images/heatmaps-least-confident-epsilonplus.png).
set -euo pipefail
cd "$(dirname "$0")/.."
# a busy machine can take longer than Prefect's default 20 s to start the temporary server
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}
.venv/bin/lrp-audit run conf/demo.yaml --no-progress > /dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/lrp-audit heatmaps audits/demo --top 8 --by predicted_probability --ascending --overlay \
  --columns 4 --dpi 80 -o "$tmp"
mkdir -p docs/images
cp "$tmp/grid.png" docs/images/heatmaps-least-confident.png
echo "wrote docs/images/heatmaps-least-confident.png"
PYTHONPATH=${PYTHONPATH:-$PWD} .venv/bin/python scripts/demo_strokes.py audits/demo-epsilonplus > /dev/null 2>&1
.venv/bin/lrp-audit heatmaps audits/demo-epsilonplus --top 8 --by predicted_probability --ascending --overlay \
  --columns 4 --dpi 80 -o "$tmp/epsilonplus"
cp "$tmp/epsilonplus/grid.png" docs/images/heatmaps-least-confident-epsilonplus.png
echo "wrote docs/images/heatmaps-least-confident-epsilonplus.png"
