"""CLIP-OS, one module per stage (the method is described in ``docs/method.md``):

1. :mod:`.relevance`: split each few-shot image's patches into ID-relevant and ID-irrelevant (patch uniform
   convolution, the CLIP-Surgery discrepancy rule or LoCoOp's top-k rule), giving one ID-relevant feature per
   image;
2. :mod:`.synthesis`: mix ID-relevant features of two images of different classes into synthetic outliers;
3. :mod:`.prompts`: learn CoOp-style prompts with an extra *unknown* class that the outliers are trained into.

The methods in :mod:`clipos_lab.methods.prompt` chain these stages; CoOp and LoCoOp reuse stage 3 (and LoCoOp
stage 1's top-k rule).
"""
