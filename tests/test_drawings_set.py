"""Benchmark entries of type ``drawings``: world v2 scenes of held-out drawings (issue 19's yardstick)."""

import numpy as np
import pytest

from clipos_lab.data import BenchmarkSpec, DataError
from clipos_lab.data.drawings_set import DrawingsDataset, pack_classes
from clipos_lab.data.spec import build_dataset
from clipos_lab.pocket.pack import DrawingsPack


def _pixels(ds, i):
    return np.asarray(ds[i][0])


def test_images_are_pure_functions_of_seed_class_and_index():
    one = DrawingsDataset(classes=["apple", "pear"], n_per_class=3, seed=4)
    again = DrawingsDataset(classes=["apple", "pear"], n_per_class=3, seed=4)
    other_classes = DrawingsDataset(classes=["pear", "book", "apple"], n_per_class=5, seed=4)
    assert all(np.array_equal(_pixels(one, i), _pixels(again, i)) for i in range(len(one)))
    # pear's image 1 is the same whatever else the set holds
    assert np.array_equal(_pixels(one, 4), _pixels(other_classes, 1))
    assert not np.array_equal(_pixels(one, 0), _pixels(DrawingsDataset(classes=["apple"], n_per_class=1,
                                                                       seed=5), 0))


def test_every_image_shows_a_drawing_of_its_class_from_the_asked_split_only():
    pack = DrawingsPack()
    for split in ("val", "eval"):
        ds = DrawingsDataset(classes=["apple", "book"], split=split, n_per_class=12)
        allowed = {r["sprite_sha256"]: r for r in pack.select(split)}
        for i, sample in enumerate(ds.samples):
            drawing = ds._stream(sample)[2]
            assert drawing["sprite_sha256"] in allowed and drawing["split"] == split
            assert drawing["class"] == ds.classnames[sample.label]
        _, scene, masks = ds.render(0)
        assert scene.kind == "object" and masks["objects"].shape == (1, 112, 112) and masks["objects"].max() > 0


def test_superclasses_pick_every_class_under_a_folder_and_unseen_concepts_stay_unseen():
    pack = DrawingsPack()
    fruit = pack_classes("eval", ["food/fruit"])
    assert fruit == sorted(c for c, info in pack.classes.items()
                           if info["superclass"] == "food/fruit" and not info["unseen"])
    food = pack_classes("eval", ["food"])
    assert set(fruit) < set(food)
    unseen = build_dataset({"type": "drawings", "split": "unseen", "superclasses": ["animals/mammals"],
                            "n_per_class": 2})
    assert unseen.classnames == pack.manifest["tree"]["animals"]["animals/mammals"]
    assert all(pack.classes[c]["unseen"] for c in unseen.classnames)


def test_a_drawings_benchmark_spec_validates_with_texture_and_unseen_sets(tmp_path):
    spec = BenchmarkSpec.from_dict({
        "name": "drawings-mini",
        "id": {"type": "drawings", "superclasses": ["food/fruit"], "split": "val", "n_per_class": 2},
        "ood": {"textures": {"type": "drawings", "kind": "background", "n_per_class": 3},
                "unseen": {"type": "drawings", "split": "unseen", "classes": ["cat", "dog"], "n_per_class": 2}}},
        base_dir=tmp_path)
    spec.validate()
    assert len(spec.id_dataset()) == 2 * len(pack_classes("val", ["food/fruit"]))
    assert spec.ood_datasets()["textures"].classnames == ["background"]


@pytest.mark.parametrize("entry, words", [
    ({"type": "drawings", "split": "pretrain", "classes": ["apple"]}, "never the drawings"),
    ({"type": "drawings", "classes": ["apple", "zebra"]}, "['zebra'] have no drawings in split 'eval'"),
    ({"type": "drawings", "classes": ["cat"]}, "no drawings in split 'eval'"),  # an unseen concept asked as eval
    ({"type": "drawings"}, "needs `classes`"),
    ({"type": "drawings", "superclasses": ["nowhere"]}, "no class under superclasses"),
    ({"type": "drawings", "classes": ["apple"], "n_per_class": 0}, "n_per_class=0"),
    ({"type": "drawings", "classes": ["apple"], "colour": "red"}, "unknown keys ['colour']"),
    ({"type": "drawings", "classes": ["apple"], "pack": "missing"}, "no drawings pack"),
])
def test_bad_drawings_entries_say_what_to_do(entry, words, tmp_path):
    with pytest.raises(DataError, match=None) as err:
        build_dataset(entry, base_dir=tmp_path)
    assert words in str(err.value)


def test_shots_of_an_eval_drawings_set_come_from_other_drawings():
    spec = BenchmarkSpec.from_dict({"name": "d", "id": {"type": "drawings", "classes": ["apple", "book"],
                                                        "n_per_class": 4},
                                    "ood": {"t": {"type": "drawings", "kind": "background", "n_per_class": 2}}})
    test, train = spec.id_dataset(), spec.id_train_dataset()
    assert train.classnames == test.classnames and train.split == "val" and test.split == "eval"
    used = lambda ds: {ds._stream(s)[2]["sprite_sha256"] for s in ds.samples}  # noqa: E731
    assert not used(test) & used(train)


def test_shipped_drawings_splits_are_the_seeded_rule_and_honest(tmp_path):
    import yaml

    from clipos_lab.data import default_benchmark_path
    from clipos_lab.pocket.splits2 import drawings_specs, write_drawings_specs

    shipped = default_benchmark_path().parent / "drawings-splits"
    for spec in drawings_specs():
        on_disk = yaml.safe_load((shipped / f"{spec['name']}.yaml").read_text())
        assert on_disk == spec
        near, far = spec["ood"]["near-ood"]["classes"], spec["ood"]["far-ood"]["classes"]
        ids = spec["id"]["classes"]
        assert not set(ids) & set(near) | set(ids) & set(far) and spec["id"]["split"] == "eval"
    pack = DrawingsPack()
    top = lambda c: pack.classes[c]["superclass"].split("/")[0]  # noqa: E731
    default = drawings_specs()[0]
    assert {top(c) for c in default["ood"]["near-ood"]["classes"]} <= {top(c) for c in default["id"]["classes"]}
    assert not {top(c) for c in default["ood"]["far-ood"]["classes"]} & {top(c) for c in default["id"]["classes"]}
    assert len({tuple(s["id"]["classes"]) for s in drawings_specs()}) == 10
    written = write_drawings_specs(tmp_path, n_splits=2, validation=True)
    assert [p.name for p in written] == ["drawings-default-validation.yaml", "drawings-split1-validation.yaml"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_drawings_specs(tmp_path, n_splits=2, validation=True)


def test_splits_command_writes_drawings_specs_and_refuses_options_of_the_other_world(tmp_path, capsys):
    from clipos_lab import cli

    assert cli.main(["splits", "--world", "2", "--validation", "--n", "2", "--out", str(tmp_path / "v")]) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["drawings-default-validation.yaml",
                                                                  "drawings-split1-validation.yaml"]
    assert cli.main(["splits", "--world", "2", "--seed", "3", "--out", str(tmp_path / "s")]) == 2
    assert "--seed and --n-id are for --world 1" in capsys.readouterr().err
    assert cli.main(["splits", "--validation", "--out", str(tmp_path / "w")]) == 2
    assert "--validation is for --world 2" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "w").exists()
