"""Question grounding (`clover.grounding`): the boxes the synthetic benchmark writes, their tokens, the
loss, and `train_qa --grounding_weight` end to end on generated clips."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from clover.data import synthetic
from clover.data.annotations import load_annotations
from clover.data.datasets import VideoQADataset
from clover.grounding import (
    GROUNDING_FILE,
    GroundingError,
    asked_segments,
    attach_grounding,
    boxes_in_crop,
    grounding_loss,
    load_grounding,
    only_segments,
    target_shares,
    token_mask,
)
from clover.processing_clover import CloverProcessor
from finetune import train_qa

NAN = float("nan")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train, 2 val and 2 test clips at 112 px, 8 frames."""
    out = tmp_path_factory.mktemp("bench")
    synthetic.generate_benchmark(out, seed=4, train_clips=8, val_clips=2, test_clips=2, size=112, num_frames=8, fps=8, progress=False)
    return out


def _still_object(**changes: object) -> synthetic.SceneObject:
    obj = synthetic.SceneObject(shape="square", color="red", size="big", x=0.5, y=0.5, angle=0.0, spin=1, step=0.1)
    for name, value in changes.items():
        setattr(obj, name, value)
    return obj


# --------------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------------


def test_segment_boxes_hold_the_object_and_follow_jump_and_blink() -> None:
    reach = synthetic.SHAPE_EXTENT * synthetic.SIZES["big"]  # 1.05 * 0.12
    still = synthetic.segment_boxes(_still_object(steps=[synthetic.ActionStep(synthetic.STILL, 1, 0, 8)]))
    assert still == [[round(0.5 - reach, 4), round(0.5 - reach, 4), round(0.5 + reach, 4), round(0.5 + reach, 4)]] * 8

    jumps = synthetic.segment_boxes(_still_object(steps=[synthetic.ActionStep("jump", 4, 0, 8)]))
    up, down = jumps[0], jumps[1]  # one repetition: a segment up, a segment back
    assert up[1] == pytest.approx(down[1] - synthetic.JUMP_HEIGHT, abs=1e-4) and up[0] == down[0]

    blinks = synthetic.segment_boxes(_still_object(steps=[synthetic.ActionStep("blink", 2, 0, 4), synthetic.ActionStep(synthetic.STILL, 1, 4, 4)]))
    assert [box is None for box in blinks] == [True, False, True, False, False, False, False, False]

    moves = synthetic.segment_boxes(_still_object(steps=[synthetic.ActionStep("move right", 1, 0, 8)]))
    assert moves[0][0] == pytest.approx(0.5 - reach, abs=1e-4)  # the first segment starts where the object starts
    assert moves[0][2] == pytest.approx(0.5 + 0.1 / 8 + reach, abs=1e-4)  # and ends an eighth of the move on
    assert moves[7][2] == pytest.approx(0.6 + reach, abs=1e-4)


def test_boxes_in_crop_move_with_the_crop_and_map_frames_to_segments() -> None:
    segments = [[0.25, 0.25, 0.5, 0.5]] + [None] * 3 + [[0.5, 0.5, 0.75, 0.75]] * 4
    boxes = boxes_in_crop(segments, num_segments=8, num_frames=4, crop=(0.25, 0.25, 0.75, 0.75))  # frame i: segment 2i
    assert boxes[0].tolist() == [0.0, 0.0, 0.5, 0.5]
    assert torch.isnan(boxes[1]).all()  # segment 2: blinked off
    assert boxes[2].tolist() == boxes[3].tolist() == [0.5, 0.5, 1.0, 1.0]


# --------------------------------------------------------------------------------------------------
# Tokens and the loss
# --------------------------------------------------------------------------------------------------


def test_token_mask_by_hand() -> None:
    cell = 1 / 7
    boxes = torch.full((3, 8, 4), NAN)
    boxes[0, 2] = torch.tensor([2 * cell, 1 * cell, 3 * cell, 2 * cell])  # exactly cell (row 1, col 2) in frame 2 -> slot 1
    boxes[1, :] = torch.tensor([0.0, 0.0, 1.3 * cell, 1.2 * cell])  # covers cell (0, 0); 30 % and 20 % of its neighbours
    mask = token_mask(boxes, (4, 7, 7)).view(3, 4, 7, 7)
    assert mask[0].nonzero().tolist() == [[1, 1, 2]]
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[0, 0] = expected[0, 1] = True  # (0, 1) is 30 % covered, (1, 0) 20 % (below MIN_CELL_COVER)
    assert all(torch.equal(mask[1, slot], expected) for slot in range(4))
    assert not mask[2].any()  # no box in any frame: no target


