import math

import pytest

from progresscast import InvalidPayload, Stage, normalize_stages, overall_progress
from progresscast.stages import MAX_STAGES, stage_index

from .fakes import DOC_STAGES


def names(stages):
    return [s.name for s in stages]


def weights(stages):
    return [s.weight for s in stages]


# ------------------------------------------------------------------ accepted forms


def test_names_get_equal_weights():
    stages = normalize_stages(["a", "b", "c", "d"])
    assert names(stages) == ["a", "b", "c", "d"]
    assert weights(stages) == [0.25] * 4
    assert all(isinstance(s, Stage) for s in stages)


def test_pairs_are_normalised_to_sum_one():
    stages = normalize_stages([("read", 1), ("write", 3)])
    assert names(stages) == ["read", "write"]
    assert weights(stages) == [0.25, 0.75]


def test_dicts_with_and_without_weight():
    stages = normalize_stages(
        [{"name": "a", "weight": 2}, {"name": "b"}, {"name": "c", "weight": 1}]
    )
    assert names(stages) == ["a", "b", "c"]
    assert weights(stages) == [0.5, 0.25, 0.25]


def test_mapping_keeps_order():
    stages = normalize_stages({"z": 1, "a": 1, "m": 2})
    assert names(stages) == ["z", "a", "m"]
    assert weights(stages) == [0.25, 0.25, 0.5]


def test_stage_objects_and_mixed_forms():
    stages = normalize_stages([Stage("a", 0.5), "b", ("c", 1.5), {"name": "d", "weight": 1}])
    assert names(stages) == ["a", "b", "c", "d"]
    assert weights(stages) == pytest.approx([0.125, 0.25, 0.375, 0.25])


def test_any_iterable_is_accepted():
    stages = normalize_stages(name for name in ("x", "y"))
    assert names(stages) == ["x", "y"]


@pytest.mark.parametrize(
    "specs",
    [
        DOC_STAGES,
        {"a": 1e-9, "b": 3e-9, "c": 7},
        [("p", 0.1), ("q", 0.2), ("r", 0.3), ("s", 0.4), ("t", 1e6)],
        [f"s{i}" for i in range(MAX_STAGES)],
    ],
)
def test_weights_sum_to_one_and_keep_proportions(specs):
    stages = normalize_stages(specs)
    raw = dict(specs) if isinstance(specs, dict) else None
    assert math.fsum(weights(stages)) == pytest.approx(1.0, abs=1e-12)
    assert all(w > 0 for w in weights(stages))
    if raw:
        total = math.fsum(raw.values())
        for s in stages:
            assert s.weight == pytest.approx(raw[s.name] / total)


def test_design_default_example_keeps_its_weights():
    stages = normalize_stages(DOC_STAGES)
    assert {s.name: s.weight for s in stages} == pytest.approx(DOC_STAGES)


def test_exactly_max_stages_is_allowed():
    assert len(normalize_stages([f"s{i}" for i in range(MAX_STAGES)])) == MAX_STAGES


def test_to_dict():
    assert normalize_stages(["a"])[0].to_dict() == {"name": "a", "weight": 1.0}


# ------------------------------------------------------------------ rejected input


def bad(specs):
    with pytest.raises(InvalidPayload) as info:
        normalize_stages(specs)
    err = info.value
    assert err.code == "invalid_payload"
    assert err.details and "stages" in err.details
    assert err.to_dict()["details"] == err.details
    return err


def test_empty_list():
    assert bad([]).details == {"stages": ["empty"]}


def test_empty_mapping():
    bad({})


def test_duplicate_names():
    err = bad(["a", "b", "a"])
    assert err.details == {"stages": {"2": ["duplicate stage name 'a'"]}}


@pytest.mark.parametrize("name", ["", "   ", None, 7])
def test_empty_or_non_string_name(name):
    err = bad([("ok", 1), (name, 1)])
    assert list(err.details["stages"]) == ["1"]


def test_name_too_long():
    bad(["x" * 101])


def test_dict_without_name():
    err = bad([{"weight": 1}])
    assert err.details == {"stages": {"0": ["missing 'name'"]}}


@pytest.mark.parametrize("spec", [("a", 1, 2), ["a", 1], 3, None])
def test_unsupported_form(spec):
    err = bad([spec])
    assert err.details == {"stages": {"0": ["unsupported stage form"]}}


@pytest.mark.parametrize(
    "weight", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "1", None]
)
def test_invalid_weight(weight):
    err = bad([("a", 1), ("b", weight)])
    (problem,) = err.details["stages"]["1"]
    assert "weight" in problem


@pytest.mark.parametrize("weight", [0, math.nan, True, "2"])
def test_invalid_weight_in_mapping_form(weight):
    bad({"a": 1, "b": weight})


def test_more_than_max_stages():
    err = bad([f"s{i}" for i in range(MAX_STAGES + 1)])
    assert err.details == {"stages": [f"more than {MAX_STAGES} stages"]}


def test_stage_index():
    stages = normalize_stages(DOC_STAGES)
    assert stage_index(stages, "integrating") == 2
    with pytest.raises(InvalidPayload) as info:
        stage_index(stages, "printing")
    assert info.value.details == {"stage": ["unknown stage 'printing'"]}


# ------------------------------------------------------------------ overall progress


@pytest.fixture
def doc():
    return normalize_stages(DOC_STAGES)


@pytest.mark.parametrize(
    ("index", "fraction", "expected"),
    [
        (0, 0.0, 0.0),
        (0, 0.5, 7.5),
        (0, 1.0, 15.0),
        (1, 0.0, 15.0),
        (1, 0.5, 45.0),
        (1, 0.25, 30.0),
        (2, 0.5, 85.0),
        (3, 0.0, 95.0),
        (3, 0.5, 97.5),
        (3, 1.0, 100.0),
    ],
)
def test_overall_is_the_weighted_sum(doc, index, fraction, expected):
    assert overall_progress(doc, index, fraction) == pytest.approx(expected, abs=1e-9)


def test_half_of_analyzing_is_45(doc):
    assert overall_progress(doc, 1, 0.5) == 45.0


@pytest.mark.parametrize(
    ("fraction", "clamped"), [(-0.5, 0.0), (-1e9, 0.0), (1.5, 1.0), (1e9, 1.0)]
)
def test_fraction_is_clamped(doc, fraction, clamped):
    assert overall_progress(doc, 1, fraction) == overall_progress(doc, 1, clamped)


def test_index_none_means_all_done(doc):
    assert overall_progress(doc, None, 0.0) == 100.0
    assert overall_progress(doc, None, 0.3) == 100.0


def test_result_stays_within_0_and_100():
    stages = normalize_stages([f"s{i}" for i in range(7)])
    values = [overall_progress(stages, i, f / 10) for i in range(7) for f in range(11)]
    assert all(0.0 <= v <= 100.0 for v in values)
    assert values == sorted(values)  # monotone in (index, fraction)
    assert overall_progress(stages, 6, 1.0) == 100.0
