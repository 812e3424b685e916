import pytest
import yaml

from clipos_lab.cli import main
from clipos_lab.data import BenchmarkSpec, default_benchmark_path
from clipos_lab.pocket import world as W
from clipos_lab.pocket.splits import N_SPLITS, random_class_splits, split_specs, write_split_specs

SHIPPED = default_benchmark_path().parent / "world-splits"


def test_splits_partition_the_shapes_are_distinct_and_seeded():
    splits = random_class_splits(5, 6, seed=0)
    assert splits == random_class_splits(5, 6, seed=0)
    assert splits != random_class_splits(5, 6, seed=1)
    assert len({tuple(ids) for ids, _ in splits}) == 5
    for ids, oods in splits:
        assert len(ids) == 6 and not set(ids) & set(oods) and set(ids) | set(oods) == set(W.SHAPES)


def test_impossible_split_requests_are_clear_errors():
    with pytest.raises(ValueError, match="n_id=12"):
        random_class_splits(1, 12)
    with pytest.raises(ValueError, match="distinct splits"):
        random_class_splits(3, 1, shapes=["circle", "square"])


def test_shipped_split_specs_are_what_the_generator_writes():
    shipped = sorted(SHIPPED.glob("world-split*.yaml"), key=lambda p: int(p.stem.removeprefix("world-split")))
    assert [p.name for p in shipped] == [f"world-split{k}.yaml" for k in range(1, N_SPLITS + 1)]
    for path, spec in zip(shipped, split_specs()):
        assert yaml.safe_load(path.read_text()) == spec
        loaded = BenchmarkSpec.from_yaml(path)
        loaded.validate()
        assert loaded.id_dataset().classnames == spec["id"]["shapes"]


def entry_seeds(spec: dict) -> set[int]:
    return {spec["id"]["seed"], *(e["seed"] for e in spec["ood"].values())}


def test_split_images_never_reuse_the_default_or_validation_seeds():
    used = set()
    for name in ("world-default.yaml", "world-validation.yaml"):
        spec = yaml.safe_load((default_benchmark_path().parent / name).read_text())
        used |= entry_seeds(spec) | {seed + 1000 for seed in entry_seeds(spec)}  # few-shot pools: seed + 1000
    split_seeds = [entry_seeds(spec) for spec in split_specs()]
    assert all(not seeds & used for seeds in split_seeds)
    assert len(set().union(*split_seeds)) == sum(len(s) for s in split_seeds)  # splits share no seed either


def test_more_splits_keep_the_first_ones():
    assert random_class_splits(N_SPLITS)[:5] == random_class_splits(5)  # adding splits never redraws the old ones


def test_splits_command_writes_loadable_specs(tmp_path):
    assert main(["splits", "--out", str(tmp_path), "--n", "2", "--n-id", "4", "--seed", "3"]) == 0
    written = sorted(tmp_path.glob("*.yaml"))
    assert [p.name for p in written] == ["world-split1.yaml", "world-split2.yaml"]
    assert not list(tmp_path.glob("*.tmp*"))
    assert len(BenchmarkSpec.from_yaml(written[0]).id_dataset().classnames) == 4
    assert write_split_specs(tmp_path / "again", n_splits=2, n_id=4, seed=3)[0].read_text() == written[0].read_text()


def test_validation_splits_have_the_same_classes_and_other_images():
    test, validation = split_specs(), split_specs(validation=True)
    assert [s["id"]["shapes"] for s in test] == [s["id"]["shapes"] for s in validation]
    assert not set().union(*map(entry_seeds, test)) & set().union(*map(entry_seeds, validation))
    assert all(s["name"].endswith("-validation") for s in validation)