def test_token_mask_keeps_the_most_covered_cell_of_a_small_box() -> None:
    cell = 1 / 7
    boxes = torch.full((1, 8, 4), NAN)
    boxes[0, 0] = torch.tensor([3.6 * cell, 3.5 * cell, 4.2 * cell, 4.1 * cell])  # 40 % x 50 % of cell (3, 3), less elsewhere
    mask = token_mask(boxes, (4, 7, 7)).view(4, 7, 7)
    assert mask.nonzero().tolist() == [[0, 3, 3]]


def test_grounding_loss_is_minus_log_the_attention_on_the_object() -> None:
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]], requires_grad=True)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False], [False, False, False, False]])
    loss = grounding_loss(attention, mask)
    assert loss.item() == pytest.approx((-math.log(0.5) - math.log(0.25)) / 2)  # the third row has no target
    loss.backward()
    assert attention.grad[2].abs().sum() == 0 and attention.grad[0, 0] < 0
    none = grounding_loss(attention, torch.zeros_like(mask))
    assert none.item() == 0.0 and none.requires_grad


def test_grounding_loss_with_a_target_share_asks_for_that_share_and_no_more() -> None:
    """-log(min(mass / s, 1)): by hand for masses 0.5 and 0.25 at s = 0.4 (the first row is past it);
    no gradient on a row past the target, the usual pull on one short of it."""
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], requires_grad=True)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    loss = grounding_loss(attention, mask, target_share=0.4)
    assert loss.item() == pytest.approx((0.0 + math.log(0.4 / 0.25)) / 2)
    loss.backward()
    assert attention.grad[0].abs().sum() == 0 and attention.grad[1, 1] < 0
    assert grounding_loss(attention, mask, target_share=1.0).item() == pytest.approx(grounding_loss(attention, mask).item())


def test_grounding_loss_with_a_share_per_question_by_its_clips_objects() -> None:
    """A (B,) target share: each row its own -log(min(mass / s, 1)), by hand; the shares come from the
    clips' object counts (0: the question names none, and its row has no target)."""
    shares = target_shares(torch.tensor([1, 3, 0, 2]), one=0.4, several=1.0)
    assert shares.tolist() == pytest.approx([0.4, 1.0, 0.4, 1.0])
    attention = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    mask = torch.tensor([[True, False, False], [False, True, False], [False, False, False], [False, False, True]])
    loss = grounding_loss(attention, mask, shares)
    assert loss.item() == pytest.approx((0.0 - math.log(0.25) - math.log(0.5)) / 3)  # the first row past 0.4; the third has no target
    same = grounding_loss(attention, mask, torch.full((4,), 0.4))
    assert same.item() == pytest.approx(grounding_loss(attention, mask, target_share=0.4).item())


# --------------------------------------------------------------------------------------------------
# The files the generator writes
# --------------------------------------------------------------------------------------------------


def _scenes(bench: Path) -> dict[str, dict]:
    return json.loads((bench / "scenes.json").read_text())


def test_grounding_names_the_object_each_question_is_about(bench: Path) -> None:
    """Every FrameQA and MSVD-style question that names an object by colour or shape is grounded on that
    object; "how many objects ?" on none."""
    scenes = _scenes(bench)
    checked = 0
    for task, folder, prefix in (("tgif-frameqa", "tgif", ""), ("msvd-qa", "msvd", "YouTubeClips/")):
        grounding = load_grounding(bench / folder)
        records = load_annotations(task, bench / folder, split="train")
        attached = attach_grounding(records, grounding, task)
        assert attached == sum("grounding" in record for record in records) > 0
        for record in records:
            scene = scenes[Path(record["video"]).name.split("_")[0].removesuffix(".gif")]
            words = record["question"].split()
            if "how many objects" in record["question"]:
                assert "grounding" not in record
                continue
            index = grounding["questions"][task][record["id"]]
            obj = scene["objects"][index]
            named = {word for word in words if word in synthetic.COLORS or word in synthetic.SHAPES}
            if named:
                assert named <= {obj["color"], obj["shape"]}, (record["question"], obj)
                checked += 1
            assert record["grounding"] == synthetic.segment_boxes(synthetic.SceneObject(**{
                **obj, "steps": [synthetic.ActionStep(**step) for step in obj["steps"]]
            }))
    assert checked > 10


