"""Tests of `benchmarks/binding_probe.py`: which object is under which token, the probes, the routing
measure, and the tool end to end on a tiny checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clover.data.synthetic import COLORS, MARKER_COLOR, Background, Scene, SceneObject, render_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import binding_probe  # noqa: E402


def _still(shape: str, color: str, x: float, y: float, size: str = "big") -> SceneObject:
    """An object that stays where it is for the whole clip (no actions)."""
    return SceneObject(shape=shape, color=color, size=size, x=x, y=y, angle=90.0, spin=1, step=0.1, steps=[])


def _scene(objects: list[SceneObject]) -> Scene:
    background = Background(color=(60, 60, 60), period=0.2, orientation=30.0, contrast=10.0, checker=False)
    return Scene("probe", 0, "probe", 7, background, objects, occlusion=True)


def test_object_masks_are_the_pixels_each_object_is_seen_at() -> None:
    """The masks cover exactly the pixels where the rendered clip differs from the clip without objects,
    each pixel to one object, the later one where they overlap, each in its own colour (or the marker's)."""
    red, blue = _still("square", "red", 0.4, 0.5), _still("circle", "blue", 0.55, 0.5)  # they overlap
    scene = _scene([red, blue])
    masks = binding_probe.object_masks(scene, 64, 8)  # (2, 8, 64, 64)
    frames = render_clip(scene, 64, 8)
    empty = render_clip(_scene([]), 64, 8)
    assert masks.shape == (2, 8, 64, 64)
    assert np.array_equal(masks.any(0), (frames != empty).any(-1))
    assert not (masks[0] & masks[1]).any()
    assert masks[1, :, 32, 35].all() and not masks[0, :, 32, 35].any()  # the overlap is the circle's: drawn last
    for index, obj in enumerate(scene.objects):
        seen = frames[masks[index]]  # (pixels, 3)
        own = (seen == COLORS[obj.color]).all(-1) | (seen == MARKER_COLOR).all(-1)
        assert own.all() and (seen == COLORS[obj.color]).all(-1).mean() > 0.8


def test_token_cover_and_owners_by_hand() -> None:
    """Two objects, 2 frames of 4x4 pixels, a (1, 2, 2) grid of 2x2-pixel tokens over both frames."""
    masks = np.zeros((2, 2, 4, 4), dtype=bool)
    masks[0, :, 0:2, 0:2] = True  # object 0 fills the top-left token in both frames
    masks[0, 0, 0:2, 2] = True  # ... and a quarter of the top-right one in frame 0: 2 of its 8 pixels
    masks[1, 1, 2:4, 2:4] = True  # object 1 fills the bottom-right token in frame 1 only: 4 of 8
    masks[1, 0, 2, 0] = True  # and 1 of the 8 pixels of the bottom-left token
    cover = binding_probe.token_cover(masks, (1, 2, 2))
    assert cover.tolist() == [[1.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.125, 0.5]]
    assert binding_probe.token_owners(cover, min_cover=0.4, max_other=0.05).tolist() == [0, -1, -1, 1]
    assert binding_probe.token_owners(cover, min_cover=0.1, max_other=0.05).tolist() == [0, 0, 1, 1]
    cover[1, 0] = 0.1  # object 1 now shares the top-left token: too much for max_other
    assert binding_probe.token_owners(cover, min_cover=0.4, max_other=0.05).tolist() == [-1, -1, -1, 1]


def test_attention_preference_by_hand() -> None:
    cover = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])  # (O=3, n=4)
    attention = np.array([[[0.3, 0.2, 0.1, 0.0]]])  # (layers 1, heads 1, n)
    on_named, on_others, named_area, others_area = binding_probe.attention_preference(attention, cover, named=0)
    assert on_named.tolist() == [[pytest.approx(0.3 + 0.1)]] and on_others.tolist() == [[pytest.approx(0.1)]]
    assert (named_area, others_area) == (1.5, 2.0)


def test_routing_totals_pool_mass_and_area_over_questions() -> None:
    """Preference = (mass on the named objects / their area) / (mass on the others / their area), summed
    over questions before dividing; 1 where the attention is spread evenly over the objects' pixels."""
    cover = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])  # object 0: 2 tokens, object 1: 1
    totals = binding_probe.RoutingTotals()
    totals.add(np.array([[[0.2, 0.2, 0.1, 0.5]]]), cover, named=0)  # 0.2 per token on the named square, 0.1 on the other
    assert totals.summary() == {"preference": [[2.0]], "mass_on_objects": [[0.5]]}
    totals.add(np.array([[[0.0, 0.0, 0.4, 0.6]]]), cover, named=1)  # all on the named circle's token
    # named: (0.4 + 0.4) over (2 + 1) tokens; others: (0.1 + 0.0) over (1 + 2)
    assert totals.summary()["preference"] == [[pytest.approx(8.0)]]
    assert totals.summary()["mass_on_objects"] == [[pytest.approx(0.45)]]
    even = binding_probe.RoutingTotals()
    even.add(np.array([[[0.1, 0.1, 0.1, 0.7]]]), cover, named=0)
    assert even.summary()["preference"] == [[1.0]]


