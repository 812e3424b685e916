"""Negative-label algorithms (vocab, grouping, NegLabel / CSP mining, AdaNeg memory) on hand-built cases."""

from __future__ import annotations

import gzip
import math
import random

import pytest
import torch
import torch.nn.functional as F

from clipos_lab.negatives import adaneg as A
from clipos_lab.negatives import csp, grouping, neglabel
from clipos_lab.negatives import vocab as V

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton University.  \n"


def write_fake_wordnet(folder):
    """Two tiny WordNet data files: 3 noun synsets (one repeats a word), 2 adjective synsets."""
    (folder / "data.noun").write_text(
        HEADER
        + "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived\n"
        + "00002137 06 n 02 Hot_Dog 0 frank 0 000 | a sausage\n"
        + "00002138 06 n 01 hot_dog 1 000 | same word again\n"
        + "00002139 05 n 01 aardvark 0 000 | an animal\n", encoding="latin-1")
    (folder / "data.adj").write_text(
        HEADER
        + "00001740 00 a 02 able(a) 0 capable 0 000 | (usually followed by `to')\n"
        + "00001741 44 s 01 broken(p) 0 000 | not whole\n", encoding="latin-1")


def test_wordnet_parse_rule_and_round_trip(tmp_path):
    write_fake_wordnet(tmp_path)
    vocab = V.wordnet_vocabulary(tmp_path)
    # files sorted by name; first lemma per synset; markers removed; underscores to spaces; lower case; once per file
    assert list(zip(vocab.lexnames, vocab.words)) == [
        ("adj.all", "able"), ("adj.ppl", "broken"), ("noun.Tops", "entity"), ("noun.animal", "aardvark"),
        ("noun.artifact", "hot dog")]
    assert vocab.pos == ("adj", "adj", "noun", "noun", "noun")
    out = V.build_wordnet_vocab(tmp_path, tmp_path / "out", source="fake")
    first = out.read_bytes()
    assert V.read_vocab(out) == vocab
    assert "sha256" in (tmp_path / "out" / "README.md").read_text()
    assert "Princeton University." in (tmp_path / "out" / "LICENSE-WordNet.txt").read_text()
    with pytest.raises(ValueError, match="--overwrite"):
        V.build_wordnet_vocab(tmp_path, tmp_path / "out")
    V.build_wordnet_vocab(tmp_path, tmp_path / "out", overwrite=True, source="fake")
    assert out.read_bytes() == first  # byte-identical rebuild (fixed gzip timestamp)


def test_wordnet_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        V.wordnet_vocabulary(tmp_path)
    (tmp_path / "data.noun").write_text("garbage line\n")
    (tmp_path / "data.adj").write_text("")
    with pytest.raises(ValueError, match="data.noun:1"):
        V.wordnet_vocabulary(tmp_path)


def test_plain_word_list_and_dedup_rules(tmp_path):
    path = tmp_path / "words.txt.gz"
    path.write_bytes(gzip.compress(b"# comment\napple\n\nbanana\n"))
    assert V.read_vocab(path, pos="adj").words == ("apple", "banana")
    v = V.Vocabulary(("red", "car", "red", "blue"), ("adj", "noun", "noun", "adj"),
                     ("adj.all", "noun.artifact", "noun.attribute", "adj.all"))
    assert v.split("first") == (["car"], ["red", "blue"])  # first file that has the word wins (NegLabel, CSP)
    assert v.split("noun") == (["car", "red"], ["blue"])  # a noun stays a noun (AdaNeg)
    assert v.select(["adj.all"]).words == ("car", "red")


def test_word_list_read_once_per_version(tmp_path):
    """A suite's fits share one parse of a word list, but an edited list is read again, never served stale."""
    path = tmp_path / "words.txt"
    path.write_text("apple\nbanana\n")
    first = V.read_vocab(path)
    assert V.read_vocab(path) is first and V.read_vocab(path, pos="adj") is not first
    path.write_text("cherry\n")
    assert V.read_vocab(path).words == ("cherry",)


