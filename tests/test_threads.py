"""The thread policy: CLIPOS_THREADS / --threads parsing, the small/large rule, restoring the thread count, the
stages that apply it, and that a given thread count gives the same bytes."""

import numpy as np
import pytest
import torch
import yaml

from clipos_lab import threads as T
from clipos_lab.cli import main
from clipos_lab.clipos.prompts import PromptConfig, PromptLearner, TrainingData, train_prompts
from clipos_lab import scores as S
from clipos_lab.features import FeatureBank
from clipos_lab.methods import MCM

SPEC = {
    "name": "threads-world",
    "id": {"type": "world", "kind": "object", "shapes": ["circle", "star"], "n_per_class": 4, "seed": 1},
    "ood": {"textures": {"type": "world", "kind": "background", "n": 4, "seed": 2}},
}


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    """Each test starts from the rule (no CLIPOS_THREADS, no set_threads) and leaves torch's count as it was."""
    monkeypatch.delenv(T.ENV_VAR, raising=False)
    before = torch.get_num_threads()
    T.set_threads(None)
    yield
    T.set_threads(None)
    torch.set_num_threads(before)


@pytest.mark.parametrize("text, expected", [(None, None), ("", None), ("auto", None), (" AUTO ", None), ("1", 1),
                                            (" 3 ", 3), (2, 2)])
def test_parse_threads_accepts_counts_and_auto(text, expected):
    assert T.parse_threads(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", "2x", 0, 1.5, True])
def test_bad_thread_counts_name_their_source(text):
    with pytest.raises(ValueError, match="CLIPOS_THREADS") as err:
        T.parse_threads(text)
    assert "auto" in str(err.value)  # says what else to give
    with pytest.raises(ValueError, match="--threads"):
        T.parse_threads(text, "--threads")


def test_environment_variable_and_set_threads(monkeypatch):
    assert T.requested() is None
    monkeypatch.setenv(T.ENV_VAR, "3")
    assert T.requested() == 3 and T.threads_for(0) == 3 and T.threads_for(1e15) == 3
    T.set_threads(2)  # the call (e.g. --threads) wins over the environment
    assert T.requested() == 2
    T.set_threads("auto")
    assert T.requested() == 3
    monkeypatch.setenv(T.ENV_VAR, "lots")
    with pytest.raises(ValueError, match="CLIPOS_THREADS='lots'"):
        T.threads_for(0)


def test_rule_uses_one_thread_for_small_work_and_every_core_for_large(monkeypatch):
    monkeypatch.setattr(T, "all_cores", lambda: 4)
    assert T.threads_for(0) == 1
    assert T.threads_for(T.PARALLEL_WORK / 2) == 1
    assert T.threads_for(T.PARALLEL_WORK) == 4


def test_stage_threads_restores_the_count_also_after_an_error(monkeypatch):
    monkeypatch.setattr(T, "all_cores", lambda: 2)
    torch.set_num_threads(3)
    with T.stage_threads(0) as n:
        assert n == 1 and torch.get_num_threads() == 1
        with T.stage_threads(T.PARALLEL_WORK) as inner:  # nested: the inner stage, then back to the outer one
            assert inner == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3
    with pytest.raises(RuntimeError, match="boom"):
        with T.stage_threads(0):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 3


def test_threaded_sizes_the_work_from_the_call(monkeypatch):
    monkeypatch.setattr(T, "all_cores", lambda: 2)

    @T.threaded(lambda size: size)
    def inside(size):
        return torch.get_num_threads()

    torch.set_num_threads(3)
    assert inside(10.0) == 1 and inside(T.PARALLEL_WORK) == 2
    assert torch.get_num_threads() == 3


def test_using_threads_sets_and_restores_the_choice(monkeypatch):
    torch.set_num_threads(3)
    with T.using_threads(2) as base:
        assert base == 2 and T.requested() == 2 and torch.get_num_threads() == 2
    assert T.requested() is None and torch.get_num_threads() == 3
    with T.using_threads(None) as base:  # the rule: work outside the sized stages runs on one thread
        assert base == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv(T.ENV_VAR, "0")
    with pytest.raises(ValueError, match="CLIPOS_THREADS='0'"):
        with T.using_threads(None):
            pass
    assert torch.get_num_threads() == 3


def test_matmul_weights_counts_linear_conv_and_attention_projections():
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Conv2d(2, 5, 3), torch.nn.MultiheadAttention(8, 2),
                                 torch.nn.Embedding(100, 4))
    assert T.matmul_weights(module) == 4 * 3 + 5 * 2 * 3 * 3 + 3 * 8 * 8 + 8 * 8  # the embedding is a lookup


