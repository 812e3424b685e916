"""Do pocket v2's state words point the right way on whole images? (validation drawings only)

    python benchmarks/pocket2_state_probe.py

120 ``val`` drawings of seen classes, each drawn intact, stained and torn in world v2's single-object scenes
(scene seed 4242); per image the margin cos(image, "a damaged {class}.") - cos(image, "an intact {class}.") (and
two other prompt pairs), and the AUROC of that margin for damaged against intact. 0.5 = the words carry no
state, below 0.5 = they point the wrong way. A diagnosis for the state-prompt anomaly bar (docs/pocket2.md).
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

from clipos_lab.backbone import Backbone
from clipos_lab.pocket import world2 as W2
from clipos_lab.pocket.pack import load_pack

b = Backbone.load("pocket2")
pack = load_pack()
world = W2.World2(pack, 112, ("val",), occlusion=0.0, defect=0.0)
recs = [r for r in world.pool if r["class"] and not pack.classes[r["class"]]["unseen"]][:120]
rows = []
for i, r in enumerate(recs):
    for state in ("", "stained", "torn"):
        img, scene = world.render(4242, i, kind="object", drawing=r, state=state)
        rows.append((r["class"], state if scene.objects[0].state else "", img))
x = torch.stack([b.preprocess(Image.fromarray(im)) for _, _, im in rows])
with torch.no_grad():
    emb = F.normalize(b.encode_images(x, surgery=False).global_.float(), dim=-1)


def txt(texts):
    return F.normalize(b.encode_text(texts).float(), dim=-1)


for cname, fmt in (("damaged-vs-intact (class)", ("a damaged {}.", "an intact {}.")),
                   ("stained-vs-intact (class)", ("a stained {}.", "an intact {}.")),
                   ("generic", ("a damaged drawing.", "an intact drawing."))):
    d = txt([fmt[0].format(c) for c, _, _ in rows])
    n = txt([fmt[1].format(c) for c, _, _ in rows])
    margin = ((emb * d).sum(1) - (emb * n).sum(1)).numpy()
    st = np.array([s for _, s, _ in rows])
    print(cname, "margin intact %.4f damaged %.4f AUROC(damaged>intact) %.3f" % (
        margin[st == ""].mean(), margin[st != ""].mean(), roc_auc_score(st != "", margin)))