def test_grouped_score_matches_softmax_sum():
    torch.manual_seed(0)
    pos, neg = torch.randn(3, 4) * 3, torch.randn(3, 10) * 3
    perm = grouping.group_permutation(10, 3, permute=True, seed=0)
    assert torch.equal(perm, (torch.manual_seed(0), torch.randperm(9))[1])  # the reference's draw, 1 dropped
    got = grouping.grouped_id_score(pos, neg, 3, perm)
    blocks = neg[:, :9][:, perm].reshape(3, 3, 3)
    expect = torch.stack([torch.cat([pos, blocks[:, g]], -1).softmax(-1)[:, :4].sum(-1) for g in range(3)], -1)
    assert torch.allclose(got, expect.mean(-1), atol=1e-6)
    # one group, no permutation: the plain ID share over every negative
    one = grouping.grouped_id_score(pos, neg, 1)
    assert torch.allclose(one, torch.cat([pos, neg], -1).softmax(-1)[:, :4].sum(-1), atol=1e-6)
    # n_fuse keeps the first n_fuse - 1 groups (the reference's slice)
    assert torch.allclose(grouping.grouped_id_score(pos, neg, 3, perm, n_fuse=3), expect[:, :2].mean(-1), atol=1e-6)
    with pytest.raises(ValueError, match="cannot fill"):
        grouping.group_permutation(2, 3)


def test_neglabel_percentile_and_per_pos_selection():
    id_labels = torch.eye(4)[:3]  # 3 ID labels: e0, e1, e2 in 4-d
    cands = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 0]])
    sim = F.normalize(cands, dim=-1) @ id_labels.T
    dist = neglabel.percentile_similarity(cands, id_labels, q=0.95)
    # torch.quantile's linear rule on 3 values: sorted[1] + 0.9 (sorted[2] - sorted[1])
    s = sim.sort(-1).values
    assert torch.allclose(dist, s[:, 1] + 0.9 * (s[:, 2] - s[:, 1]))
    is_adj = torch.tensor([False, False, False, True, True, True])
    picked = neglabel.mine_negatives(dist, is_adj, ratio=0.5)
    # nouns 0,1,2: distances 0.707*.., 0, 1 -> int(3 * 0.5) = 1 kept: index 1; adjectives 3,4,5 -> index 4
    assert picked.tolist() == [1, 4]
    # ties keep the lower index first (stable), the ratio floors
    tie = neglabel.mine_negatives(torch.zeros(5), torch.zeros(5, dtype=torch.bool), ratio=0.5)
    assert tie.tolist() == [0, 1]
    # CSP: a candidate too close to one ID label (max cos > 0.95) is ranked last
    csp_dist = neglabel.percentile_similarity(cands, id_labels, q=0.95, exclude_above=0.95)
    assert csp_dist[2] == 1.0 and csp_dist[1] == dist[1]


def test_adaneg_fixed_count_split():
    dist = torch.tensor([0.5, 0.1, 0.3, 0.2, 0.9, 0.0])
    is_adj = torch.tensor([True, True, False, False, False, False])
    # total 3: n_adj = int(3 * 2 / 6) = 1 -> adjective 1; nouns get 2 -> 5, 3
    assert neglabel.mine_fixed_count(dist, is_adj, 3).tolist() == [1, 5, 3]
    ids = torch.eye(3)
    cand = torch.tensor([[1.0, 0.5, 0.0]])
    # index int(3 * 0.95) = 2 of the sorted similarities, no interpolation
    assert torch.allclose(neglabel.sorted_index_similarity(cand, ids), (F.normalize(cand, dim=-1) @ ids.T).max(-1)[0])


def test_csp_conjugation_follows_python_random():
    random.seed(7)
    expect = [random.choice(list(csp.CSP_TEMPLATES)).format(a) for a in ("red", "old", "wet")]
    assert csp.conjugate(["red", "old", "wet"], seed=7) == expect
    assert csp.conjugate(["red"], seed=0) != [] and all("{}" in t for t in csp.NOUN_TEMPLATES)


def test_adaneg_memory_fill_and_replace():
    text = F.normalize(torch.randn(2, 4), dim=-1)
    mem = A.ProxyMemory.new(text, length=3)
    f = torch.eye(4)
    mem.put(0, f[0], 0.5)
    mem.put(0, f[1], 0.9)
    assert mem.filled[0] == 3 and torch.equal(mem.features[0, 1:3], f[:2])
    assert torch.equal(mem.features[0, 3], torch.zeros(4))  # the reference never writes the last slot
    mem.put(0, f[2], 1.0)  # entropy above every cached one: refused
    assert torch.equal(mem.features[0, 1:3], f[:2])
    mem.put(0, f[3], 0.7)  # replaces the largest entropy (0.9, slot 2)
    assert torch.equal(mem.features[0, 2], f[3]) and mem.entropy[0, 2] == pytest.approx(0.7)
    mem.entropy[0, 1:3] = 0.8  # tie: the higher slot is replaced
    mem.put(0, f[0] * 2, 0.1)
    assert torch.equal(mem.features[0, 2], f[0] * 2)