def test_pocket_stages_run_on_one_thread_by_default_and_on_the_requested_count(pocket_backbone, monkeypatch):
    """Scoring and prompt training of the pocket model are small work: one thread, whatever torch had before;
    CLIPOS_THREADS overrides it. What each stage saw is recorded from inside it."""
    seen = []
    mcm = S.mcm
    monkeypatch.setattr(S, "mcm", lambda *a, **k: (seen.append(("score", torch.get_num_threads())), mcm(*a, **k))[1])
    images = torch.randn(6, 3, pocket_backbone.image_size, pocket_backbone.image_size, generator=torch.Generator()
                         .manual_seed(0))
    feats = pocket_backbone.encode_images(images)
    bank = FeatureBank(feats.global_, feats.patches, feats.surgery, torch.tensor([0, 1, 0, 1, 0, 1]),
                       [str(i) for i in range(6)], ["circle", "star"], feats.grid, extra={"local": feats.local})
    learner = PromptLearner(pocket_backbone, ["circle", "star"], n_ctx=2, unknown=True)
    data = TrainingData(bank.global_, bank.labels,
                        outliers=lambda epoch: (seen.append(("train", torch.get_num_threads())), bank.global_)[1])

    def run():
        MCM().fit(pocket_backbone, classnames=["circle", "star"]).score(bank)
        train_prompts(learner, data, PromptConfig(epochs=1, min_steps=1, progress=False), beta=0.1)

    torch.set_num_threads(2)
    assert pocket_backbone.forward_work("image", 64) < T.PARALLEL_WORK  # what the default rule is sized on
    run()
    assert set(seen) == {("score", 1), ("train", 1)} and torch.get_num_threads() == 2
    seen.clear()
    monkeypatch.setenv(T.ENV_VAR, "2")
    torch.set_num_threads(1)
    run()
    assert set(seen) == {("score", 2), ("train", 2)} and torch.get_num_threads() == 1


def test_bad_threads_on_the_command_line_is_one_error_naming_the_option(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", "default", "--threads", "0", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "--threads" in capsys.readouterr().err
    monkeypatch.setenv(T.ENV_VAR, "many")
    assert main(["benchmark", "default", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CLIPOS_THREADS='many'") and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any work


def _benchmark(tmp_path, name: str, *extra: str) -> bytes:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / name
    assert main(["benchmark", str(spec), "--methods", "MCM,GL-MCM,CoOp,CLIP-OS", "--shots", "1", "--seeds", "1",
                 "--epochs", "3", "--out", str(out), "--no-progress", *extra]) == 0
    return (out / "results.csv").read_bytes()


def test_a_given_thread_count_gives_the_same_bytes(tmp_path, monkeypatch):
    """One thread (--threads 1, CLIPOS_THREADS=1 and the pocket model's default) gives byte-identical results, run
    after run, and so does two; on the command line --threads wins over the environment."""
    monkeypatch.setenv("CLIPOS_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(2)
    one = _benchmark(tmp_path, "one", "--threads", "1")
    assert _benchmark(tmp_path, "default") == one  # the rule picks one thread for the pocket model
    monkeypatch.setenv(T.ENV_VAR, "1")
    assert _benchmark(tmp_path, "env-one") == one
    monkeypatch.setenv(T.ENV_VAR, "3")
    assert _benchmark(tmp_path, "flag-one", "--threads", "1") == one
    two = _benchmark(tmp_path, "two", "--threads", "2")
    assert _benchmark(tmp_path, "two-again", "--threads", "2") == two
    values = [np.loadtxt(tmp_path / n / "results.csv", delimiter=",", skiprows=1, usecols=6) for n in ("one", "two")]
    np.testing.assert_allclose(values[0], values[1], atol=1e-6)  # other counts differ in the last bits at most
    assert torch.get_num_threads() == 2  # the command put torch's count back