def test_every_motion_question_is_grounded(bench: Path) -> None:
    grounding = load_grounding(bench / "tgif")
    for task in ("tgif-action", "tgif-transition", "tgif-count"):
        records = load_annotations(task, bench / "tgif", split="train")
        assert attach_grounding(records, grounding, task) == len(records) > 0


_ACTION = re.compile(r" do (?:(once)|(\d+) times) \?$")
_TRANSITION = re.compile(r" do (after|before) (.+) \?$")
_COUNT = re.compile(r" (\w+) \?$")


def _asked_steps(task: str, question: str, answer: str | int, steps: list[dict]) -> list[dict]:
    """The oracle for `asked_segments`, independent of the generator's code: the named object's steps
    (scenes.json dicts: action, reps, start, length) that `question` asks about, read off its text;
    `answer` is the right candidate's text (Action, Transition) or the count. Empty for a count of 0.
    Raises ValueError for a question the generator does not write."""
    if task == "tgif-action":
        match = _ACTION.search(question)
        if match is None:
            raise ValueError(f"not an Action question of the synthetic benchmark: {question!r}")
        reps = 1 if match.group(1) else int(match.group(2))
        found = [step for step in steps if step["action"] == answer and step["reps"] == reps]
    elif task == "tgif-transition":
        match = _TRANSITION.search(question)
        if match is None:
            raise ValueError(f"not a Transition question of the synthetic benchmark: {question!r}")
        direction, anchor = match.groups()
        names = [step["action"] for step in steps]
        if names.count(anchor) != 1:
            raise ValueError(f"{question!r}: the object does {anchor!r} {names.count(anchor)} times in {names}; expected once")
        index = names.index(anchor) + (1 if direction == "after" else -1)
        found = [steps[index]] if 0 <= index < len(steps) and names[index] == answer else []
    else:
        match = _COUNT.search(question)
        if match is None:
            raise ValueError(f"not a Count question of the synthetic benchmark: {question!r}")
        found = [step for step in steps if step["action"] == match.group(1)]
    if task != "tgif-count" and len(found) != 1:
        raise ValueError(f"{question!r} (answer {answer!r}) matches {len(found)} steps of {steps}; expected one")
    return found


def _segments_of(steps: list[dict]) -> list[int]:
    return sorted({segment for step in steps for segment in range(step["start"], step["start"] + step["length"])})


def test_the_asked_steps_oracle_by_hand() -> None:
    """The oracle the next test checks the generator against, on a timeline written by hand."""
    steps = [
        {"action": "move left", "reps": 2, "start": 0, "length": 2}, {"action": "blink", "reps": 3, "start": 2, "length": 3},
        {"action": "move left", "reps": 1, "start": 5, "length": 1}, {"action": "stay still", "reps": 1, "start": 6, "length": 2},
    ]  # fmt: skip
    assert _asked_steps("tgif-action", "What does the red circle do once ?", "move left", steps) == [steps[2]]
    assert _asked_steps("tgif-action", "What does the red circle do 2 times ?", "move left", steps) == [steps[0]]
    assert _asked_steps("tgif-transition", "What does the red circle do after blink ?", "move left", steps) == [steps[2]]
    assert _asked_steps("tgif-transition", "What does the red circle do before blink ?", "move left", steps) == [steps[0]]
    blinks = _asked_steps("tgif-count", "How many times does the red circle blink ?", 3, steps)
    assert blinks == [steps[1]] and _segments_of(blinks) == [2, 3, 4]
    assert _asked_steps("tgif-count", "How many times does the red circle jump ?", 0, steps) == []
    assert _segments_of([steps[0], steps[2]]) == [0, 1, 5]
    with pytest.raises(ValueError, match="matches 0 steps"):
        _asked_steps("tgif-action", "What does the red circle do 4 times ?", "blink", steps)
    with pytest.raises(ValueError, match="does 'jump' 0 times"):
        _asked_steps("tgif-transition", "What does the red circle do after jump ?", "blink", steps)
    with pytest.raises(ValueError, match="not a Transition question"):
        _asked_steps("tgif-transition", "What is the red circle ?", "blink", steps)