def test_adaneg_text_only_labels_give_the_full_products_bits():
    """Labels holding only their text are scored on slot 0 alone: the same bits as the full product over every
    slot, next to labels with cached features (one of them full, so with replacements); a memory without its
    text Gram (built by hand) takes the full path for every label."""
    g = torch.Generator().manual_seed(3)
    mem = A.ProxyMemory.new(F.normalize(torch.randn(300, 128, generator=g), dim=-1), length=10)
    for label in [0, 299] + [7] * 14:
        mem.put(label, F.normalize(torch.randn(128, generator=g), dim=0), float(torch.rand(1, generator=g)))
    assert int(mem.filled[7]) == 10 and int(mem.filled[0]) == 2
    images = F.normalize(torch.randn(33, 128, generator=g), dim=-1)
    full = A._sample_adaptive_logits(mem.features, images, 30.0, 5.0)
    for chunk in (None, 7):
        assert torch.equal(A.proxy_logits(mem, images, 30.0, samada=True, beta=5.0, chunk=chunk), full)
    mem.text_gram = None
    assert torch.equal(A.proxy_logits(mem, images, 30.0, samada=True, beta=5.0), full)


def test_adaneg_proxies_and_step_from_formulas():
    torch.manual_seed(1)
    text = F.normalize(torch.randn(5, 6), dim=-1)
    mem = A.ProxyMemory.new(text, length=3)
    mem.put(1, F.normalize(torch.randn(6), dim=0), 0.2)
    images = F.normalize(torch.randn(4, 6), dim=-1)
    beta = 5.0
    got = A.proxy_logits(mem, images, 10.0, samada=True, beta=beta)
    for b in range(4):
        for c in range(5):
            w = torch.exp(-beta * (1 - mem.features[c] @ images[b]))
            proxy = F.normalize((w[:, None] * mem.features[c]).sum(0), dim=0)
            assert got[b, c] == pytest.approx(10.0 * float(proxy @ images[b]), abs=1e-4)
    plain = A.proxy_logits(mem, images, 10.0, samada=False, beta=beta)
    assert torch.allclose(plain, 10.0 * images @ F.normalize(mem.features.mean(1), dim=-1).T, atol=1e-5)

    # one step: the vanilla score decides what is cached before the batch is scored
    n_id, perm = 2, grouping.group_permutation(3, 1, permute=False)
    mem = A.ProxyMemory.new(text, length=3)
    images = torch.stack([text[0], text[4]])  # an ID-like and a negative-like image
    out = A.adaneg_step(mem, images, text, n_id, 50.0, perm, n_groups=1, thres=0.5, gap=0.5, lambda_=0.1,
                        beta=5.0, samada=True)
    logits = 50.0 * images @ text.T
    vanilla = torch.cat([logits[:, :2], logits[:, 2:]], -1).softmax(-1)[:, :2].sum(-1)
    assert torch.allclose(out["vanilla"], vanilla, atol=1e-6)
    assert vanilla[0] > 0.75 and vanilla[1] < 0.25
    assert mem.filled.tolist() == [2, 1, 1, 1, 2]  # image 0 -> ID label 0, image 1 -> negative label 4
    p = logits[0, :2].softmax(-1)
    assert mem.entropy[0, 1] == pytest.approx(float(-(p * torch.log(p + 1e-8)).sum()), abs=1e-6)
    assert torch.allclose(out["score"], out["adaptive"] + 0.1 * out["vanilla"])


def test_adaneg_adaptive_gap_thresholds():
    mem = A.ProxyMemory.new(torch.eye(3), length=2)
    conf = torch.tensor([0.9] * 50 + [0.1] * 10)  # 50 confident ID, 10 confident OOD pseudo-labels
    high, low = A.thresholds(mem, conf, 0.5, 0.5, "adaptive")
    ratio = 150 / 260
    assert high == pytest.approx(0.75) and low == pytest.approx(0.5 - ratio * 0.5)
    assert A.thresholds(mem, conf, 0.5, 0.5, "fixed") == (0.75, 0.25)
    assert math.isclose(sum(mem.recent), 150)
