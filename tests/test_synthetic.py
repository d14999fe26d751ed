"""Tests of the synthetic benchmark: published file formats, ground truth, determinism, clips, rendering."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import shutil
from itertools import product
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from clover.data import synthetic
from clover.data.synthetic import (
    COLORS,
    ActionStep,
    Background,
    Scene,
    SceneObject,
    benchmark_words,
    generate_benchmark,
    object_state,
    render_clip,
)
from clover.video import write_video

ROOT = Path(__file__).resolve().parents[1]
SIZE, FRAMES = 48, 16
TGIF_HEADERS = {
    "action": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "transition": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "frameqa": ["gif_name", "question", "answer", "type", "vid_id", "key", "description"],
    "count": ["gif_name", "question", "answer", "vid_id", "key"],
}


def _generate(out: Path) -> dict:
    return generate_benchmark(
        out, seed=3, train_clips=6, val_clips=2, test_clips=2, size=SIZE, num_frames=FRAMES, fps=8, progress=False
    )


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    _generate(out)
    return out


def _read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        return header, [dict(zip(header, row, strict=True)) for row in reader]


def _scenes(bench: Path) -> dict[str, dict]:
    return json.loads((bench / "scenes.json").read_text())


def _find_object(scene: dict, question: str) -> dict:
    """The object a question names ("the big red circle", "the circle", "the red object")."""
    ref = question.split(" the ", 1)[1]
    matches = [
        obj for obj in scene["objects"]
        if ref.startswith((f"{obj['color']} {obj['shape']} ", f"{obj['shape']} ", f"{obj['color']} object ",
                           f"{obj['size']} {obj['color']} {obj['shape']} "))
    ]
    assert len(matches) == 1, (question, matches)
    return matches[0]


def _splits(bench: Path) -> dict[str, list[str]]:
    return json.loads((bench / "tgif" / "splits.json").read_text())


def test_tgif_files_have_the_published_headers_and_tab_separators(bench: Path) -> None:
    splits = _splits(bench)
    for prefix, clips in (("Train", splits["train"] + splits["val"]), ("Test", splits["test"])):
        for task, columns in TGIF_HEADERS.items():
            path = bench / "tgif" / f"{prefix}_{task}_question.csv"
            assert path.read_text().splitlines()[0] == "\t".join(columns)
            header, rows = _read_tsv(path)
            assert rows, path
            assert {row["gif_name"] for row in rows} <= set(clips)
            assert all(row["vid_id"].startswith(task.upper()) and row["key"].isdigit() for row in rows)
            assert all((bench / "tgif" / "gifs" / f"{row['gif_name']}.gif").is_file() for row in rows)


def test_splits_are_disjoint_and_complete(bench: Path) -> None:
    splits = _splits(bench)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    names = [name for s in ("train", "val", "test") for name in splits[s]]
    assert len(names) == len(set(names))
    assert set(names) == set(_scenes(bench))


def test_multiple_choice_answers_are_right_for_the_ground_truth(bench: Path) -> None:
    scenes = _scenes(bench)
    for prefix in ("Train", "Test"):
        _, rows = _read_tsv(bench / "tgif" / f"{prefix}_action_question.csv")
        for row in rows:
            candidates = [row[f"a{i}"] for i in range(1, 6)]
            assert len(set(candidates)) == 5 and 0 <= int(row["answer"]) <= 4
            obj = _find_object(scenes[row["gif_name"]], row["question"])
            times = row["question"].split(" do ")[1].removesuffix(" ?")
            reps = 1 if times == "once" else int(times.split()[0])
            done = {step["action"] for step in obj["steps"] if step["reps"] == reps and step["action"] != "stay still"}
            assert [c for c in candidates if c in done] == [candidates[int(row["answer"])]]

        _, rows = _read_tsv(bench / "tgif" / f"{prefix}_transition_question.csv")
        for row in rows:
            candidates = [row[f"a{i}"] for i in range(1, 6)]
            assert len(set(candidates)) == 5 and 0 <= int(row["answer"]) <= 4
            obj = _find_object(scenes[row["gif_name"]], row["question"])
            order = [step["action"] for step in obj["steps"]]
            word, anchor = row["question"].removesuffix(" ?").split(" do ")[1].split(" ", 1)
            position = order.index(anchor) + (1 if word == "after" else -1)
            assert candidates[int(row["answer"])] == order[position]
            assert anchor not in candidates


def test_count_answers_match_the_repetitions(bench: Path) -> None:
    scenes = _scenes(bench)
    for prefix in ("Train", "Test"):
        _, rows = _read_tsv(bench / "tgif" / f"{prefix}_count_question.csv")
        for row in rows:
            obj = _find_object(scenes[row["gif_name"]], row["question"])
            action = row["question"].removesuffix(" ?").split()[-1]
            expected = sum(step["reps"] for step in obj["steps"] if step["action"] == action)
            assert int(row["answer"]) == expected


def test_frameqa_types_and_one_word_answers(bench: Path) -> None:
    _, rows = _read_tsv(bench / "tgif" / "Train_frameqa_question.csv")
    assert {int(row["type"]) for row in rows} <= {0, 1, 2, 3}
    assert all(len(row["answer"].split()) == 1 and row["description"].endswith(" .") for row in rows)


def test_msvd_json_schema_and_shuffled_mapping(bench: Path) -> None:
    mapping = {}
    for line in (bench / "msvd" / "youtube_mapping.txt").read_text().splitlines():
        clip, vid = line.split(" ")
        mapping[int(vid.removeprefix("vid"))] = clip
    assert len(mapping) == 10
    ids = []
    for split in ("train", "val", "test"):
        entries = json.loads((bench / "msvd" / f"{split}_qa.json").read_text())
        assert entries
        for entry in entries:
            assert sorted(entry) == ["answer", "id", "question", "video_id"]
            assert len(entry["answer"].split()) == 1
            assert entry["question"].split()[0] in {"what", "which", "how", "where"}
            assert (bench / "msvd" / "YouTubeClips" / f"{mapping[entry['video_id']]}.avi").is_file()
            ids.append(entry["id"])
    assert len(ids) == len(set(ids))


def test_webvid_csv_columns_and_clips(bench: Path) -> None:
    splits = _splits(bench)
    for file_name, count in (("results.csv", len(splits["train"])), ("results_val.csv", len(splits["val"]))):
        with (bench / "webvid" / file_name).open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
        assert reader.fieldnames == ["videoid", "contentUrl", "duration", "page_dir", "name"]
        assert len(rows) == count
        for row in rows:
            assert row["name"].startswith("a ")
            assert (bench / "webvid" / "videos" / row["page_dir"] / f"{row['videoid']}.mp4").is_file()


def test_corpus_words_are_in_the_vocabulary(bench: Path) -> None:
    words = set(benchmark_words())
    corpus = (bench / "corpus.txt").read_text().lower().split()
    assert set(corpus) <= words
    metadata = json.loads((bench / "metadata.json").read_text())
    assert set(metadata["vocabulary"]) <= words and metadata["clips"] == {"train": 6, "val": 2, "test": 2}


def test_same_seed_gives_identical_files(bench: Path, tmp_path: Path) -> None:
    """Annotations and clips, byte for byte, whether the clips are written in one process or two."""
    generate_benchmark(tmp_path, seed=3, train_clips=6, val_clips=2, test_clips=2, size=SIZE, num_frames=FRAMES, fps=8,
                       workers=2, progress=False)
    annotation_files = [p.relative_to(bench) for p in bench.rglob("*") if p.suffix in (".csv", ".json", ".txt")]
    clips = [p.relative_to(bench) for p in bench.rglob("*") if p.suffix in (".gif", ".avi", ".mp4")]
    assert len(annotation_files) >= 17 and len(clips) == 10 + 10 + 8
    for relative in annotation_files + clips:
        assert (tmp_path / relative).read_bytes() == (bench / relative).read_bytes(), relative


def test_update_clips_writes_again_the_mp4s_an_older_generator_encoded(bench: Path, tmp_path: Path) -> None:
    """A benchmark whose metadata.json has no `clips_version` (an older generator's: MP4s encoded with
    x264's macroblock-tree) gets every MP4 written again, the bytes the generator writes now; the GIFs
    and AVIs are left as they are; a benchmark of this version is left alone."""
    old = tmp_path / "old"
    shutil.copytree(bench, old)
    metadata = json.loads((old / "metadata.json").read_text())
    assert metadata.pop("clips_version") == synthetic.CLIPS_VERSION
    (old / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
    mp4s = sorted(p.relative_to(bench) for p in bench.glob("webvid/videos/*/*.mp4"))
    (old / mp4s[0]).write_bytes(b"an older encoding")
    (old / mp4s[1]).unlink()
    gif = next(old.glob("tgif/gifs/*.gif"))
    gif.write_bytes(b"left alone")
    assert synthetic.update_clips(old, workers=1, progress=False) == len(mp4s) == 8
    for relative in mp4s:
        assert (old / relative).read_bytes() == (bench / relative).read_bytes(), relative
    assert (old / "metadata.json").read_bytes() == (bench / "metadata.json").read_bytes()
    assert gif.read_bytes() == b"left alone"
    assert synthetic.update_clips(old, progress=False) == 0


def test_a_clip_is_encoded_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    """The MP4 of a clip whose H.264 stream x264's macroblock-tree rate control made differ from run to
    run (26 of 150 encodes off the usual stream, with a training beside them; `clover.video.write_video`
    turns it off): twenty encodes, one stream."""
    scenes = synthetic.sample_scenes(0, {"train": 1200, "val": 200, "test": 300})
    frames = render_clip(scenes["val"][160], 112, 32)  # the default benchmark's webvid/videos/001301_001400/1361.mp4
    streams = {write_video(tmp_path / f"{trial}.mp4", frames, 8.0).read_bytes() for trial in range(20)}
    assert len(streams) == 1


@pytest.mark.parametrize("folder, pattern", [("tgif/gifs", "*.gif"), ("msvd/YouTubeClips", "*.avi"), ("webvid/videos", "*/*.mp4")])
def test_clips_decode_to_the_expected_frames(bench: Path, folder: str, pattern: str) -> None:
    paths = sorted((bench / folder).glob(pattern))
    assert len(paths) == (8 if pattern.endswith("mp4") else 10)
    for path in paths[:3]:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == FRAMES, path
        assert frames[0].shape == (SIZE, SIZE, 3)


def _one_object_scene(color: str, steps: list[ActionStep]) -> Scene:
    obj = SceneObject(shape="square", color=color, size="big", x=0.5, y=0.5, angle=0.0, spin=1, step=0.1, steps=steps)
    return Scene("t", 0, "train", 1, Background((60, 60, 60), 0.2, 30.0, 10.0, False), [obj], False)


def test_object_centre_has_its_colour_and_blink_hides_it(tmp_path: Path) -> None:
    scene = _one_object_scene("red", [ActionStep("blink", 2, 0, 4), ActionStep("stay still", 1, 4, 4)])
    frames = render_clip(scene, 64, 16)  # 2 frames per segment; segments 0 and 2 are "off"
    centre = (32, 32)
    assert tuple(frames[2][centre]) == COLORS["red"]  # segment 1: on
    for off_frame in (0, 1, 4, 5):
        assert np.abs(frames[off_frame][centre].astype(int) - np.array(COLORS["red"])).max() > 100
    path = synthetic.write_video(tmp_path / "clip.gif", frames, 8)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert np.abs(decoded[2][centre].astype(int) - np.array(COLORS["red"])).max() <= 8


def test_first_frame_colour_at_each_generated_object_centre(bench: Path) -> None:
    scenes = _scenes(bench)
    for name in list(scenes)[:4]:
        scene = synthetic.sample_scenes(3, {"train": 10, "val": 0, "test": 0})["train"][int(name[3:])]
        frames = render_clip(scene, SIZE, FRAMES)
        for obj in scene.objects:
            state = object_state(obj, synthetic.frame_time(0, FRAMES))
            if not state.visible or (scene.occlusion and obj is not scene.objects[-1]):
                continue  # hidden by a blink, or possibly by an object drawn over it
            y, x = int(state.y * SIZE), int(state.x * SIZE)
            assert tuple(frames[0][y, x]) == COLORS[obj.color], (name, obj.color)


def test_moves_and_jumps_follow_the_timeline() -> None:
    scene = _one_object_scene("blue", [ActionStep("move left", 2, 0, 2), ActionStep("jump", 1, 2, 2), ActionStep("stay still", 1, 4, 4)])
    obj = scene.objects[0]
    assert object_state(obj, 2.0).x == pytest.approx(0.5 - 0.2)
    assert object_state(obj, 2.5).y == pytest.approx(0.5 - synthetic.JUMP_HEIGHT)
    assert object_state(obj, 3.5).y == pytest.approx(0.5)


def test_timelines_fill_the_clip_with_whole_segments() -> None:
    rng = random.Random(0)
    for index in range(200):
        scene = synthetic.sample_scene(rng, "x", index, "train")
        colors = [obj.color for obj in scene.objects]
        shapes = [obj.shape for obj in scene.objects]
        assert len(set(colors)) == len(colors) and len(set(shapes)) == len(shapes)
        for obj in scene.objects:
            ends = [step.start + step.length for step in obj.steps]
            assert [step.start for step in obj.steps] == [0, *ends[:-1]] and ends[-1] == synthetic.NUM_SEGMENTS
            assert all(1 <= step.reps <= 4 for step in obj.steps)


def test_frames_must_be_a_multiple_of_the_segments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        generate_benchmark(tmp_path, seed=0, train_clips=1, val_clips=0, test_clips=0, size=32, num_frames=12, fps=8, progress=False)


def test_the_project_loaders_read_the_benchmark(bench: Path) -> None:
    from clover.data.annotations import load_annotations, load_caption_pairs

    splits = _splits(bench)
    val = load_annotations("tgif-count", bench / "tgif", "val")
    assert {record["video"].removesuffix(".gif") for record in val} == set(splits["val"])
    assert load_annotations("tgif-action", bench / "tgif", "test")[0]["candidates"]
    assert load_annotations("msvd-qa", bench / "msvd", "test")
    assert len(load_caption_pairs(bench / "webvid" / "results.csv", bench / "webvid" / "videos")) == 6


def _report_module():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import synthetic_qa

    return synthetic_qa


def test_report_keeps_earlier_rows_and_the_prose_around_the_table(tmp_path: Path) -> None:
    """`benchmarks/synthetic_qa.py --table_only` rebuilds the table from the kept results alone, in the
    arms' order, and leaves the page's own text alone."""
    synthetic_qa = _report_module()
    row = {"tgif-action": {"accuracy": 0.5, "per_type": {}}, "tgif-count": {"mse": 1.25}}
    seed1 = {"tgif-action": {"accuracy": 0.7, "per_type": {}}, "tgif-count": {"mse": 1.75}}
    rows = {
        "scratch, 10%": {"seeds": {"0": {**row, "tgif-action": {"accuracy": 0.3}}, "1": seed1}},
        "text only (blank clip)": {"seeds": {"0": {**row, "tgif-action": {"accuracy": 0.25}}}},
    }
    settings = {"seed": 0, "steps": 600, "batch_size": 16, "learning_rate": 0.0002, "video_pretrain_steps": 1500,
                "pretrain_epochs": 3, "pretrain_lr": 0.0005, "clips": {"train": 12, "val": 2, "test": 3}}  # fmt: skip
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"settings": settings, "rows": rows, "minutes": {"scratch, 10%": 2.0}}))
    page = tmp_path / "results.md"  # the results default to the page's path with .json
    page.write_text(f"intro\n{synthetic_qa.START}\nold table\n{synthetic_qa.END}\nprose after\n")
    argv = ["--table_only", "--output", str(page), "--data", str(tmp_path / "no data"), "--demo", str(tmp_path / "none")]
    rows = synthetic_qa.main(argv)
    assert list(rows) == ["text only (blank clip)", "scratch, 10%"]  # ARMS order, not file order
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith("prose after\n") and "old table" not in text
    assert "| text only (blank clip) | 0 | 25.0 | - | - | - | 1.25 |" in text
    # Two seeds: mean ± sample standard deviation (30 and 70 -> 50 ± 28.3; 1.25 and 1.75 -> 1.50 ± 0.35).
    assert "| scratch, 10% | 0, 1 | 50.0 ± 28.3 | - | - | - | 1.50 ± 0.35 |" in text
    assert "scratch, 10% 2.0" in text
    assert "train / val / test clips: 12 / 2 / 3" in text  # from the kept settings: no benchmark is needed
    assert "1500 steps, one run shared" in text  # no seed kept for the video stage, so none given
    # The video stage's seed, where the settings keep one.
    results.write_text(json.dumps({"settings": {**settings, "video_pretrain_seed": 1}, "rows": rows}))
    synthetic_qa.main(argv)
    assert "`finetune.pretrain_video\n--target scene`, 1500 steps, seed 1, one run shared" in page.read_text()
    # The demo checkpoint's row gives the training seed its recipe.json records.
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "metrics.json").write_text(json.dumps({"test": row}))
    (demo / "recipe.json").write_text(json.dumps({"arguments": {"seed": 1}}))
    synthetic_qa.main([*argv[:-1], str(demo)])
    assert "| demo checkpoint | 1 | 50.0 | - | - | - | 1.25 |" in page.read_text()
    assert "demo checkpoint" not in results.read_text()  # read from the checkpoint, never kept


def test_published_results_page_is_rendered_from_the_committed_results(tmp_path: Path) -> None:
    """docs/results.md's table is exactly what docs/results.json (and the bundled checkpoint's metrics)
    render: the page and its data agree, and a fresh checkout can remake the page, or one arm of it."""
    synthetic_qa = _report_module()
    page = tmp_path / "results.md"
    page.write_text((ROOT / "docs" / "results.md").read_text(encoding="utf-8"), encoding="utf-8")
    synthetic_qa.main(["--table_only", "--output", str(page), "--results", str(ROOT / "docs" / "results.json"),
                       "--demo", str(ROOT / "examples" / "checkpoint")])  # fmt: skip
    assert page.read_text(encoding="utf-8") == (ROOT / "docs" / "results.md").read_text(encoding="utf-8")


def test_report_reruns_one_arm_and_keeps_the_other_rows(bench: Path, tmp_path: Path) -> None:
    """A run of one arm and seed (really trained, 2 steps on the tiny benchmark) adds that seed to its
    row and keeps the row's other seeds, every other row, their minutes and the kept settings; a run
    with other settings stops before training anything and names the setting."""
    synthetic_qa = _report_module()
    earlier = {"tgif-action": {"accuracy": 0.25, "per_type": {}}, "tgif-count": {"mse": 2.0}}
    settings = {"seed": 3, "steps": 2, "batch_size": 4, "learning_rate": 0.0002, "video_pretrain_steps": 1500,
                "pretrain_epochs": 3, "pretrain_lr": 0.0005, "pretrain_video_lr_multiplier": 1.0,
                "clips": {"train": 6, "val": 2, "test": 2}, "video_pretrain_seed": 1, "video_stem": "patchify"}  # fmt: skip
    results = tmp_path / "results.json"
    kept = {"settings": settings, "minutes": {"scratch, 10%": 12.5},
            "rows": {name: {"seeds": {"1": earlier}} for name in ("scratch, 100%", "scratch, 10%")}}  # fmt: skip
    results.write_text(json.dumps(kept))
    page, work = tmp_path / "results.md", tmp_path / "work"
    argv = ["--data", str(bench), "--seed", "3", "--work_dir", str(work), "--output", str(page), "--demo", str(tmp_path / "none"),
            "--arms", "scratch, 100%"]  # fmt: skip
    with pytest.raises(SystemExit, match=r"holds rows measured with other settings: steps 2 \(this run: 3\)"):
        synthetic_qa.main([*argv, "--steps", "3"])
    assert not work.exists() and json.loads(results.read_text()) == kept  # nothing trained, nothing lost
    missing = tmp_path / "no benchmark yet"
    with pytest.raises(SystemExit, match=r"steps 2 \(this run: 3\)"):
        synthetic_qa.main([*argv, "--steps", "3", "--data", str(missing)])
    assert not missing.exists()  # refused before generating one
    synthetic_qa.main(argv)  # --steps, --batch_size, ... default to the kept rows' settings
    stored = json.loads(results.read_text())
    assert stored["rows"]["scratch, 10%"] == {"seeds": {"1": earlier}}
    seeds = stored["rows"]["scratch, 100%"]["seeds"]
    assert set(seeds) == {"0", "1"} and seeds["1"] == earlier
    measured = seeds["0"]
    assert set(measured) == {"tgif-action", "tgif-transition", "tgif-frameqa", "msvd-qa", "tgif-count"}
    assert 0.0 <= measured["tgif-action"]["accuracy"] <= 1.0 and measured["tgif-count"]["mse"] >= 0.0
    assert stored["settings"] == settings and set(stored["minutes"]) == {"scratch, 10%", "scratch, 100%"}
    action = [25.0, 100 * measured["tgif-action"]["accuracy"]]
    mean, spread = sum(action) / 2, abs(action[1] - action[0]) / 2**0.5  # the sample sd of two values
    assert f"| scratch, 100% | 0, 1 | {mean:.1f} ± {spread:.1f} |" in page.read_text()
    assert "| scratch, 10% | 1 | 25.0 | - | - | - | 2.00 |" in page.read_text()


def test_learning_curve_tool_decodes_each_clip_once_and_reports_every_task(bench: Path, tmp_path: Path) -> None:
    """`benchmarks/qa_learning_curve.py` caches every train and val question with its clip's row, each
    distinct clip decoded once, and prints one point per evaluation with every task's val score."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import qa_learning_curve

    cache_file = tmp_path / "clips.pt"
    argv = ["--data", str(bench), "--cache", str(cache_file), "--steps", "2", "--eval_every", "1", "--batch_size", "2", "--workers", "0"]
    curve = qa_learning_curve.main(argv)
    cache = torch.load(cache_file, weights_only=False)
    action = cache["tasks"]["tgif-action"]
    # 8 clips in train + val, as GIFs (TGIF tasks) and AVIs (MSVD-style): 16 decoded clips in all.
    assert cache["clips"].shape == (16, 8, 3, 112, 112) and cache["clips"].dtype == torch.float16
    assert action["train"]["input_ids"].shape[:2] == (len(action["train"]["labels"]), 5)  # (Q, K, L)
    frameqa = cache["tasks"]["tgif-frameqa"]["val"]
    assert len(frameqa["clip"]) == len(frameqa["labels"]) == len(frameqa["types"])
    assert [point["step"] for point in curve] == [1, 2]
    assert set(curve[-1]["val"]) >= {"tgif-action", "tgif-transition", "tgif-frameqa", "tgif-count", "msvd-qa"}
    assert all(0 <= value <= 100 for name, value in curve[-1]["val"].items() if name != "tgif-count")
    # Each question's row holds its own clip, decoded as evaluation decodes it; questions on one clip share it.
    task = next(task for task in qa_learning_curve.load_tasks(bench) if task.name == "tgif-frameqa")
    processor = qa_learning_curve.CloverProcessor.from_config(qa_learning_curve.CloverConfig.from_preset("clover-tiny"), qa_learning_curve.tiny_tokenizer())
    dataset = qa_learning_curve._dataset(task, "val", processor, {}, seed=0, train=False, video_input="full")
    for index in range(len(frameqa["clip"])):
        expected = dataset[index]["pixel_values"].half()  # (T, 3, S, S)
        assert torch.equal(cache["clips"][frameqa["clip"][index]], expected)
    videos = [str(record["video_path"]) for record in dataset.records]
    assert len(set(frameqa["clip"].tolist())) == len(set(videos)) < len(videos)
    # --train_fraction keeps a seeded share of each task's training questions, every field alike.
    full = cache["tasks"]["tgif-frameqa"]["train"]
    half = qa_learning_curve.with_train_fraction(cache["tasks"]["tgif-frameqa"], 0.5, seed=0)["train"]
    keep = qa_learning_curve.subsample(list(range(len(full["labels"]))), 0.5, 0)
    assert len(keep) == len(half["types"]) == round(len(full["labels"]) / 2)
    assert all(torch.equal(half[key], full[key][keep]) for key in ("clip", "labels", "input_ids", "attention_mask"))
    assert half["types"] == [full["types"][i] for i in keep]


