"""Write the planted-artifact dataset: data/planted/digits32_stamped.npz (committed; ~0.2 MB).

    .venv/bin/python scripts/make_planted.py [--out data/planted/digits32_stamped.npz]

scikit-learn's 1,797 digits upscaled to 1×32×32 (uint8; audits scale by 1/255); 30 % of the 3s, in the
training and in the test split, carry a 4×4 hollow square in the top-left corner. Members: ``x``
(stamped images), ``clean`` (the same images without stamps), ``y`` (labels), ``stamped`` (which
samples carry the stamp: the ground truth SpRAy is checked against), ``split`` (0 train, 1 test).
Deterministic: the same arrays on every run (see lrp_tasks/models/planted.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_tasks.models.planted import STAMP_CLASS, planted_arrays  # noqa: E402

DEFAULT_OUT = ROOT / "data" / "planted" / "digits32_stamped.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    arrays = planted_arrays()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    stamped = arrays["stamped"]
    n_class = int((arrays["y"] == STAMP_CLASS).sum())
    print(
        f"wrote {args.out}: {len(stamped)} images 1x32x32, {int(stamped.sum())} of {n_class} "
        f"class-{STAMP_CLASS} images stamped (train {int((stamped & (arrays['split'] == 0)).sum())}, "
        f"test {int((stamped & (arrays['split'] == 1)).sum())})"
    )


if __name__ == "__main__":
    main()