def test_asked_segments_are_the_steps_each_motion_question_asks_about(bench: Path) -> None:
    """grounding.json's `asked_segments`, from the generator, agree with the steps the oracle reads off
    each question and scenes.json (the step done k times, the step after or before the anchor, the
    counted action's steps); a count of 0 has none, and FrameQA none at all."""
    scenes = _scenes(bench)
    grounding = load_grounding(bench / "tgif")
    assert asked_segments(grounding, "tgif-frameqa") == {}
    checked = 0
    for task in ("tgif-action", "tgif-transition", "tgif-count"):
        for record in load_annotations(task, bench / "tgif", split="train") + load_annotations(task, bench / "tgif", split="test"):
            obj = scenes[Path(record["video"]).stem]["objects"][grounding["questions"][task][record["id"]]]
            answer = record["candidates"][record["answer"]] if "candidates" in record else record["answer"]
            expected = _segments_of(_asked_steps(task, record["question"], answer, obj["steps"]))
            assert asked_segments(grounding, task).get(record["id"], []) == expected, (task, record)
            checked += bool(expected) and len(expected) < synthetic.NUM_SEGMENTS
    assert checked > 10  # many steps are shorter than the clip


def test_only_segments_by_hand() -> None:
    boxes = [[0.1, 0.1, 0.2, 0.2], None, [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.6, 0.6]]
    assert only_segments(boxes, [1, 2]) == [None, None, [0.3, 0.3, 0.4, 0.4], None]
    assert only_segments(boxes, range(4)) == boxes


def test_asked_step_only_keeps_the_boxes_of_the_step_asked_about(bench: Path) -> None:
    """`asked_step_only`: each motion question keeps its object's boxes in the segments of the step it
    asks about, None elsewhere; a count of 0 and FrameQA keep every segment's. A file without
    `asked_segments` (an older generator's) is refused with what to do."""
    grounding = load_grounding(bench / "tgif")
    for task in ("tgif-action", "tgif-count", "tgif-frameqa"):
        whole = load_annotations(task, bench / "tgif", split="train")
        step = [dict(record) for record in whole]
        attach_grounding(whole, grounding, task)
        assert attach_grounding(step, grounding, task, asked_step_only=True) == sum("grounding" in r for r in whole) > 0
        asked = grounding["asked_segments"].get(task, {})
        for full, narrowed in zip(whole, step):
            if "grounding" not in full:  # "how many objects ?" names none
                assert "grounding" not in narrowed
                continue
            segments = asked.get(full["id"], range(synthetic.NUM_SEGMENTS))
            assert narrowed["grounding"] == [box if i in segments else None for i, box in enumerate(full["grounding"])]
    older = {key: value for key, value in grounding.items() if key != "asked_segments"}
    records = load_annotations("tgif-action", bench / "tgif", split="train")
    assert attach_grounding(records, older, "tgif-action") == len(records)  # the term over the whole clip needs none
    with pytest.raises(GroundingError, match="no asked_segments.*regenerate the benchmark"):
        attach_grounding(records, older, "tgif-action", asked_step_only=True)


def test_min_objects_leaves_out_the_clips_of_fewer_objects(bench: Path) -> None:
    """`min_objects=2` grounds the questions about clips of two or three objects, as scenes.json counts
    them, and leaves the one-object clips' questions as they are."""
    grounding, scenes = load_grounding(bench / "tgif"), _scenes(bench)
    records = load_annotations("tgif-action", bench / "tgif", split="train")
    several = [len(scenes[Path(record["video"]).stem]["objects"]) >= 2 for record in records]
    assert 0 < sum(several) < len(records)  # the fixture has clips of each kind
    assert attach_grounding(records, grounding, "tgif-action", min_objects=2) == sum(several)
    assert ["grounding" in record for record in records] == several
    assert all(record["grounding_objects"] >= 2 for record in records if "grounding" in record)


