"""The pocket world and the pocket model: the offline stand-in for web data and a real CLIP.

* :mod:`.world`: a procedural world of shapes, colours, textures and captions, every image a pure function of
  its seed;
* :mod:`.train`: the recipe that trains a small open_clip ViT on it (the shipped weights are in ``assets/``);
* :mod:`.splits`: random class splits of the world, the harder benchmark suite;
* v2 (issue 19): :mod:`.drawings` (Open Clip Art SVGs -> class nouns, superclasses, splits), :mod:`.pack`
  (the rendered drawings pack in ``assets/drawings``), :mod:`.world2` and :mod:`.captions2` (scenes of drawings
  and their captions), :mod:`.train2` (the 14 x 14-grid model's recipe on the shared training loop).
"""
