"""Word-list text embeddings are cached on disk, keyed by everything that changes them, and read back exactly."""

import torch

from clipos_lab.negatives import text as T


def test_a_long_word_list_is_encoded_once_and_read_back_bit_for_bit(pocket_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path))
    words = [f"word{k}" for k in range(T.CACHE_MIN_WORDS)]
    calls = []
    encode = T._encode
    monkeypatch.setattr(T, "_encode", lambda *a: calls.append(a[2]) or encode(*a))
    first = T.template_embeddings(pocket_backbone, words, ["a photo of a {}."])
    again = T.template_embeddings(pocket_backbone, words, ["a photo of a {}."])
    assert len(calls) == 1 and torch.equal(first, again)
    assert len(list((tmp_path / "word_text").glob("*.safetensors"))) == 1
    # another template, another average or other words: another entry, encoded afresh
    T.template_embeddings(pocket_backbone, words, ["a drawing of a {}."])
    T.template_embeddings(pocket_backbone, words, ["a photo of a {}."], normalize_each=True)
    T.template_embeddings(pocket_backbone, words[:-1] + ["other"], ["a photo of a {}."])
    assert len(calls) == 4 and len(list((tmp_path / "word_text").glob("*.safetensors"))) == 4


def test_short_lists_random_weights_and_cache_false_are_not_stored(pocket_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path))
    T.template_embeddings(pocket_backbone, ["cat", "dog"], ["a {}."])
    words = [f"w{k}" for k in range(T.CACHE_MIN_WORDS)]
    T.template_embeddings(pocket_backbone, words, ["a {}."], cache=False)
    monkeypatch.setattr(pocket_backbone, "weights_id", "random:seed0")
    T.template_embeddings(pocket_backbone, words, ["a {}."])
    assert not (tmp_path / "word_text").exists()


def test_an_unreadable_entry_is_encoded_again_and_rewritten(pocket_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path))
    words = [f"word{k}" for k in range(T.CACHE_MIN_WORDS)]
    first = T.template_embeddings(pocket_backbone, words, ["a {}."])
    (entry,) = (tmp_path / "word_text").glob("*.safetensors")
    entry.write_bytes(b"cut short")
    assert torch.equal(T.template_embeddings(pocket_backbone, words, ["a {}."]), first)
    assert entry.stat().st_size > 1000