def test_the_clips_number_of_objects_reaches_the_batch(bench: Path) -> None:
    """`grounding_objects`, as scenes.json counts them, from the record through the dataset to the
    collated batch (0 for a question that names no object)."""
    grounding, scenes = load_grounding(bench / "tgif"), _scenes(bench)
    records = load_annotations("tgif-action", bench / "tgif", split="train")
    attach_grounding(records, grounding, "tgif-action")
    counts = [len(scenes[Path(record["video"]).stem]["objects"]) for record in records]
    assert [record["grounding_objects"] for record in records] == counts and len(set(counts)) > 1
    records[0] = {key: value for key, value in records[0].items() if not key.startswith("grounding")}
    processor = CloverProcessor.from_preset("clover-tiny")
    dataset = VideoQADataset(records, bench / "tgif" / "gifs", processor, kind="mc")
    batch = processor.collate([dataset[i] for i in range(len(records))])
    assert batch["grounding_objects"].tolist() == [0] + counts[1:]
    assert batch["grounding_boxes"][0].isnan().all() and not batch["grounding_boxes"][1:].isnan().all()


def test_a_missing_or_foreign_grounding_file_is_refused_with_what_to_do(bench: Path, tmp_path: Path) -> None:
    with pytest.raises(GroundingError, match="no grounding file.*regenerate the benchmark"):
        load_grounding(tmp_path)
    (tmp_path / GROUNDING_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GroundingError, match="format 'something-else'"):
        load_grounding(tmp_path)
    grounding = load_grounding(bench / "tgif")
    records = [{"id": next(iter(grounding["questions"]["tgif-count"])), "video": "elsewhere.gif"}]
    with pytest.raises(GroundingError, match="other annotations"):
        attach_grounding(records, grounding, "tgif-count")


