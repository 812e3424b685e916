from clipos_lab.pocket.splits import random_class_splits, split_specs, validation_suite


def test_validation_suite_never_reads_test_images_and_fresh_splits_are_new():
    suite = validation_suite(n_fresh=2)
    shipped = {tuple(ids) for ids, _ in random_class_splits()}
    test_seeds = {s["id"]["seed"] for s in split_specs()}  # the shipped test splits' image seeds
    assert [s["name"] for s in suite[:10]] == [f"world-split{k}-validation" for k in range(1, 11)]
    assert [s["name"] for s in suite[10:]] == ["fresh2026-split1-validation", "fresh2026-split2-validation"]
    assert not {s["id"]["seed"] for s in suite} & test_seeds
    assert all(tuple(s["id"]["shapes"]) not in shipped for s in suite[10:])
    assert validation_suite(n_fresh=2) == suite  # seeded: the same suite every time
