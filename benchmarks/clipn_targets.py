"""Exact vs reference (diagonal) ITBO targets: does the no tower say yes to captions that are true of an image?

    python benchmarks/clipn_targets.py   # after benchmarks/clipn_tune.py trained outputs/clipn_tune/{exact,reference}

On 1,000 held-out pocket-world images (the validation pool of ``clipos_lab.clipn.train``; three caption draws)
every (image, caption) pair is classified by the sign of ``s (cos_yes - cos_no)``. Reported: how often it says
yes to the image's own caption, to *other* captions that are also true of it (the pairs the reference's targets
train as "no"), and no to false captions.
"""

from __future__ import annotations

import numpy as np
import torch

from clipos_lab.backbone import Backbone
from clipos_lab.clipn import train as T
from clipos_lab.clipn.losses import exact_targets, yes_no_margin
from clipos_lab.pocket import world as W


def main() -> None:
    torch.set_num_threads(1)
    b = Backbone.load()
    val = T.build_pool(b, 1000, 0, T.VAL_FIRST_STEP, T.ClipnConfig(pool_size=8000), progress=False)
    for name in ["exact", "reference"]:
        enc = T.load_checkpoint(b, f"outputs/clipn_tune/{name}")
        accs = []
        for rep in range(3):
            rng = np.random.default_rng([rep, 99])
            caps = [W.caption(s, rng) for s in val.scenes]
            cons = {t: c for t, c in caps}
            texts = sorted(cons)
            truth = exact_targets(val.scenes, [cons[t] for t in texts])
            own = torch.tensor([[c == t for t in texts] for c, _ in caps])
            also = truth & ~own
            with torch.no_grad():
                m = yes_no_margin(val.features, b.encode_text(texts), enc(b.tokenize(texts)), b.logit_scale)
            yes = m > 0
            accs.append([yes[own].float().mean().item(), yes[also].float().mean().item(),
                         (~yes[~truth]).float().mean().item(), int(also.sum()), int(own.sum())])
        a = np.mean(accs, 0)
        print(f"{name}: says yes to own caption {a[0]:.4f}; to other true captions {a[1]:.4f}; says no to false "
              f"{a[2]:.4f}  (pairs: also-true {a[3]:.0f}, own {a[4]:.0f})")


if __name__ == "__main__":
    main()
