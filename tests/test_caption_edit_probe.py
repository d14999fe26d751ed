"""Tests of `benchmarks/caption_edit_probe.py`: reading the generator's captions, the edits, the
counting, and the tool end to end on a tiny checkpoint and generated clips."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

from clover.data import synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import caption_edit_probe as probe  # noqa: E402


def test_every_generated_caption_reads_back_to_its_scene() -> None:
    rng = random.Random(0)
    for index in range(300):
        scene = synthetic.sample_scene(rng, f"clip{index}", index, "train")
        caption = synthetic.caption(scene)
        objects = probe.parse_caption(caption)
        assert probe.render_caption(objects) == caption
        assert [(o.size, o.color, o.shape) for o in objects] == [(o.size, o.color, o.shape) for o in scene.objects]


def test_word_keeping_edits_move_words_between_two_objects() -> None:
    caption = "a big red circle grows twice while a small blue star blinks"
    edits = probe.caption_edits(caption, random.Random(0))
    assert edits["swap colours"] == "a big blue circle grows twice while a small red star blinks"
    assert edits["swap shapes"] == "a big red star grows twice while a small blue circle blinks"
    assert edits["swap actions"] == "a big red circle blinks while a small blue star grows twice"
    assert "reverse order" not in edits  # neither object has two different actions
    for name in ("swap colours", "swap shapes", "swap actions"):
        assert sorted(edits[name].split()) == sorted(caption.split())


def test_order_count_and_new_word_edits_of_one_object() -> None:
    caption = "a small green square jumps then moves up four times"
    edits = probe.caption_edits(caption, random.Random(0))
    assert edits["reverse order"] == "a small green square moves up four times then jumps"
    assert not {"swap colours", "swap shapes", "swap actions"} & set(edits)
    assert edits["change count"] != caption
    assert edits["change count"].startswith("a small green square jumps")  # only a count word differs
    assert probe.parse_caption(edits["change count"])[0].steps[0][0] == "jumps"
    new_colour = probe.parse_caption(edits["new colour"])[0]
    assert new_colour.color != "green" and (new_colour.shape, new_colour.steps) == ("square", [("jumps", ""), ("moves up", "four times")])
    assert probe.parse_caption(edits["new shape"])[0].shape not in ("square",)
    new_action = probe.parse_caption(edits["new action"])[0].steps
    assert {verb for verb, _ in new_action} - {"jumps", "moves up"}, "the new action is one the caption lacks"


def test_stays_still_is_never_counted_nor_brought_in() -> None:
    for seed in range(20):
        edits = probe.caption_edits("a big red circle stays still", random.Random(seed))
        assert "change count" not in edits
        verb, count = probe.parse_caption(edits["new action"])[0].steps[0]
        assert verb in probe.REPEATED_VERBS and count == ""


def test_a_caption_the_generator_cannot_write_is_refused() -> None:
    with pytest.raises(ValueError, match="not a caption of the synthetic generator"):
        probe.parse_caption("a man rides a horse")
    with pytest.raises(ValueError, match="not a caption of the synthetic generator"):
        probe.parse_caption("a big red circle flies")


def test_edit_totals_count_ties_against_the_caption() -> None:
    totals = probe.EditTotals()
    totals.add(0.5, {"swap colours": 0.4, "new colour": 0.5})
    totals.add(0.2, {"swap colours": 0.3, "new colour": 0.1})
    summary = totals.summary()
    assert summary["swap colours"] == {"clips": 2, "accuracy": 0.5}
    assert summary["new colour"] == {"clips": 2, "accuracy": 0.5}  # the tie counted as wrong
    assert set(summary) == {"swap colours", "new colour"}


@pytest.fixture(scope="module")
def captions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4 val clips of the synthetic benchmark in WebVid's format, and a copy of their CSV with one more
    row whose clip is not a video."""
    out = tmp_path_factory.mktemp("edits")
    synthetic.generate_benchmark(out, seed=0, train_clips=2, val_clips=4, test_clips=0, size=64, num_frames=16, fps=8.0, progress=False)
    root = out / "webvid"
    lines = (root / "results_val.csv").read_text(encoding="utf-8").rstrip("\n").splitlines()
    page_dir = lines[1].split(",")[3]
    (root / "videos" / page_dir / "999.mp4").write_bytes(b"this is not a video")
    broken = root / "with_broken.csv"
    broken.write_text("\n".join([*lines, f"999,https://example.invalid/999.mp4,PT00H00M02S,{page_dir},a big red circle blinks"]) + "\n", encoding="utf-8")
    return {"val": root / "results_val.csv", "broken": broken, "videos": root / "videos"}


def test_retrieval_scores_are_the_models_own_similarities(tiny_checkpoint: Path, captions: dict[str, Path]) -> None:
    from finetune.pretrain import load_pairs, val_loader

    clover, processor = probe.load_model(tiny_checkpoint)
    pairs = load_pairs(str(captions["val"]), str(captions["videos"]))
    batch = next(iter(val_loader(pairs, processor, 2)))
    texts = [pairs.pairs[0]["caption"], "a big red circle blinks"]
    with torch.no_grad():
        tokens = clover.encode_video(batch["pixel_values"][:1]).tokens
        scores = probe.caption_scores(clover, processor, tokens, texts, fused=False)
        encoded = processor.encode_text(texts)
        expected = clover.get_text_features(encoded["input_ids"], encoded["attention_mask"]) @ clover.get_video_features(batch["pixel_values"][:1])[0]
        fused = probe.caption_scores(clover, processor, tokens, texts, fused=True)
    torch.testing.assert_close(scores, expected)
    assert fused.shape == (2,) and not torch.allclose(fused, scores)


def test_tool_end_to_end_skips_an_unreadable_clip(tiny_checkpoint: Path, captions: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "edits.json"
    common = ["--model", str(tiny_checkpoint), "--captions", str(captions["broken"]), "--video_root", str(captions["videos"])]
    result = probe.main([*common, "--output", str(output)])
    assert (result["pairs"], result["unreadable_clips"], result["missing_clips"]) == (4, 1, 0)
    assert json.loads(output.read_text(encoding="utf-8")) == result
    assert {result["edits"][name]["clips"] for name in probe.NEW_WORD_EDITS} == {4}
    assert all(0.0 <= edit["accuracy"] <= 1.0 for edit in result["edits"].values())
    fused = probe.main([*common, "--fused"])
    assert fused["score"] == "fused" and fused["edits"].keys() == result["edits"].keys()


def test_tool_names_the_csv_whose_captions_it_cannot_read(tiny_checkpoint: Path, captions: dict[str, Path], tmp_path: Path) -> None:
    csv = tmp_path / "real.csv"
    csv.write_text("video,caption\nclip.mp4,a man rides a horse\n", encoding="utf-8")
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"real\.csv: not a caption of the synthetic generator"):
        probe.main(["--model", str(tiny_checkpoint), "--captions", str(csv), "--video_root", str(tmp_path)])
