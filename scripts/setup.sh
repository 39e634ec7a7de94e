#!/usr/bin/env bash
# One-shot set-up on a fresh machine: a virtual environment in .venv with the project, the
# pipeline (Prefect, Ray, Zarr, pandas) and the dev tools, torch pinned to the CPU wheel by
# constraints.txt (an unpinned torch would pull a multi-GB CUDA build).
#
#   bash scripts/setup.sh [--with-references] [--with-quantus] [--with-corelay] [--with-virelay] [--with-lxt]
#
# --with-references (the README's test command; --with-zennit is its old name, kept as an alias)
# also creates the five reference environments the cross-check tests run their reference library
# in (tests/reference_venv.py): .venv-zennit, .venv-quantus, .venv-corelay, .venv-virelay, .venv-lxt.
# --with-quantus, --with-corelay, --with-virelay, --with-lxt create one each. Options combine, in any order.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_ZENNIT=0 WITH_QUANTUS=0 WITH_CORELAY=0 WITH_VIRELAY=0 WITH_LXT=0
for arg in "$@"; do
  case "$arg" in
    --with-references | --with-zennit) WITH_ZENNIT=1 WITH_QUANTUS=1 WITH_CORELAY=1 WITH_VIRELAY=1 WITH_LXT=1 ;;
    --with-quantus) WITH_QUANTUS=1 ;;
    --with-corelay) WITH_CORELAY=1 ;;
    --with-virelay) WITH_VIRELAY=1 ;;
    --with-lxt) WITH_LXT=1 ;;
    -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[pipeline,dev]'
if [ "$WITH_ZENNIT" = 1 ]; then
  # zennit 1.0 (the reference PyTorch LRP library) imports torchvision, which does not load beside
  # the torch 2.13 CPU wheel; the cross-check test runs it in its own environment.
  if [ ! -x .venv-zennit/bin/python ]; then
    "$PY" -m venv .venv-zennit
  fi
  if [ "$(uname -m)" = "aarch64" ]; then TV="torch==2.9.1 torchvision==0.24.1"; else TV="torch==2.14.1 torchvision==0.29.1"; fi
  # shellcheck disable=SC2086
  .venv-zennit/bin/python -m pip install -q $TV numpy pillow click
  .venv-zennit/bin/python -m pip install -q --no-deps --ignore-requires-python zennit==1.0.0
fi
if [ "$WITH_QUANTUS" = 1 ]; then
  # Quantus 0.6 (reference for region perturbation / pixel flipping) pulls opencv, scikit-image and
  # matplotlib; it gets its own environment with the project's torch pin (it needs no torchvision).
  # Its dependencies are installed with the headless OpenCV (plain opencv-python needs libGL).
  # --with-references (the README's test command) creates it too, so CI runs the cross-check.
  if [ ! -x .venv-quantus/bin/python ]; then
    "$PY" -m venv .venv-quantus
  fi
  .venv-quantus/bin/python -m pip install -q -c constraints.txt torch numpy pandas opencv-python-headless \
    scikit-image scikit-learn scipy tqdm matplotlib cachetools safetensors
  .venv-quantus/bin/python -m pip install -q --no-deps quantus==0.6.0
fi
if [ "$WITH_CORELAY" = 1 ]; then
  # CoRelAy 1.0 (the reference SpRAy pipeline) for the eigenvalue cross-check: its own environment,
  # so its pins never touch the project's; the cross-check hands it arrays, not the project.
  # --with-references (the README's test command) creates it too, so CI runs the cross-check.
  if [ ! -x .venv-corelay/bin/python ]; then
    "$PY" -m venv .venv-corelay
  fi
  .venv-corelay/bin/python -m pip install -q corelay==1.0.0
fi
if [ "$WITH_VIRELAY" = 1 ]; then
  # ViRelAy (the viewer of SpRAy results) for the export test: its own loader opens what
  # `lrp-audit export virelay` writes. Its own environment (it pins Flask, gunicorn, h5py...).
  # The package index lists virelay 0.3.1 to 0.6.1 (no 1.0). --with-references creates it too, so CI runs the test.
  if [ ! -x .venv-virelay/bin/python ]; then
    "$PY" -m venv .venv-virelay
  fi
  .venv-virelay/bin/python -m pip install -q virelay==0.6.1
fi
if [ "$WITH_LXT" = 1 ]; then
  # LXT 2.1 (AttnLRP's reference implementation) for the transformer cross-check: it imports torchvision
  # and Hugging Face transformers (4.52.4, its tested version: 5.x breaks its import), and zennit for
  # its Gamma bridge. It monkey-patches torch.nn classes process-wide, so it gets its own environment.
  # --with-references creates it too, so CI runs the cross-check.
  if [ ! -x .venv-lxt/bin/python ]; then
    "$PY" -m venv .venv-lxt
  fi
  if [ "$(uname -m)" = "aarch64" ]; then TV="torch==2.9.1 torchvision==0.24.1"; else TV="torch==2.14.1 torchvision==0.29.1"; fi
  # shellcheck disable=SC2086
  .venv-lxt/bin/python -m pip install -q $TV transformers==4.52.4 'lxt==2.1.*' timm==1.0.31 numpy
  .venv-lxt/bin/python -m pip install -q --no-deps --ignore-requires-python zennit==1.0.0
fi
echo "set-up done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