def _video_probe():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import video_probe

    return video_probe


def test_video_probe_labels_and_balanced_accuracy_by_hand() -> None:
    """The probe's labels are the actions some object does (stay still excluded) or the colours shown,
    and its score per label is the mean of the true-positive and true-negative rates."""
    video_probe = _video_probe()
    background = Background((60, 60, 60), 0.2, 0.0, 8.0, False)
    red = SceneObject("circle", "red", "small", 0.3, 0.5, 0.0, 1, 0.1,
                      [ActionStep("blink", 2, 0, 4), ActionStep("stay still", 1, 4, 4)])  # fmt: skip
    blue = SceneObject("square", "blue", "small", 0.7, 0.5, 0.0, 1, 0.1, [ActionStep("move left", 1, 0, 8)])
    scene = Scene("probe", 0, "train", 1, background, [red, blue], False)
    actions = dict(zip(video_probe.TARGETS["actions"], video_probe.scene_labels(scene, "actions")))
    assert {name for name, on in actions.items() if on} == {"blink", "move left"}
    colors = dict(zip(video_probe.TARGETS["colors"], video_probe.scene_labels(scene, "colors")))
    assert {name for name, on in colors.items() if on} == {"red", "blue"}
    shapes = dict(zip(video_probe.TARGETS["shapes"], video_probe.scene_labels(scene, "shapes")))
    assert {name for name, on in shapes.items() if on} == {"circle", "square"}
    everything = dict(zip(video_probe.TARGETS["scene"], video_probe.scene_labels(scene, "scene")))
    assert {name for name, on in everything.items() if on} == {"blink", "move left", "red", "blue", "circle", "square"}
    # The counts are the repetitions of blink and jump, summed over the objects: 2 blinks, no jump.
    assert video_probe.scene_counts(scene) == [2, 0]
    green = SceneObject("star", "green", "big", 0.5, 0.2, 0.0, 1, 0.1, [ActionStep("blink", 3, 0, 6), ActionStep("jump", 1, 6, 2)])
    assert video_probe.scene_counts(Scene("probe", 1, "train", 1, background, [red, blue, green], False)) == [5, 1]
    # Label 0: positives rows 0, 1 (one found), negatives rows 2, 3 (both rejected): (1/2 + 2/2) / 2 = 75 %.
    # Label 1: always present, 2 of 4 found: 50 %. Label 2: never present, 1 of 4 false alarms: 75 %.
    labels = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.float)
    predicted = torch.tensor([[1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    assert video_probe.balanced_accuracy(predicted, labels).tolist() == pytest.approx([75.0, 50.0, 75.0])


def test_video_probe_renders_in_memory_and_reports_every_label(tmp_path: Path) -> None:
    video_probe = _video_probe()
    argv = ["--train_clips", "4", "--val_clips", "3", "--steps", "2", "--eval_every", "1", "--batch_size", "2", "--workers", "1"]
    curve = video_probe.main([*argv, "--save", str(tmp_path / "encoder")])
    assert [point["step"] for point in curve] == [1, 2]
    scores = curve[-1]["val"]
    assert list(scores["per_label"]) == list(synthetic.REPEATED_ACTIONS)
    assert all(0 <= value <= 100 for value in scores["per_label"].values()) and 0 <= scores["exact_set"] <= 100
    assert "counts" not in scores  # no count output unless asked
    frames, labels, counts, segments = video_probe.render_set(0, "val", 3, "colors", workers=1)
    assert frames.shape == (3, 8, 112, 112, 3) and frames.dtype == torch.uint8
    assert labels.shape == (3, len(COLORS)) and set(labels.sum(1).tolist()) <= {1.0, 2.0, 3.0}  # 1 to 3 objects
    assert counts.shape == (3, 2) and counts.min() >= 0 and counts.max() <= 3 * synthetic.MAX_REPS
    assert segments.shape == (3, synthetic.NUM_SEGMENTS, 117) and segments.dtype == torch.uint8
    # The trained encoder is saved as a Clover model (finetune.pretrain_video --output_dir) a QA model starts from.
    from clover import CloverForVideoQA, CloverProcessor
    from clover.modeling_clover import CloverModel

    trained = CloverModel.from_pretrained(tmp_path / "encoder")
    qa = CloverForVideoQA.from_pretrained(tmp_path / "encoder", qa_heads=["mc"])
    weight = "video_encoder.patch_embed.proj.weight"
    torch.testing.assert_close(qa.clover.state_dict()[weight], trained.state_dict()[weight])
    torch.manual_seed(0)  # the probe's seed: the encoder as it was before its two training steps
    untrained = CloverModel(trained.config)
    assert not torch.equal(untrained.state_dict()[weight], trained.state_dict()[weight])
    assert CloverProcessor.from_pretrained(tmp_path / "encoder").num_frames == 8
    # The run records how long it trained, beside the model.
    from finetune.pretrain_video import trained_steps

    assert trained_steps(tmp_path / "encoder") == 2 and trained_steps(tmp_path) is None
    # --config_overrides changes the random encoder's settings (the 4x7x7 output grid kept here).
    finer = "patch_size=[2,4,4],video_embed_dim=32,video_depths=[2,2,2],video_num_heads=[1,2,4]"
    video_probe.main([*argv[:4], "--steps", "1", *argv[6:], "--config_overrides", finer, "--save", str(tmp_path / "finer")])
    config = json.loads((tmp_path / "finer" / "config.json").read_text())
    assert config["patch_size"] == [2, 4, 4] and config["video_depths"] == [2, 2, 2] and config["video_embed_dim"] == 32
    # --time_limit stops at the first evaluation past it, and still saves the encoder.
    curve = video_probe.main([*argv[:4], "--steps", "5", *argv[6:], "--time_limit", "0", "--save", str(tmp_path / "short")])
    assert [point["step"] for point in curve] == [1]
    assert (tmp_path / "short" / "config.json").exists() and trained_steps(tmp_path / "short") == 1


def test_video_stage_count_output_trains_and_is_scored_by_hand(tmp_path: Path) -> None:
    """--count_weight adds a count regression on the mean-pooled tokens: its loss reaches the encoder
    (two runs alike but for it save different encoders), its val scores are the squared error and the
    rounded share per counted action, and a negative weight is refused."""
    from finetune import pretrain_video
    from clover.modeling_clover import CloverModel

    # Blink: errors 0.4, 0.6 -> MSE (0.16 + 0.36) / 2, 1 of 2 rounds right. Jump: errors 0, 1 -> 0.5, 50 %.
    predicted, counts = torch.tensor([[2.4, 0.0], [0.6, 2.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert pretrain_video.count_scores(predicted, counts) == {"blink": {"mse": 0.26, "exact": 50.0}, "jump": {"mse": 0.5, "exact": 50.0}}
    argv = ["--target", "scene", "--train_clips", "4", "--val_clips", "3", "--steps", "2", "--eval_every", "1",
            "--batch_size", "2", "--workers", "1"]  # fmt: skip
    curve = pretrain_video.main([*argv, "--count_weight", "1", "--output_dir", str(tmp_path / "counted")])
    scores = curve[-1]["val"]["counts"]
    assert list(scores) == ["blink", "jump"]
    assert all(value["mse"] >= 0 and 0 <= value["exact"] <= 100 for value in scores.values())
    pretrain_video.main([*argv, "--output_dir", str(tmp_path / "labels_only")])
    weight = "video_encoder.patch_embed.proj.weight"
    counted, labels_only = (CloverModel.from_pretrained(tmp_path / run).state_dict()[weight] for run in ("counted", "labels_only"))
    assert not torch.equal(counted, labels_only)
    probe = pretrain_video.build_probe(pretrain_video.parse_args([*argv, "--count_weight", "1"]))
    frames, _, _, _ = pretrain_video.render_set(0, "val", 2, "scene", workers=1)
    logits, predicted_counts, slots = probe(frames)
    assert logits.shape == (2, 22) and predicted_counts.shape == (2, 2) and slots is None
    with pytest.raises(SystemExit, match="--count_weight must be 0 .* or positive, got -1"):
        pretrain_video.train(pretrain_video.parse_args([*argv, "--count_weight", "-1"]))


def test_video_stage_bound_counts_by_hand(tmp_path: Path) -> None:
    """--count_target bound: per colour and per shape, each repeatable action's repetitions (by hand on
    a two-object scene), its loss and scores by hand, the clip's totals recovered from it, and a run
    that trains and reports them."""
    from finetune import pretrain_video

    background = Background((60, 60, 60), 0.2, 0.0, 8.0, False)
    red = SceneObject("circle", "red", "small", 0.3, 0.5, 0.0, 1, 0.1,
                      [ActionStep("blink", 2, 0, 4), ActionStep("stay still", 1, 4, 4)])  # fmt: skip
    blue = SceneObject("circle", "blue", "small", 0.7, 0.5, 0.0, 1, 0.1, [ActionStep("jump", 3, 0, 8)])
    counts = pretrain_video.bound_counts(Scene("probe", 0, "train", 1, background, [red, blue], False))
    actions = synthetic.REPEATED_ACTIONS
    assert len(counts) == (len(COLORS) + len(synthetic.SHAPES)) * len(actions) == pretrain_video.COUNT_SIZES["bound"] == 117
    named = {(name, action): count for (name, action), count in zip(product(pretrain_video.COUNT_NAMES, actions), counts) if count}
    # Each colour has its own object; both are circles, so the circle's counts are the two objects' together.
    assert named == {("red", "blink"): 2, ("blue", "jump"): 3, ("circle", "blink"): 2, ("circle", "jump"): 3}
    bound = torch.tensor([counts, [0] * 117], dtype=torch.float)
    assert pretrain_video.bound_totals(bound).tolist() == [[2.0, 3.0], [0.0, 0.0]]  # = scene_counts: 2 blinks, 3 jumps
    # Loss: one count off by 3 in one clip of two -> 9 summed, / 18 (9 actions, 2 namings), mean of 0.5 and 0.
    predicted = bound.clone()
    predicted[0, 0] = 3.0  # red "moves left" 3 times: a cell whose true count is 0
    assert float(pretrain_video.count_loss(predicted, bound, "bound")) == pytest.approx(0.25)
    assert float(pretrain_video.count_loss(bound[:, :2] + 1, bound[:, :2], "totals")) == pytest.approx(1.0)
    # Scores: colour cells done (2 of them) both right; colour zeros 1 of 2 x 63 - 2 = 124 wrong.
    predicted[0, actions.index("jump") + len(actions) * list(COLORS).index("blue")] = 2.4  # rounds to 2, true 3
    scores = pretrain_video.bound_scores(predicted, bound)
    assert scores["color"] == {"exact_done": 50.0, "exact_zero": round(100 * 123 / 124, 1)}
    assert scores["shape"] == {"exact_done": 100.0, "exact_zero": 100.0}
    argv = ["--target", "scene", "--train_clips", "4", "--val_clips", "3", "--steps", "1", "--eval_every", "1",
            "--batch_size", "2", "--workers", "1", "--count_weight", "1", "--count_target", "bound"]  # fmt: skip
    scores = pretrain_video.main(argv)[-1]["val"]
    assert list(scores["counts"]) == ["blink", "jump"] and list(scores["bound_counts"]) == ["color", "shape"]
    frames, _, val_counts, _ = pretrain_video.render_set(0, "val", 2, "scene", workers=1, count_target="bound")
    assert val_counts.shape == (2, 117)
    assert pretrain_video.build_probe(pretrain_video.parse_args(argv))(frames)[1].shape == (2, 117)


def test_video_stage_slot_labels_by_hand(tmp_path: Path) -> None:
    """--slot_weight: per segment, which action the objects of each colour and shape do (by hand on a
    two-object scene), merged into the encoder's time slots, the per-naming score by hand, and a run
    that trains the slot output and reports it."""
    from finetune import pretrain_video

    background = Background((60, 60, 60), 0.2, 0.0, 8.0, False)
    red = SceneObject("circle", "red", "small", 0.3, 0.5, 0.0, 1, 0.1,
                      [ActionStep("blink", 2, 0, 4), ActionStep("stay still", 1, 4, 2), ActionStep("grow", 1, 6, 2)])  # fmt: skip
    blue = SceneObject("square", "blue", "small", 0.7, 0.5, 0.0, 1, 0.1,
                       [ActionStep("move left", 3, 0, 3), ActionStep("jump", 2, 3, 4), ActionStep("stay still", 1, 7, 1)])  # fmt: skip
    segments = pretrain_video.segment_labels(Scene("probe", 0, "train", 1, background, [red, blue], False))
    actions = synthetic.REPEATED_ACTIONS
    named = [{(name, action) for (name, action), on in zip(product(pretrain_video.COUNT_NAMES, actions), row) if on} for row in segments]
    red_blink, red_grow = {("red", "blink"), ("circle", "blink")}, {("red", "grow"), ("circle", "grow")}
    blue_left, blue_jump = {("blue", "move left"), ("square", "move left")}, {("blue", "jump"), ("square", "jump")}
    assert named == [red_blink | blue_left] * 3 + [red_blink | blue_jump] + [blue_jump] * 2 + [red_grow | blue_jump, red_grow]  # still: none
    # 4 slots of 2 segments: a slot has any of its segments' labels; 8 slots of 1: the segments' own.
    as_tensor = torch.tensor([segments], dtype=torch.float)  # (1, 8, 117)
    slots = pretrain_video.slot_targets(as_tensor, 4)
    assert slots.shape == (1, 4, 117)
    assert torch.equal(slots[0, 1], torch.maximum(as_tensor[0, 2], as_tensor[0, 3]))  # blink, move left and jump
    assert torch.equal(pretrain_video.slot_targets(as_tensor, 8), as_tensor)
    assert torch.equal(pretrain_video.slot_targets(as_tensor, 16)[0, ::2], as_tensor[0])
    # Score: every label right but one colour cell missed in one of its two positive slots -> that
    # label's balanced accuracy (50 + 100) / 2 = 75 instead of 100; the colours' mean (63 labels) drops 25 / 63.
    logits = slots * 2 - 1  # +1 where the label is on, -1 where off
    red_blink_column = pretrain_video.COUNT_NAMES.index("red") * len(actions) + actions.index("blink")
    logits[0, 1, red_blink_column] = -1.0
    scores = pretrain_video.slot_scores(logits, slots)
    assert scores == {"color": round(100 - 25 / 63, 1), "shape": 100.0}
    argv = ["--target", "scene", "--train_clips", "4", "--val_clips", "3", "--steps", "1", "--eval_every", "1",
            "--batch_size", "2", "--workers", "1", "--slot_weight", "1", "--output_dir", str(tmp_path / "slots")]  # fmt: skip
    scores = pretrain_video.main(argv)[-1]["val"]
    assert set(scores["slots"]) == {"color", "shape"} and all(0 <= value <= 100 for value in scores["slots"].values())
    frames, _, _, _ = pretrain_video.render_set(0, "val", 2, "scene", workers=1)
    assert pretrain_video.build_probe(pretrain_video.parse_args(argv))(frames)[2].shape == (2, 4, 117)
    with pytest.raises(SystemExit, match="--slot_weight must be 0 .* or positive, got -1"):
        pretrain_video.train(pretrain_video.parse_args([*argv, "--slot_weight", "-1"]))


def test_video_stage_shape_weight_scales_the_shape_terms_by_hand() -> None:
    from finetune import pretrain_video

    names = pretrain_video.TARGETS["scene"]  # 9 actions, 7 colours, then the 6 shapes
    # 16 ones and 6 fours sum to 40; scaled by 22 / 40 to a mean of 1.
    torch.testing.assert_close(pretrain_video.label_weights(names, 4.0), torch.tensor([0.55] * 16 + [2.2] * 6))
    assert torch.equal(pretrain_video.label_weights(names, 1.0), torch.ones(22))  # the default changes nothing
    for argv in (["--shape_weight", "2", "--target", "actions"], ["--shape_weight", "0", "--target", "scene"]):
        with pytest.raises(SystemExit, match="--shape_weight must be positive and needs a target with shape labels"):
            pretrain_video.train(pretrain_video.parse_args(argv))


def test_report_arms_share_one_video_pretraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pre-trained arm of `benchmarks/synthetic_qa.py` starts from the one video encoder
    pre-training: the video-only arm fine-tunes from it, and the caption pre-training (Clover or
    pair-wise, any seed) starts from it; scratch starts from nothing."""
    synthetic_qa = _report_module()

    video = tmp_path / "video"
    video.mkdir()
    (video / "config.json").write_text("{}")  # a complete run: reused, not trained again
    calls: list[list[str]] = []
    monkeypatch.setattr(synthetic_qa.pretrain, "main", lambda argv: calls.append(argv))
    monkeypatch.setattr(synthetic_qa.pretrain_video, "main", lambda argv: pytest.fail("the video stage ran again"))
    args = synthetic_qa.parse_args(["--work_dir", str(tmp_path / "report"), "--video_pretrained", str(video)])
    data = tmp_path / "bench"

    assert synthetic_qa.start_of(args, "scratch", data, 0) is None
    assert synthetic_qa.start_of(args, "video", data, 0) == video
    assert synthetic_qa.start_of(args, "clover", data, 1) == tmp_path / "report" / "seed1" / "pretrain-clover"
    assert synthetic_qa.start_of(args, "pairwise", data, 0) == tmp_path / "report" / "pretrain-pairwise"
    assert len(calls) == 2
    for argv, objective, seed in zip(calls, ["clover", "pairwise"], ["1", "0"]):
        assert argv[argv.index("--model") + 1] == str(video)
        assert argv[argv.index("--objective") + 1] == objective
        assert argv[argv.index("--seed") + 1] == seed
        assert argv[argv.index("--video_lr_multiplier") + 1] == "1.0"  # the video encoder trains with the rest
    assert synthetic_qa.video_lr_note(vars(args)) == ""

    # --pretrain_video_lr_multiplier reaches the caption pre-training and the page says so.
    args = synthetic_qa.parse_args([
        "--work_dir", str(tmp_path / "slow"), "--video_pretrained", str(video), "--pretrain_video_lr_multiplier", "0.1",
    ])  # fmt: skip
    synthetic_qa.start_of(args, "clover", data, 0)
    assert calls[-1][calls[-1].index("--video_lr_multiplier") + 1] == "0.1"
    assert synthetic_qa.video_lr_note(vars(args)) == ", the video encoder at x0.1 of it"

    # A reused run that trained for other steps than the page would say is refused, with the flag to pass.
    (video / "video_pretraining.json").write_text(json.dumps({"steps": 3000}))
    with pytest.raises(SystemExit, match="trained for 3000 steps, not --video_pretrain_steps 1500: pass --video_pretrain_steps 3000"):
        synthetic_qa.start_of(synthetic_qa.parse_args(["--video_pretrained", str(video)]), "video", data, 0)
    assert synthetic_qa.start_of(synthetic_qa.parse_args(["--video_pretrained", str(video), "--video_pretrain_steps", "3000"]), "video", data, 0) == video

    # Without --video_pretrained the stage runs once, into the work dir, with make_demo's target and seed 0
    # and the report's own 1,500 steps (the table's).
    stages: list[list[str]] = []
    monkeypatch.setattr(synthetic_qa.pretrain_video, "main", stages.append)
    args = synthetic_qa.parse_args(["--work_dir", str(tmp_path / "fresh")])
    assert synthetic_qa.start_of(args, "video", data, 2) == tmp_path / "fresh" / "video"
    assert stages == [synthetic_qa.video_pretrain_arguments(tmp_path / "fresh" / "video", steps=1500, batch_size=16, seed=0)]


def test_report_lists_the_caption_pretraining_retrieval(tmp_path: Path) -> None:
    """The report keeps each caption pre-training run's zero-shot retrieval and lists it, by objective
    and seed, in %."""
    synthetic_qa = _report_module()

    work = tmp_path / "report"
    t2v = {"R@1": 0.195, "R@5": 0.655, "R@10": 0.88, "median_rank": 4.0}
    v2t = {"R@1": 0.21, "R@5": 0.5, "R@10": 0.905, "median_rank": 3.0}
    (work / "pretrain-clover").mkdir(parents=True)
    (work / "pretrain-clover" / "metrics.json").write_text(json.dumps({
        "retrieval": {"text_to_video": t2v, "video_to_text": v2t}, "norm_statistics": {"pairs": 512, "train_csv": "results.csv"},
    }))  # fmt: skip
    (work / "seed1" / "pretrain-pairwise").mkdir(parents=True)  # written before video-to-text and the statistics
    (work / "seed1" / "pretrain-pairwise" / "metrics.json").write_text(json.dumps({"retrieval": {"text_to_video": {**t2v, "R@1": 0.08}}}))
    results = synthetic_qa.load_results(tmp_path / "none.json")
    synthetic_qa.keep_retrieval(results, "pairwise", "1", work / "seed1" / "pretrain-pairwise")
    synthetic_qa.keep_retrieval(results, "clover", "0", work / "pretrain-clover")
    synthetic_qa.keep_retrieval(results, "clover", "1", work / "seed1" / "pretrain-clover")  # no run there: nothing kept
    assert results["retrieval"]["clover"]["0"]["norm_statistics"]["pairs"] == 512
    lines = synthetic_qa.retrieval_lines(results["retrieval"])
    assert lines.index("| Clover | 0 | 19.5 | 65.5 | 88.0 | 4 | 21.0 | 90.5 | 512 training pairs |") < lines.index(
        "| pair-wise | 1 | 8.0 | 65.5 | 88.0 | 4 | - | - | running averages |"
    )  # Clover first, whatever order they were kept in
    assert synthetic_qa.retrieval_lines({}) == []


def test_the_bundled_demo_checkpoint_answers_its_examples() -> None:
    """Issue 6's "done when": `examples/checkpoint` loads with `from_pretrained` and answers every
    question of `examples/examples.json` on its clip (all from the test split) with the true answer."""
    from clover.inference import CloverInference
    from finetune.make_demo import _answers_correctly

    examples_dir = Path(__file__).resolve().parents[1] / "examples"
    examples = json.loads((examples_dir / "examples.json").read_text(encoding="utf-8"))
    engine = CloverInference.from_pretrained(examples_dir / "checkpoint")
    assert len(examples) >= 4 and {"candidates" in e for e in examples} == {True, False}  # both kinds of question
    wrong = [e["question"] for e in examples if not _answers_correctly(engine, examples_dir / e["video"], e)]
    assert wrong == []


def test_export_checkpoint_heads_the_model_card_with_the_demos_scores_and_search(tmp_path: Path) -> None:
    """The exported card's first paragraph (what the app shows) gives the test scores and, once the
    search heads are fitted, the search's R@1 and R@10; the run-only log stays behind."""
    from finetune import make_demo

    run = tmp_path / "run"
    run.mkdir()
    (run / "README.md").write_text("---\ntags: [clover]\n---\n\n# Clover fine-tuned on five tasks\n\nStarted from x.\n", encoding="utf-8")
    (run / "train_log.jsonl").write_text("{}\n", encoding="utf-8")
    search = {"after": {"text_to_video": {"R@1": 0.615, "R@10": 0.975, "num_pairs": 200}}}
    metrics = {"test": {"tgif-action": {"accuracy": 0.43}, "tgif-count": {"mse": 0.6912}}, "retrieval_heads": search}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    make_demo.export_checkpoint(run, tmp_path / "out", {"command": "python -m finetune.make_demo"})
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\ntags: [clover]\n---\n\n# Clover VideoQA demo checkpoint\n\n")
    summary = card.split("\n\n")[2]
    assert "Test accuracy on its own benchmark: tgif-action 43%, tgif-count MSE 0.69." in summary
    assert "Text-to-video search on its 200 held-out captions: R@1 61.5%, R@10 97.5%." in summary
    assert "## Clover fine-tuned on five tasks\n\nStarted from x." in card
    assert not (tmp_path / "out" / "train_log.jsonl").exists() and (tmp_path / "out" / "recipe.json").is_file()
    metrics.pop("retrieval_heads")
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    make_demo.export_checkpoint(run, tmp_path / "out", {})
    assert "search" not in (tmp_path / "out" / "README.md").read_text(encoding="utf-8").split("\n\n")[2]


# The benchmark's own captions of the example clips' scenes (test split: no model saw these clips).
EXAMPLE_CAPTIONS = {  # the example scenes' captions (the description column of the test split's FrameQA file)
    "syn01400": "a small green triangle moves left twice then moves right then grows three times while a big white "
    "circle jumps twice and a big orange cross moves up then moves right then blinks .",
    "syn01401": "a small yellow diamond jumps twice .",
    "syn01402": "a big white cross jumps three times while a small purple square rotates four times and a small blue "
    "triangle shrinks then grows four times .",
    "syn01403": "a small green cross blinks four times .",
}


def test_the_bundled_demo_checkpoints_search_finds_each_example_clip_by_its_caption() -> None:
    """The app's search on the bundled checkpoint: each example scene's caption ranks every clip of that
    scene (MP4, GIF or AVI) above every clip of the other scenes, through the retrieval heads
    `make_demo` fits to the fine-tuned encoders."""
    from clover.inference import CloverInference

    clips_dir = Path(__file__).resolve().parents[1] / "examples" / "clips"
    engine = CloverInference.from_pretrained(clips_dir.parent / "checkpoint")
    clips = sorted(clips_dir.iterdir())
    scenes = [clip.name.split("_")[0].split(".")[0] for clip in clips]
    assert set(scenes) == set(EXAMPLE_CAPTIONS) and len(clips) > len(EXAMPLE_CAPTIONS)
    features = [engine.clip_features(clip)[0] for clip in clips]
    for scene, caption in EXAMPLE_CAPTIONS.items():
        similarities = engine.similarities(caption, features)
        own = [value for value, of in zip(similarities, scenes) if of == scene]
        others = [value for value, of in zip(similarities, scenes) if of != scene]
        assert min(own) > max(others), (scene, dict(zip([clip.name for clip in clips], similarities)))


def test_make_demo_passes_its_fine_tuning_settings_to_train_qa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_demo's fine-tuning flags reach `finetune.train_qa` (the task shares among them)."""
    from finetune import make_demo

    seen: list[list[str]] = []
    monkeypatch.setattr(make_demo.train_qa, "main", lambda argv: seen.append(argv) or {})
    args = make_demo.parse_args(["--task_sampling_alpha", "0.5", "--finetune_lr", "3e-4", "--grounding_weight", "0.5", "--grounding_min_objects", "2",
                                 "--grounding_target_share", "0.6", "--grounding_target_share_several", "0.9", "--grounding_time", "step"])
    make_demo.finetune(args, tmp_path / "bench", None, tmp_path / "out")
    argv = seen[0]
    assert argv[argv.index("--task_sampling_alpha") + 1] == "0.5"
    assert argv[argv.index("--grounding_weight") + 1] == "0.5"
    assert argv[argv.index("--grounding_min_objects") + 1] == "2"
    assert argv[argv.index("--grounding_target_share") + 1] == "0.6"
    assert argv[argv.index("--grounding_target_share_several") + 1] == "0.9"
    assert argv[argv.index("--grounding_time") + 1] == "step"
    assert argv[argv.index("--learning_rate") + 1] == "0.0003"
    assert argv[argv.index("--output_dir") + 1] == str(tmp_path / "out")
    assert argv[argv.index("--max_train_steps") + 1] == str(args.finetune_steps)
    make_demo.finetune(make_demo.parse_args(["--finetune_steps", "0"]), tmp_path / "bench", None, tmp_path / "out")
    assert "--max_train_steps" not in seen[1] and seen[1][seen[1].index("--num_train_epochs") + 1] == "2"
    assert "--grounding_target_share_several" not in seen[1]  # off unless given: train_qa's own default
    assert seen[1][seen[1].index("--grounding_time") + 1] == "clip"


def test_make_demo_open_ended_first_trains_those_sets_then_all_five_from_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--open_ended_first_steps N`: a first train_qa run on FrameQA and the MSVD-style set alone (its own
    learning rate, no validation or test), then the five-task run starts from the model it saved."""
    from finetune import make_demo

    seen: list[list[str]] = []
    monkeypatch.setattr(make_demo.train_qa, "main", lambda argv: seen.append(argv) or {})
    args = make_demo.parse_args(["--open_ended_first_steps", "300", "--open_ended_first_lr", "3e-4", "--finetune_steps", "1200"])
    make_demo.finetune(args, tmp_path / "bench", tmp_path / "pretrain", tmp_path / "finetune")
    first, second = seen

    def values(argv: list[str], flag: str) -> list[str]:
        start = argv.index(flag) + 1
        end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
        return argv[start:end]

    assert values(first, "--task") == ["tgif-frameqa", "msvd-qa"]
    assert values(first, "--annotations") == [str(tmp_path / "bench/tgif"), str(tmp_path / "bench/msvd")]
    assert values(first, "--model") == [str(tmp_path / "pretrain")]
    assert values(first, "--max_train_steps") == ["300"] and values(first, "--learning_rate") == ["0.0003"]
    assert "--skip_val" in first and "--skip_test" in first
    assert values(second, "--model") == values(first, "--output_dir") == [str(tmp_path / "finetune_open_ended")]
    assert values(second, "--task") == [task for task, _, _ in make_demo.TASKS]
    assert values(second, "--max_train_steps") == ["1200"] and "--skip_test" not in second
    # Without the flag (the default) there is one run, from the pre-training.
    seen.clear()
    make_demo.finetune(make_demo.parse_args([]), tmp_path / "bench", tmp_path / "pretrain", tmp_path / "finetune")
    assert len(seen) == 1 and values(seen[0], "--model") == [str(tmp_path / "pretrain")]


def test_make_demo_fits_the_search_heads_on_the_benchmarks_captions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's last training stage fits the fine-tuned model's retrieval heads on the benchmark's
    training captions and measures retrieval on its val captions (recipe.json, "search")."""
    from finetune import make_demo

    seen: list[list[str]] = []
    monkeypatch.setattr(make_demo.fit_retrieval_heads, "main", lambda argv: seen.append(argv) or {"pairs": 1200})
    assert make_demo.fit_search_heads(tmp_path / "bench", tmp_path / "finetune") == {"pairs": 1200}
    (argv,) = seen
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags == {
        "--model": str(tmp_path / "finetune"), "--train_csv": str(tmp_path / "bench/webvid/results.csv"),
        "--video_root": str(tmp_path / "bench/webvid/videos"), "--val_csv": str(tmp_path / "bench/webvid/results_val.csv"),
    }  # fmt: skip


def test_make_demo_refuses_bad_grounding_settings_before_any_training(capsys: pytest.CaptureFixture[str]) -> None:
    """Checked when the flags are read, not after the video stage's half hour."""
    from finetune import make_demo

    for flag, value, message in (("--grounding_weight", "-1", "--grounding_weight must be 0 or more, got -1.0"),
                                 ("--grounding_min_objects", "0", "--grounding_min_objects must be 1 or more, got 0"),
                                 ("--grounding_target_share", "0", "--grounding_target_share must be above 0 and at most 1, got 0.0")):
        with pytest.raises(SystemExit):
            make_demo.parse_args([flag, value])
        assert message in capsys.readouterr().err


def test_make_demo_defaults_are_the_bundled_checkpoints_recipe() -> None:
    """`python -m finetune.make_demo` with no flags reproduces examples/checkpoint: its defaults are the
    settings recorded in the checkpoint's recipe.json (the folders aside)."""
    from finetune import make_demo

    checkpoint = Path(__file__).resolve().parents[1] / "examples" / "checkpoint"
    recorded = json.loads((checkpoint / "recipe.json").read_text())["arguments"]
    defaults = vars(make_demo.parse_args([]))
    # Folders (`video_pretrained` reuses the output of the same video stage, whose length make_demo checks
    # against --video_pretrain_steps), and how clips are loaded: where frames are decoded, never which
    # (the same steps give the same weights: test_finetune's clip-cache test; workers draw per item).
    ignored = {"data", "work_dir", "output", "examples_dir", "video_pretrained", "num_workers", "clip_cache_gb"}
    # Flags added since the checkpoint was made, with the value that leaves its recipe as it ran.
    added_since = {"grounding_target_share_several": None, "grounding_time": "clip"}
    recorded = {**added_since, **recorded}
    assert set(recorded) == set(defaults)
    assert {k: v for k, v in recorded.items() if k not in ignored} == {k: v for k, v in defaults.items() if k not in ignored}
    assert json.loads((checkpoint / "config.json").read_text())["qa_pooling"] == defaults["qa_pooling"] == "cls+max+query"


def test_the_bundled_checkpoint_has_the_clover_tiny_presets_settings() -> None:
    """make_demo trains a new clover-tiny, so the bundled model's config has every setting of the preset
    (a preset changed after the checkpoint was made would otherwise go unnoticed: the video stage that
    `--video_pretrained` reuses carries its own config), but the answer heads' pooling, which make_demo
    sets itself (`--qa_pooling`)."""
    from finetune.pretrain_video import preset_differences

    differences = preset_differences(Path(__file__).resolve().parents[1] / "examples" / "checkpoint")
    assert differences == ["qa_pooling: 'cls+max+query' (preset: 'cls+max')"]


def test_a_video_stage_saved_with_other_settings_is_reused_with_a_warning_that_names_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clover import CloverConfig
    from finetune.pretrain_video import reusable_run

    CloverConfig.from_preset("clover-tiny").save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert reusable_run(tmp_path, 3000) == tmp_path
    assert caplog.records == []
    # As a stage saved before clover-tiny lost its dropout: the old values and the preset's, by field.
    CloverConfig.from_preset("clover-tiny", head_dropout=0.1, text_config={"hidden_dropout_prob": 0.1}).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert reusable_run(tmp_path, 3000) == tmp_path
    (record,) = caplog.records
    assert "head_dropout: 0.1 (preset: 0.0); text_config.hidden_dropout_prob: 0.1 (preset: 0.0)" in record.getMessage()
    assert "leave out --video_pretrained" in record.getMessage()


def test_make_demo_reuses_a_video_pretraining_run_and_says_when_there_is_none(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune import make_demo

    monkeypatch.setattr(make_demo.pretrain_video, "main", lambda argv: pytest.fail("the video stage ran again"))
    # The benchmark has its own seed (0, the one every result was measured on); --seed is the training's.
    generated: list[int] = []
    monkeypatch.setattr(make_demo, "generate_benchmark", lambda out, seed, workers: generated.append(seed))
    with pytest.raises(SystemExit, match="nowhere: no saved model there"):  # after "generating" the benchmark
        make_demo.main(["--data", str(tmp_path / "new"), "--work_dir", str(tmp_path), "--video_pretrained", str(tmp_path / "nowhere")])
    assert generated == [0] and make_demo.parse_args([]).seed == 1
    with pytest.raises(SystemExit, match="nowhere: no saved model there"):
        make_demo.main(["--data", str(bench), "--work_dir", str(tmp_path), "--video_pretrained", str(tmp_path / "nowhere")])
    # A saved run is passed on to the caption pre-training as its start.
    video = tmp_path / "video"
    video.mkdir()
    (video / "config.json").write_text(json.dumps({"video_stem": "deep_conv"}))
    # One that trained for other steps than recipe.json would record is refused, with the flag to pass
    # (the recipe's stage has two parts: the folder reused is the second's, 1,500 unweighted steps).
    second_part = {"checkpoint": str(tmp_path / "video_weighted"), "count_weight": 0.25}  # trained on from the first part
    (video / "video_pretraining.json").write_text(json.dumps({"steps": 500, "arguments": second_part}))
    with pytest.raises(SystemExit, match="trained for 500 steps, not --video_unweighted_steps 1500: pass --video_unweighted_steps 500"):
        make_demo.main(["--data", str(bench), "--work_dir", str(tmp_path), "--video_pretrained", str(video)])
    (video / "video_pretraining.json").write_text(json.dumps({"steps": 1500, "arguments": second_part}))
    started_from: list[Path | None] = []

    class StopAfterTheStart(Exception):
        pass

    def record_start(args: object, data: Path, out: Path, start: Path | None) -> Path:
        started_from.append(start)
        raise StopAfterTheStart

    monkeypatch.setattr(make_demo, "pretrain", record_start)
    with pytest.raises(StopAfterTheStart):
        make_demo.main(["--data", str(bench), "--work_dir", str(tmp_path), "--video_pretrained", str(video)])
    assert started_from == [video]
    # One with another video stem than the recipe's is refused, with the flag to pass (a config.json
    # without the field is from before the field: the patchify stem).
    (video / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="trained with video_stem=patchify, and this recipe asks for deep_conv: pass --video_stem patchify"):
        make_demo.main(["--data", str(bench), "--work_dir", str(tmp_path), "--video_pretrained", str(video)])
    with pytest.raises(StopAfterTheStart):
        make_demo.main(["--data", str(bench), "--work_dir", str(tmp_path), "--video_pretrained", str(video), "--video_stem", "patchify"])


def test_make_demo_stage_timer_records_each_stage_in_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """recipe.json's stage_minutes: each stage's wall-clock seconds / 60, rounded to 0.1, by name."""
    from finetune import make_demo

    clock = iter([100.0, 190.0, 200.0, 200.0])
    monkeypatch.setattr(make_demo.time, "time", lambda: next(clock))
    minutes: dict[str, float] = {}
    with make_demo.stage_timer(minutes, "video pre-training"):
        pass
    with make_demo.stage_timer(minutes, "benchmark"):
        pass
    assert minutes == {"video pre-training": 1.5, "benchmark": 0.0}


def test_make_demo_passes_the_video_learning_rate_to_the_caption_pretraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune import make_demo

    seen: list[list[str]] = []
    monkeypatch.setattr(make_demo.pretraining, "main", seen.append)
    make_demo.pretrain(make_demo.parse_args(["--pretrain_video_lr_multiplier", "0.1"]), tmp_path / "bench", tmp_path / "out", None)
    assert seen[0][seen[0].index("--video_lr_multiplier") + 1] == "0.1"
    assert seen[0][seen[0].index("--output_dir") + 1] == str(tmp_path / "out")


def test_make_demo_runs_its_video_stage_with_the_deep_conv_stem_and_the_report_with_the_presets() -> None:
    from finetune import make_demo, pretrain_video

    demo = make_demo.video_pretrain_arguments(Path("video"), steps=10, batch_size=2, seed=1, video_stem=make_demo.parse_args([]).video_stem)
    assert demo[-2:] == ["--config_overrides", "video_stem=deep_conv"]
    assert "--config_overrides" not in make_demo.video_pretrain_arguments(Path("video"), steps=10, batch_size=2, seed=1)
    assert pretrain_video.build_probe(pretrain_video.parse_args(demo)).clover.config.video_stem == "deep_conv"


def test_make_demo_video_stage_weights_the_shapes_then_trains_on_unweighted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--video_shape_weight W --video_unweighted_steps N: the stage's steps with the shapes weighted W
    from a new encoder, then N steps with every label weighted 1 from the encoder saved by the first
    part (docs/results.md, "Shapes in the answers"); a stage made so is reused by its second part's
    folder and checked against N."""
    from finetune import make_demo, pretrain_video

    stages: list[argparse.Namespace] = []
    monkeypatch.setattr(make_demo.pretrain_video, "main", lambda argv: stages.append(pretrain_video.parse_args(argv)))
    argv = ["--video_stem", "deep_conv", "--video_shape_weight", "4", "--video_unweighted_steps", "1500", "--seed", "2"]
    out = tmp_path / "video"
    assert make_demo.pretrain_video_encoder(make_demo.parse_args(argv), out) == out
    weighted, unweighted = stages
    assert (weighted.steps, weighted.shape_weight, weighted.checkpoint, weighted.seed) == (3000, 4.0, None, 2)
    assert weighted.config_overrides == "video_stem=deep_conv" and weighted.output_dir == str(tmp_path / "video_weighted")
    assert (unweighted.steps, unweighted.shape_weight, unweighted.checkpoint) == (1500, 1.0, str(tmp_path / "video_weighted"))
    assert (weighted.count_weight, unweighted.count_weight) == (0.0, 0.25)  # the counts in the second part
    assert unweighted.config_overrides is None and unweighted.output_dir == str(out)
    assert vars(make_demo.parse_args([])) | {"seed": 2} == vars(make_demo.parse_args(argv))  # the bundled recipe's stage
    # Without the second part the stage is one run, weighted or not.
    stages.clear()
    make_demo.pretrain_video_encoder(make_demo.parse_args(["--video_unweighted_steps", "0"]), out)
    make_demo.pretrain_video_encoder(make_demo.parse_args(["--video_unweighted_steps", "0", "--video_shape_weight", "1"]), out)
    assert [(stage.steps, stage.shape_weight, stage.output_dir) for stage in stages] == [(3000, 4.0, str(out)), (3000, 1.0, str(out))]
    # Reusing such a stage: its saved folder trained the second part's steps.
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"video_stem": "deep_conv"}))
    second_part = {"checkpoint": str(tmp_path / "video_weighted"), "count_weight": 0.25}
    (out / "video_pretraining.json").write_text(json.dumps({"steps": 1500, "arguments": second_part}))
    assert make_demo.pretrain_video_encoder(make_demo.parse_args([*argv, "--video_pretrained", str(out)]), tmp_path) == out
    with pytest.raises(SystemExit, match="trained for 1500 steps, not --video_pretrain_steps 3000"):
        make_demo.pretrain_video_encoder(make_demo.parse_args(["--video_unweighted_steps", "0", "--video_pretrained", str(out)]), tmp_path)
    with pytest.raises(SystemExit, match="not --video_unweighted_steps 500: pass --video_unweighted_steps 1500"):
        make_demo.pretrain_video_encoder(make_demo.parse_args([*argv[:-4], "--video_unweighted_steps", "500", "--video_pretrained", str(out)]), tmp_path)
    # A one-part stage (trained from a new encoder) is not taken for a second part.
    (out / "video_pretraining.json").write_text(json.dumps({"steps": 3000, "arguments": {"checkpoint": None}}))
    with pytest.raises(SystemExit, match="one-part video stage .* pass --video_unweighted_steps 0 --video_pretrain_steps 3000"):
        make_demo.pretrain_video_encoder(make_demo.parse_args([*argv, "--video_pretrained", str(out)]), tmp_path)
    # Its shape weight must be the recipe's for the part saved there: 1 for a second part, else --video_shape_weight.
    one_part = ["--video_unweighted_steps", "0", "--video_count_weight", "0", "--video_pretrained", str(out)]
    assert make_demo.pretrain_video_encoder(make_demo.parse_args([*one_part, "--video_shape_weight", "1"]), tmp_path) == out
    with pytest.raises(SystemExit, match="trained with --shape_weight 1, and this recipe asks for --video_shape_weight 4: pass --video_shape_weight 1"):
        make_demo.pretrain_video_encoder(make_demo.parse_args(one_part), tmp_path)
    (out / "video_pretraining.json").write_text(json.dumps({"steps": 1500, "arguments": {**second_part, "shape_weight": 4.0}}))
    with pytest.raises(SystemExit, match="trained with --shape_weight 4, and the second part of this recipe's video stage is unweighted"):
        make_demo.pretrain_video_encoder(make_demo.parse_args([*argv, "--video_pretrained", str(out)]), tmp_path)


def test_make_demo_video_count_weight_goes_to_the_stage_last_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--video_count_weight W: the count output is trained in the part saved in the stage's folder
    (the unweighted second part, or the only part), with its --video_count_target, and a reused stage
    must have been trained with both."""
    from finetune import make_demo, pretrain_video

    stages: list[argparse.Namespace] = []
    monkeypatch.setattr(make_demo.pretrain_video, "main", lambda argv: stages.append(pretrain_video.parse_args(argv)))
    out = tmp_path / "video"
    make_demo.pretrain_video_encoder(make_demo.parse_args(["--video_count_weight", "0.5"]), out)
    make_demo.pretrain_video_encoder(make_demo.parse_args(["--video_count_weight", "0.5", "--video_unweighted_steps", "0"]), out)
    make_demo.pretrain_video_encoder(make_demo.parse_args(["--video_count_weight", "0.5", "--video_count_target", "bound"]), out)
    assert [(stage.output_dir, stage.count_weight, stage.count_target) for stage in stages] == [
        (str(tmp_path / "video_weighted"), 0.0, "totals"), (str(out), 0.5, "totals"), (str(out), 0.5, "totals"),
        (str(tmp_path / "video_weighted"), 0.0, "totals"), (str(out), 0.5, "bound"),
    ]  # fmt: skip
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"video_stem": "deep_conv"}))
    record = {"steps": 1500, "arguments": {"checkpoint": str(tmp_path / "video_weighted"), "count_weight": 0.5}}
    (out / "video_pretraining.json").write_text(json.dumps(record))
    reuse = ["--video_pretrained", str(out)]
    assert make_demo.pretrain_video_encoder(make_demo.parse_args([*reuse, "--video_count_weight", "0.5"]), tmp_path) == out
    # Recorded before --count_target, the stage counted totals: asked for bound counts, it is refused.
    with pytest.raises(SystemExit, match="trained with --count_target totals, .* asks for --video_count_target bound: pass --video_count_target totals"):
        make_demo.pretrain_video_encoder(make_demo.parse_args([*reuse, "--video_count_weight", "0.5", "--video_count_target", "bound"]), tmp_path)
    with pytest.raises(SystemExit, match="trained with --count_weight 0.5, and this recipe asks for --video_count_weight 0: pass --video_count_weight 0.5"):
        make_demo.pretrain_video_encoder(make_demo.parse_args([*reuse, "--video_count_weight", "0"]), tmp_path)
    del record["arguments"]["count_weight"]  # a stage recorded before the count output had none
    (out / "video_pretraining.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="trained with --count_weight 0, and this recipe asks for --video_count_weight 1"):
        make_demo.pretrain_video_encoder(make_demo.parse_args([*reuse, "--video_count_weight", "1"]), tmp_path)


def _synthetic_breakdown():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import synthetic_breakdown

    return synthetic_breakdown


def test_breakdown_reads_how_a_question_names_its_object_and_its_clip() -> None:
    tool = _synthetic_breakdown()
    assert tool.reference_form("What does the big red circle do 3 times ?") == "size, colour and shape"
    assert tool.reference_form("What does the red circle do after grow ?") == "colour and shape"
    assert tool.reference_form("How many times does the star blink ?") == "shape"
    assert tool.reference_form("What does the white object do once ?") == "colour"
    assert tool.reference_form("how many objects are there ?") == "none"
    assert tool.question_form("how many times does the red object blink ?") == "how many times"
    assert tool.question_form("what shape is the red object ?") == "what shape"
    assert tool.question_form("which shape rotates ?") == "which shape"
    assert tool.scene_name("syn01400.gif") == tool.scene_name("YouTubeClips/syn01400_0_4.avi") == "syn01400"


def test_breakdown_counts_each_question_once_by_hand() -> None:
    """Rows by (question form, objects in the clip); accuracy and Count's MSE computed by hand; an
    unanswered question counts wrong and, as in evaluation, as the count range's midpoint in the MSE."""
    from clover.metrics import Prediction

    tool = _synthetic_breakdown()
    records = [
        {"id": "1", "video": "syn00001.gif", "question": "How many times does the star blink ?", "answer": "2"},
        {"id": "2", "video": "syn00002.gif", "question": "How many times does the red star jump ?", "answer": "3"},
        {"id": "3", "video": "syn00003.gif", "question": "How many times does the circle blink ?", "answer": "1"},
        {"id": "4", "video": "syn00003.gif", "question": "How many times does the circle jump ?", "answer": "4"},
    ]  # fmt: skip
    predictions = {"1": Prediction(2, 2.2), "2": Prediction(1, 0.8), "3": Prediction(3, 3.4)}  # "4" unanswered
    objects = {"syn00001": 1, "syn00002": 1, "syn00003": 2}
    result = tool.breakdown("tgif-count", records, predictions, objects, count_range=(1, 4))
    # Squared errors: 0, 4, 4, and (2.5 - 4)^2 = 2.25 for the unanswered one (the midpoint of 1..4).
    assert result["rows"] == [
        {"group": "named by colour and shape", "objects": 1, "questions": 1, "accuracy": 0.0, "mse": 4.0},
        {"group": "named by shape", "objects": 1, "questions": 1, "accuracy": 100.0, "mse": 0.0},
        {"group": "named by shape", "objects": 2, "questions": 2, "accuracy": 0.0, "mse": 3.125},
    ]
    assert result["by_objects"] == [
        {"group": "all", "objects": 1, "questions": 2, "accuracy": 50.0, "mse": 2.0},
        {"group": "all", "objects": 2, "questions": 2, "accuracy": 0.0, "mse": 3.125},
    ]
    assert result["overall"] == {"group": "all", "questions": 4, "accuracy": 25.0, "mse": round(10.25 / 4, 3)}


def test_breakdown_tool_evaluates_every_task_of_the_benchmark(bench: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """End to end on a generated benchmark: every test question counted once, in a row of its clip's
    number of objects, and the overall score is `finetune.evaluate`'s."""
    import finetune.evaluate

    tool = _synthetic_breakdown()
    output = tmp_path / "breakdown.json"
    result = tool.main(["--model", str(tiny_checkpoint), "--data", str(bench), "--num_workers", "0", "--output", str(output)])
    assert json.loads(output.read_text()) == result
    assert set(result["tasks"]) == {"tgif-action", "tgif-transition", "tgif-frameqa", "tgif-count", "msvd-qa"}
    objects = {name: len(scene["objects"]) for name, scene in _scenes(bench).items()}
    for task, folder, videos in tool.TASKS:
        rows = result["tasks"][task]["rows"]
        records = finetune.evaluate.load_task(task, bench / folder, bench / videos, splits=("test",)).splits["test"]
        assert sum(row["questions"] for row in rows) == result["tasks"][task]["overall"]["questions"] == len(records)
        assert sum(row["questions"] for row in result["tasks"][task]["by_objects"]) == len(records)
        assert {row["objects"] for row in rows} <= {objects[tool.scene_name(r["video"])] for r in records}
    evaluated = finetune.evaluate.main([
        "--model", str(tiny_checkpoint), "--task", "tgif-frameqa", "--annotations", str(bench / "tgif"),
        "--videos", str(bench / "tgif" / "gifs"), "--num_workers", "0", "--output_dir", str(tmp_path / "eval"),
    ])  # fmt: skip
    assert result["tasks"]["tgif-frameqa"]["overall"]["accuracy"] == round(100 * evaluated["accuracy"], 1)
    with pytest.raises(SystemExit, match="scenes.json not found"):
        tool.main(["--model", str(tiny_checkpoint), "--data", str(tmp_path)])