def test_dataset_boxes_cover_the_named_objects_pixels_through_the_random_crop(bench: Path) -> None:
    """The pixels of the named colour in the training crops the model sees fall in the target tokens
    (crops of a third to a half of the frame, so that boxes not moved with the crop would miss)."""
    processor = CloverProcessor.from_preset("clover-tiny")
    processor.train_crop_scale = (0.3, 0.5)
    records = load_annotations("tgif-count", bench / "tgif", split="train")
    attach_grounding(records, load_grounding(bench / "tgif"), "tgif-count")
    dataset = VideoQADataset(records, bench / "tgif" / "gifs", processor, kind="count", training=True, seed=0)
    scenes = _scenes(bench)
    mean, std = torch.tensor(processor.image_mean).view(3, 1, 1), torch.tensor(processor.image_std).view(3, 1, 1)
    inside = total = 0
    for index, record in enumerate(records):
        item = dataset[index]
        obj = scenes[record["video"].removesuffix(".gif")]["objects"][load_grounding(bench / "tgif")["questions"]["tgif-count"][record["id"]]]
        mask = token_mask(item["grounding_boxes"][None], (4, 7, 7))[0].view(4, 7, 7)
        colour = torch.tensor(synthetic.COLORS[obj["color"]], dtype=torch.float32).view(3, 1, 1)
        for frame, pixels in enumerate(item["pixel_values"]):
            hits = ((pixels * std + mean) * 255 - colour).abs().amax(0) < 20  # (S, S)
            rows, cols = hits.nonzero(as_tuple=True)
            total += len(rows)
            inside += mask[frame // 2, rows * 7 // 112, cols * 7 // 112].sum().item()
    assert total > 300 and inside / total > 0.9, (inside, total)


# --------------------------------------------------------------------------------------------------
# train_qa --grounding_weight
# --------------------------------------------------------------------------------------------------


def _argv(bench: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--task", "tgif-frameqa", "tgif-action", "--annotations", str(bench / "tgif"), "--videos", str(bench / "tgif" / "gifs"),
        "--preset", "clover-tiny", "--output_dir", str(out), "--num_workers", "0", "--per_device_train_batch_size", "4",
        "--max_train_steps", "4", "--skip_val", "--skip_test", "--seed", "0", *extra,
    ]  # fmt: skip


def test_train_qa_adds_the_grounding_term_and_logs_it(bench: Path, tmp_path: Path) -> None:
    with_term = tmp_path / "grounded"
    train_qa.main(_argv(bench, with_term, "--qa_pooling", "cls+max+query", "--grounding_weight", "2"))
    without = tmp_path / "plain"
    train_qa.main(_argv(bench, without, "--qa_pooling", "cls+max+query"))
    grounded = [json.loads(line) for line in (with_term / "train_log.jsonl").read_text().splitlines()]
    plain = [json.loads(line) for line in (without / "train_log.jsonl").read_text().splitlines()]
    assert [row["ids"] for row in grounded] == [row["ids"] for row in plain]  # the same batches
    first, base = grounded[0], plain[0]
    assert 0 < first["grounding_loss"] < math.log(196)  # a near-uniform attention's share of the object's tokens
    assert first["loss"] == pytest.approx(base["loss"] + 2 * first["grounding_loss"], rel=1e-4)
    assert "grounding_loss" not in base
    reached = tmp_path / "reached"  # a target share below the untrained pooling's: no term, the plain loss
    train_qa.main(_argv(bench, reached, "--qa_pooling", "cls+max+query", "--grounding_weight", "2", "--grounding_target_share", "0.001"))
    first_reached = json.loads((reached / "train_log.jsonl").read_text().splitlines()[0])
    assert first_reached["grounding_loss"] == 0.0
    assert first_reached["loss"] == pytest.approx(base["loss"], rel=1e-4)


def test_train_qa_asks_a_share_by_the_number_of_objects(bench: Path, tmp_path: Path) -> None:
    """`--grounding_target_share 0.001 --grounding_target_share_several 1`: no term on the questions about
    clips of one object (0.001 is below any attention's share), the whole term on the others; the first
    step (the same batch and weights in each run) lies strictly between none and the whole term."""
    runs = {}
    for name, shares in {"whole": ("1", "1"), "several": ("0.001", "1"), "none": ("0.001", "0.001")}.items():
        out = tmp_path / name
        train_qa.main(_argv(bench, out, "--qa_pooling", "cls+max+query", "--grounding_weight", "2",
                            "--grounding_target_share", shares[0], "--grounding_target_share_several", shares[1]))
        runs[name] = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert runs["whole"]["ids"] == runs["several"]["ids"] == runs["none"]["ids"]
    grounding = load_grounding(bench / "tgif")
    records = load_annotations(runs["whole"]["task"], bench / "tgif", split="train")
    attach_grounding(records, grounding, runs["whole"]["task"])
    counts = [record["grounding_objects"] for record in records if record["id"] in runs["whole"]["ids"] and "grounding" in record]
    assert min(counts) == 1 and max(counts) > 1, counts  # the first batch has clips of both kinds (seed 0)
    assert runs["none"]["grounding_loss"] == 0.0
    assert 0 < runs["several"]["grounding_loss"] < runs["whole"]["grounding_loss"]
    assert (tmp_path / "several" / "README.md").read_text().count("clips of one object, of several) | 0.001, 1.0 |") == 1


def test_train_qa_asks_for_attention_in_the_time_of_the_step(bench: Path, tmp_path: Path) -> None:
    """`--grounding_time step` on Action questions: the same first batch, a mask that is a part of the
    whole clip's, so less of the untrained pooling's attention falls in it and the term is larger."""
    runs = {}
    for when in ("clip", "step"):
        out = tmp_path / when
        argv = [arg for arg in _argv(bench, out, "--qa_pooling", "cls+max+query", "--grounding_weight", "1", "--grounding_time", when)
                if arg != "tgif-frameqa"]
        train_qa.main(argv)
        runs[when] = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert runs["clip"]["ids"] == runs["step"]["ids"] and runs["clip"]["task"] == "tgif-action"
    grounding = load_grounding(bench / "tgif")
    partial = [grounding["asked_segments"]["tgif-action"][str(i)] for i in runs["step"]["ids"]]
    assert any(len(segments) < synthetic.NUM_SEGMENTS for segments in partial), partial
    assert runs["step"]["grounding_loss"] > runs["clip"]["grounding_loss"] > 0
    assert "| grounding: in time | the step asked about (Action, Transition, Count) |" in (tmp_path / "step" / "README.md").read_text()
    assert "grounding: in time" not in (tmp_path / "clip" / "README.md").read_text()


def test_train_qa_refuses_grounding_without_a_question_pooling_or_a_grounding_file(bench: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="has none: add --qa_pooling cls\\+max\\+query"):
        train_qa.main(_argv(bench, tmp_path / "a", "--qa_pooling", "cls+max", "--grounding_weight", "1"))
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in (bench / "tgif").glob("*.csv"):
        (bare / path.name).write_bytes(path.read_bytes())
    (bare / "splits.json").write_bytes((bench / "tgif" / "splits.json").read_bytes())
    argv = _argv(bench, tmp_path / "b", "--qa_pooling", "cls+max+query", "--grounding_weight", "1")
    argv[argv.index("--annotations") + 1] = str(bare)
    with pytest.raises(SystemExit, match="tgif-frameqa: .*no grounding file"):
        train_qa.main(argv)


def test_train_qa_refuses_grounding_settings_out_of_range(bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train_qa.main(_argv(bench, tmp_path / "c", "--qa_pooling", "cls+max+query", "--grounding_weight", "1", "--grounding_min_objects", "0"))
    assert "--grounding_min_objects must be 1 or more, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_qa.main(_argv(bench, tmp_path / "d", "--qa_pooling", "cls+max+query", "--grounding_weight", "1", "--grounding_target_share", "1.5"))
    assert "--grounding_target_share must be above 0 and at most 1, got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_qa.main(_argv(bench, tmp_path / "e", "--qa_pooling", "cls+max+query", "--grounding_weight", "1", "--grounding_target_share_several", "0"))
    assert "--grounding_target_share_several must be above 0 and at most 1, got 0.0" in capsys.readouterr().err


def test_a_benchmark_made_before_the_grounding_files_gets_them_and_a_changed_one_is_refused(bench: Path, tmp_path: Path) -> None:
    """`add_grounding` (make_demo runs it on an existing benchmark) writes the same files the generator
    does, and refuses a benchmark whose question files this generator would not write."""
    old = tmp_path / "old"
    for folder in ("tgif", "msvd"):
        (old / folder).mkdir(parents=True)
        for path in (bench / folder).iterdir():
            if path.is_file() and path.name != GROUNDING_FILE:
                (old / folder / path.name).write_bytes(path.read_bytes())
    (old / "metadata.json").write_bytes((bench / "metadata.json").read_bytes())
    assert synthetic.add_grounding(old) is True
    for folder in ("tgif", "msvd"):
        assert (old / folder / GROUNDING_FILE).read_bytes() == (bench / folder / GROUNDING_FILE).read_bytes()
    assert synthetic.add_grounding(old) is False  # already there: nothing to do
    older = json.loads((old / "tgif" / GROUNDING_FILE).read_text())
    del older["asked_segments"]  # as the generator wrote it before the segments were added
    (old / "tgif" / GROUNDING_FILE).write_text(json.dumps(older))
    assert synthetic.add_grounding(old) is True
    assert (old / "tgif" / GROUNDING_FILE).read_bytes() == (bench / "tgif" / GROUNDING_FILE).read_bytes()

    (old / "tgif" / GROUNDING_FILE).unlink()
    questions = old / "msvd" / "train_qa.json"
    questions.write_text(questions.read_text().replace('"question": "', '"question": "so ', 1))
    with pytest.raises(ValueError, match="train_qa.json is not what this version of the generator writes.*generate the benchmark again"):
        synthetic.add_grounding(old)
    assert not (old / "tgif" / GROUNDING_FILE).exists()  # nothing half-written
    questions.unlink()  # a question file missing is refused the same way
    with pytest.raises(ValueError, match="train_qa.json is not what this version of the generator writes"):
        synthetic.add_grounding(old)


def _grounding_share():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import grounding_share

    return grounding_share


def test_grounding_share_summary_by_hand() -> None:
    rows = _grounding_share().summarize({2: [1.0, 0.25], 1: [0.5, 0.5], 3: [0.0]})
    assert rows == [
        {"objects": 1, "questions": 2, "mean_share": 0.5, "geometric_mean_share": 0.5},
        {"objects": 2, "questions": 2, "mean_share": 0.625, "geometric_mean_share": 0.5},  # sqrt(1 x 0.25)
        {"objects": 3, "questions": 1, "mean_share": 0.0, "geometric_mean_share": 0.0},  # floored at 1e-6
    ]


def test_grounding_share_counts_each_named_question_by_its_clip(bench: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    """End to end on a generated benchmark with a random model that has the question pooling: every test
    question that names an object is counted once, in the row of its clip's number of objects (as
    scenes.json has it), with shares between 0 and 1; a model without the pooling is refused."""
    from clover.configuration_clover import CloverConfig
    from clover.modeling_clover import CloverForVideoQA

    model_dir = tmp_path / "query_pooling"
    config = CloverConfig.from_preset("clover-tiny", qa_heads=["open", "mc"], qa_pooling="cls+max+query", id2label={0: "red"})
    CloverForVideoQA(config).save_pretrained(model_dir)
    CloverProcessor.from_preset("clover-tiny").save_pretrained(model_dir)
    tool, output = _grounding_share(), tmp_path / "share.json"
    result = tool.main(["--model", str(model_dir), "--data", str(bench), "--tasks", "tgif-action", "msvd-qa", "--output", str(output)])
    assert json.loads(output.read_text()) == result
    scenes = _scenes(bench)
    for task, folder in (("tgif-action", "tgif"), ("msvd-qa", "msvd")):
        records = load_annotations(task, bench / folder, split="test")
        attach_grounding(records, load_grounding(bench / folder), task)
        expected: dict[int, int] = {}
        for record in records:
            if "grounding" in record:
                objects = len(scenes[Path(record["video"]).name.split("_")[0].removesuffix(".gif")]["objects"])
                expected[objects] = expected.get(objects, 0) + 1
        rows = result["tasks"][task]
        assert {row["objects"]: row["questions"] for row in rows} == expected
        for row in rows:
            assert 0 < row["geometric_mean_share"] <= row["mean_share"] <= 1
    with pytest.raises(SystemExit, match="no question pooling"):
        tool.main(["--model", str(tiny_checkpoint), "--data", str(bench), "--tasks", "tgif-action"])


def _frame_relevance():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import frame_relevance

    return frame_relevance


def test_frame_relevance_frames_and_ratio_by_hand() -> None:
    """The sampled frames of a step's segments, the ratio and the summary, computed by hand."""
    tool = _frame_relevance()
    assert tool.segment_frames([5], 8, 8) == [5] and tool.segment_frames([5], 16, 8) == [10, 11]
    assert tool.segment_frames([0, 1], 4, 8) == [0] and tool.segment_frames([1], 4, 8) == []  # frame 0 samples segments 0-1
    assert tool.segment_frames([2, 3, 4], 8, 8) == [2, 3, 4] and tool.segment_frames([1], 8, 4) == [2, 3]
    assert tool.relevance_ratio(np.array([0.5, 0.5, 0, 0, 0, 0, 0, 0]), [0, 1]) == pytest.approx(4.0)
    assert tool.relevance_ratio(np.full(8, 0.125), [2, 3, 4]) == pytest.approx(1.0)
    summary = tool.summarize([1.0, 2.0, 3.0], [0.2, 0.3, 0.4])
    assert summary == {"questions": 3, "ratio": 2.0, "standard_error": pytest.approx(0.5774, abs=1e-4), "top_frame": 0.3}
    assert tool.summarize([], [])["questions"] == 0


def test_frame_relevance_asks_every_motion_question_through_the_app_engine(bench: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    """End to end on a generated benchmark with a random model: every Action and Transition question
    is measured, every Count question but those whose answer is 0 (no step to point at), with ratios
    that a relevance summing to 1 allows."""
    output = tmp_path / "relevance.json"
    argv = ["--model", str(tiny_checkpoint), "--data", str(bench), "--split", "train", "--output", str(output)]
    result = _frame_relevance().main(argv)  # the train split: 8 clips, where the test split has 2
    assert json.loads(output.read_text()) == result
    for task, row in result["tasks"].items():
        records = load_annotations(task, bench / "tgif", split="train")
        expected = sum(record["answer"] > 0 for record in records) if task == "tgif-count" else len(records)
        assert row["questions"] == expected > 0, task
        assert 0 < row["ratio"] <= 8 and 1 / 8 <= row["top_frame"] <= 1
    older = load_grounding(bench / "tgif")
    del older["asked_segments"]  # as the generator wrote it before the segments were added
    (tmp_path / "older" / "tgif").mkdir(parents=True)
    (tmp_path / "older" / "tgif" / GROUNDING_FILE).write_text(json.dumps(older))
    with pytest.raises(SystemExit, match="no asked_segments.*add_grounding"):
        _frame_relevance().main(["--model", str(tiny_checkpoint), "--data", str(tmp_path / "older")])
