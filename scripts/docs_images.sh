#!/usr/bin/env bash
# Regenerates the heatmap grid shown in README.md (docs/images/heatmaps-least-confident.png) from the
# demo audit: runs (or resumes) conf/demo.yaml, then `lrp-audit heatmaps` on its least confident samples.
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
