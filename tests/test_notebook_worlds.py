"""Notebook defaults follow the model's world (pocket v2: the drawings; v1 and other models: the shapes), and the
relevance notebooks find where a drawing is (world v2's exact masks), so maps over drawings have ground truth."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from clipos_lab import viz
from clipos_lab.data import BenchmarkSpec, DataError, WorldDataset
from clipos_lab.data.drawings_set import DrawingsDataset
from clipos_lab.notebook import draws_view, widgets, worlds
from clipos_lab.notebook import setup as notebook
from clipos_lab.resources import BENCHMARKS
from clipos_lab.viz.analysis import patch_region_cover
from clipos_lab.viz.diagnosis import object_regions

V2 = SimpleNamespace(name="pocket2-vit")  # what Backbone.load("pocket2") is named (its config's stem)
V1 = SimpleNamespace(name="pocket-vit")
CLIP = SimpleNamespace(name="ViT-B-16")


def test_default_specs_follow_the_models_world():
    assert [worlds.world_of(b) for b in (V2, V1, CLIP, None)] == [2, 1, 1, 1]
    assert notebook.benchmark_spec("default", V2).name == "drawings-default"
    assert notebook.benchmark_spec("", V2).name == "drawings-default"
    assert {notebook.benchmark_spec("default", b).name for b in (V1, CLIP, None)} == {"world-default"}
    named = notebook.benchmark_spec("assets/benchmarks/world-splits/world-split2.yaml", V2)  # a path always wins
    assert named.name == "world-split2"


def test_resize_world_shrinks_drawings_entries_too():
    spec = notebook.benchmark_spec("default", V2)
    small = notebook.resize_world(spec, id_per_class=3, ood_per_set=12)
    assert np.bincount(small.id_dataset().labels).tolist() == [3] * 14
    assert np.bincount(small.id_train_dataset().labels).tolist() == [3] * 14  # the few-shot pool follows the ID set
    ood = small.ood_datasets()
    assert len(ood["textures"]) == 12  # a background set: 12 images
    for name in ("near-ood", "far-ood", "unseen"):  # more classes than images: one each
        assert len(ood[name]) == len(spec.ood[name]["classes"])
    assert len(spec.id_dataset()) == 14 * 20  # the original is untouched
    by_folder = BenchmarkSpec.from_dict({
        "name": "fruit", "id": {"type": "drawings", "classes": ["apple"], "n_per_class": 5},
        "ood": {"food": {"type": "drawings", "superclasses": ["food"], "n_per_class": 5}}})
    n_food = len(by_folder.ood_datasets()["food"].classnames)
    assert len(notebook.resize_world(by_folder, ood_per_set=2 * n_food).ood_datasets()["food"]) == 2 * n_food


def test_the_compared_draws_are_v1s_on_v1_and_chosen_by_rule_on_v2():
    spec, seeds, why = worlds.compare_draws_setup("default", "default", V1)
    assert (spec.name, seeds) == ("world-split1-validation", [119, 118]) and "validation" in why
    spec, seeds, why = worlds.compare_draws_setup("default", "default", V2)
    assert (spec.name, seeds) == ("drawings-split1-validation", [1, 2]) and "not chosen by any result" in why
    # the validation version of drawings split 1: its val drawings, never the eval drawings the test split shows
    test_split = BenchmarkSpec.from_yaml(BENCHMARKS / "drawings-splits" / "drawings-split1.yaml")
    assert spec.id["classes"] == test_split.id["classes"] and spec.id["split"] == "val"
    assert all(e.get("split", "val") in ("val", "unseen") for e in spec.ood.values())
    assert worlds.compare_draws_setup("default", "3,4", V2)[1] == [3, 4]
    with pytest.raises(ValueError, match="no validation benchmark"):
        draws_view.validation_spec("drawings-split1")  # a test split is refused


def test_the_anomaly_spec_and_product_follow_the_model(tmp_path):
    spec, product = worlds.anomaly_spec("default", V2)
    assert (spec.name, product, spec.data["products"]) == ("drawings-anomaly", "star", ["star"])
    spec, product = worlds.anomaly_spec("", V1, n_good=3)
    assert (spec.name, product, spec.data["n_good"]) == ("world-anomaly", "star", 3)
    assert worlds.anomaly_spec("drawings-anomaly-validation", V1, "hat")[1] == "hat"  # a named spec wins
    own = tmp_path / "two.yaml"
    own.write_text("name: two\ndata: {type: world, products: [circle, square], defects: [stain]}\n")
    assert worlds.anomaly_spec(str(own), V2)[1] == "circle"  # no star: the first product
    with pytest.raises(DataError, match="circle, square"):
        worlds.anomaly_spec(str(own), V2, "star")


def test_drawings_know_where_their_object_is_exactly():
    ds = DrawingsDataset(classes=["apple", "book"], split="val", n_per_class=2, seed=3)
    region, box = ds.object_region(0), widgets.object_box(ds, 0)
    assert region.shape == (112, 112) and 0.0 <= region.min() and region.max() <= 1.0 + 1e-6
    ys, xs = np.nonzero(region > 0.5)
    assert box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # the figures' box frames the same pixels
    assert len(widgets.object_regions(ds)) == len(widgets.object_boxes(ds)) == 4
    assert DrawingsDataset("background", n_per_class=1).object_region(0) is None
    assert widgets.object_box(DrawingsDataset("background", n_per_class=1), 0) is None
    v1 = WorldDataset("object", shapes=["circle"], n_per_class=1, seed=3)
    assert v1.object_region(0) == v1.scene(0).objects[0].box  # v1 keeps its boxes
    # a relevance mask exactly on the drawing's patches lands on the object; its complement never does
    on = torch.from_numpy(patch_region_cover((14, 14), 112, region))[None]
    assert viz.mask_localisation(on, [region], (14, 14), 112)["mask_in_box"] == 1.0
    assert viz.mask_localisation(~on, [region], (14, 14), 112)["mask_in_box"] == 0.0
    assert object_regions(ds.subset([1, 0]), [ds.samples[1].id])[0].shape == (112, 112)  # the diagnosis finds it


def test_a_patch_is_on_the_object_when_the_mask_covers_half_of_it():
    mask = np.zeros((16, 16), dtype=np.float32)
    mask[:8, :8] = 1.0  # the top-left patch, whole
    mask[:8, 8:11] = 1.0  # 3 / 8 of the top-right patch
    mask[8:, :8] = 0.5  # the bottom-left patch at half coverage (antialiased edge)
    assert patch_region_cover((2, 2), 16, mask).tolist() == [True, False, True, False]
    rows = torch.tensor([[True, True, False, False]])
    assert viz.mask_localisation(rows, [mask], (2, 2), 16) == {"mask_in_box": 0.5, "chance_in_box": 0.5,
                                                                "n_images": 1}
    # a hairline drawing covering no patch by half is no ground truth: skipped, not counted as a miss
    thin = np.zeros((16, 16), dtype=np.float32)
    thin[3, :] = 1.0
    assert viz.mask_localisation(rows, [thin], (2, 2), 16)["n_images"] == 0
    assert np.isnan(viz.analysis.localisation_per_image(rows, [thin], (2, 2), 16)[0])


def test_class_examples_start_every_set_on_a_new_row():
    a = WorldDataset("object", shapes=["circle", "square", "star"], n_per_class=2, seed=1)
    b = WorldDataset("object", shapes=["ring", "arrow"], n_per_class=3, seed=2)
    images, titles, ncols = notebook.class_examples({"ID": a, "OOD": b}, max_cols=2)
    assert ncols == 2
    assert titles == ["ID: circle", "ID: square", "ID: star", "", "OOD: ring", "OOD: arrow"]
    assert images[3] is None and np.array_equal(np.asarray(images[4]), np.asarray(b.load(0)))
    assert np.array_equal(np.asarray(images[5]), np.asarray(b.load(3)))  # the first image of the second class
    fig = viz.image_grid(images, titles, ncols=ncols)
    assert not fig.axes[3].axison and fig.axes[4].axison  # the gap is an empty cell
    assert notebook.class_examples({"ID": a, "OOD": b})[2] == 3  # up to max_cols: every class of a set in a row


def test_no_tower_only_when_clipn_is_asked_for():
    nothing = SimpleNamespace(name="pocket2-vit", no_text=None)
    assert notebook.no_tower(nothing, methods="MCM, CoOp") is None and nothing.no_text is None
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        notebook.no_tower(nothing, "nowhere.safetensors")
