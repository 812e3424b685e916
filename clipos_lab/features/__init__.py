"""FeatureBank: every image encoded once, streamed to disk, memory-mapped, and reused by every method.

The image encoder is frozen in all methods, so each token kind the backbone gives (global features, patch tokens,
value-value "surgery" tokens, the value-path ``local`` features, and, when asked, the patch tokens of
intermediate blocks) is computed once and cached under a key made of everything that could change it: the model,
its weights, the preprocessing, the surgery depth, the storage dtype, the stored layers and every file's identity
(path, size, modification time) or generator parameters. Training and scoring then never run the image encoder.

* :mod:`.keys`: where caches live and the cache key;
* :mod:`.encode`: the DataLoader input pipeline and the batches of features it yields;
* :mod:`.store`: :class:`FeatureStore`, one cache folder written row by row, with row states and checksums;
* :mod:`.bank`: :class:`FeatureBank`, what methods read (memory-mapped; a drawn bank reads a kind on first use),
  and :class:`CachedDataset`, one cache entry opened once for many draws.

Location: ``$CLIPOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/clipos_lab``, else ``~/.cache/clipos_lab``;
``cache=False`` encodes into a temporary folder that is removed at once.
"""

from .bank import CachedDataset, FeatureBank
from .encode import encode_batches, feature_tensors
from .keys import FORMAT_VERSION, CacheWarning, SkippedImageWarning, cache_key, default_cache_dir, layer_kind
from .store import FeatureStore

__all__ = ["FORMAT_VERSION", "CacheWarning", "CachedDataset", "FeatureBank", "FeatureStore", "SkippedImageWarning",
           "cache_key", "default_cache_dir", "encode_batches", "feature_tensors", "layer_kind"]
