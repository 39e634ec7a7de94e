"""The demo audit again with composite EpsilonPlus instead of the demo's EpsilonPlusFlat, for the README's
second picture: on 8×8 digits Flat spreads the first layer's relevance evenly over each 3×3 receptive
field (blobs by design); EpsilonPlus keeps z+ on the first convolution, whose maps follow the strokes.

    .venv/bin/python scripts/demo_strokes.py audits/demo-epsilonplus
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from flows.audit import audit
from lrp_tasks.config import parse_config

ROOT = Path(__file__).resolve().parent.parent


def main(output: str) -> None:
    data = yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text(encoding="utf-8"))
    data.update(composite="EpsilonPlus", output=str(Path(output).absolute()), name="demo-epsilonplus")
    data.pop("metrics", None)  # the picture needs the maps only
    audit(config=parse_config(data, "conf/demo.yaml (composite EpsilonPlus)"), base_dir=str(ROOT / "conf"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "audits/demo-epsilonplus")