def test_fit_probe_separates_what_a_linear_map_can_separate() -> None:
    """Three classes told apart by one of 8 features, offset and scaled far from unit scale: the
    probe standardises inside and returns one linear map of the raw features."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=generator)
    features = torch.randn(300, 8, generator=generator)
    features[:, 3] = 4.0 * labels + 0.3 * features[:, 3]
    features = 100.0 + 50.0 * features
    probe = binding_probe.fit_probe(features[:200], labels[:200], 3, steps=300, seed=0)
    with torch.no_grad():
        assert (probe(features[200:]).argmax(1) == labels[200:]).float().mean() == 1.0


def test_naming_questions_name_each_object_by_the_other_attribute() -> None:
    scene = _scene([_still("star", "red", 0.3, 0.3), _still("circle", "white", 0.7, 0.7)])
    asked = [(q.named, q.kind, q.question, q.answer, q.naming_word) for q in binding_probe.naming_questions(scene)]
    assert asked == [
        (0, "shape", "what shape is the red object ?", "star", "red"),
        (0, "color", "what color is the star ?", "red", "star"),
        (1, "shape", "what shape is the white object ?", "circle", "white"),
        (1, "color", "what color is the circle ?", "white", "circle"),
    ]


def test_binding_probe_runs_end_to_end(tiny_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "binding.json"
    result = binding_probe.main([
        "--model", str(tiny_checkpoint), "--clips", "6", "--test_clips", "4", "--routing_clips", "6",
        "--probe_steps", "20", "--batch_size", "4", "--output", str(output),
    ])  # fmt: skip
    assert json.loads(output.read_text()) == result
    assert list(result["tokens"]) == ["pixels", "video", "fusion 1", "fusion 2"]
    for rows in result["tokens"].values():
        assert rows["all"]["tokens"] == sum(rows[count]["tokens"] for count in ("1", "2", "3")) > 0
        for count in ("1", "2", "3", "all"):
            if rows[count]["tokens"]:
                assert 0 <= rows[count]["both"] <= min(rows[count]["color"], rows[count]["shape"]) <= 100
    for kind in ("shape", "color"):
        routing = result["routing"][kind]
        assert routing["questions"] >= 2  # each object of every clip of two or three
        assert 0 <= routing["accuracy"] <= 100
        for query in ("[CLS]", "naming word"):
            assert np.array(routing[query]["preference"]).shape == (2, 4)  # (fusion layers, heads) of clover-tiny
            assert all(0 < value < 1 for layer in routing[query]["mass_on_objects"] for value in layer)


def test_binding_probe_measures_the_question_guided_pooling(tmp_path: Path) -> None:
    """With qa_pooling="cls+max+query" the routing also scores that pooling's attention (one layer, one
    head); `--clips 0` skips the token probes."""
    from clover import CloverConfig, CloverProcessor
    from clover.modeling_clover import CloverForVideoQA

    config = CloverConfig.from_preset("clover-tiny", qa_heads=["open"], id2label={0: "red", 1: "star"}, qa_pooling="cls+max+query")
    CloverForVideoQA(config).save_pretrained(tmp_path / "model")
    CloverProcessor.from_preset("clover-tiny").save_pretrained(tmp_path / "model")
    result = binding_probe.main(["--model", str(tmp_path / "model"), "--clips", "0", "--test_clips", "0", "--routing_clips", "4"])
    assert result["tokens"] == {}
    for kind in ("shape", "color"):
        pooling = result["routing"][kind]["question pooling"]
        assert np.array(pooling["preference"]).shape == (1, 1) and pooling["preference"][0][0] > 0
        assert 0 < pooling["mass_on_objects"][0][0] < 1


def _colour_shape_checkpoint(directory: Path, qa_pooling: str = "cls+max") -> Path:
    from clover import CloverConfig, CloverProcessor
    from clover.data.synthetic import SHAPES
    from clover.modeling_clover import CloverForVideoQA

    answers = dict(enumerate([*COLORS, *SHAPES]))
    config = CloverConfig.from_preset("clover-tiny", qa_heads=["open"], id2label=answers, qa_pooling=qa_pooling)
    CloverForVideoQA(config).save_pretrained(directory)
    CloverProcessor.from_preset("clover-tiny").save_pretrained(directory)
    return directory


def test_binding_training_trains_on_naming_questions_and_scores_held_out_scenes(tmp_path: Path) -> None:
    """Two questions per object of each scene (its shape by its colour, its colour by its shape),
    scored before training and at every `--eval_every` steps; `--qa_pooling` reaches the model."""
    import binding_training

    model = _colour_shape_checkpoint(tmp_path / "model")
    output = tmp_path / "training.json"
    result = binding_training.main([
        "--model", str(model), "--qa_pooling", "cls+max+query", "--clips", "3", "--test_clips", "2", "--steps", "3",
        "--eval_every", "2", "--batch_size", "4", "--output", str(output),
    ])  # fmt: skip
    assert json.loads(output.read_text()) == result
    assert result["qa_pooling"] == "cls+max+query"
    objects = [len(binding_probe.probe_scene(5, index).objects) for index in range(5)]
    assert result["train_questions"] == 2 * sum(objects[:3]) and result["test_questions"] == 2 * sum(objects[3:])
    assert [point["step"] for point in result["curve"]] == [0, 2, 3]
    expected = {f"{kind}@{count}" for kind in ("color", "shape") for count in set(objects[3:])}
    for point in result["curve"]:
        scores = {key: value for key, value in point.items() if "@" in key}
        assert set(scores) == expected and all(0 <= value <= 100 for value in scores.values())


def test_binding_training_needs_a_head_that_can_name_colours_and_shapes(tiny_checkpoint: Path) -> None:
    import binding_training

    with pytest.raises(SystemExit, match="cannot answer .*: use a model fine-tuned on the synthetic benchmark"):
        binding_training.main(["--model", str(tiny_checkpoint), "--clips", "1", "--test_clips", "1", "--steps", "1"])
