"""VideoQADataset and VideoCaptionDataset on clips written into tmp_path: item shapes and labels per task
kind, per-item determinism, unreadable and missing clips skipped and counted, DataLoader workers."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import DataLoader

from clover.data.datasets import ClipCache, VideoCaptionDataset, VideoQADataset
from clover.processing_clover import CloverProcessor
from clover.video import VideoReadError, decode_video
from tests.media import index_clip, random_clip, text_as_video, truncated_copy

T, S = 8, 112  # the clover-tiny preset's frames and image size


@pytest.fixture(scope="module")
def processor() -> CloverProcessor:
    return CloverProcessor.from_preset("clover-tiny")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> str:
    """A folder with two good clips of different sizes and one text file named like a video."""
    root = tmp_path_factory.mktemp("videos")
    index_clip(root / "a.mp4", num_frames=24, size=(64, 48))
    random_clip(root / "b.mp4", num_frames=12, size=(48, 64), seed=1)
    text_as_video(root / "broken.mp4")
    return root


def open_records() -> list[dict]:
    return [
        {"id": "q0", "video": "a.mp4", "question": "what colour is it?", "answer": "red", "type": "color"},
        {"id": "q1", "video": "b.mp4", "question": "what is it?", "answer": "zebra", "type": "object"},
    ]


def mc_records() -> list[dict]:
    return [
        {"id": "m0", "video": "a.mp4", "question": "where does it go?", "answer": 1, "candidates": ["up", "left"], "type": None},
        {"id": "m1", "video": "b.mp4", "question": "what happens?", "answer": 4, "candidates": list("abcde"), "type": None},
    ]


def test_open_items_have_shapes_and_labels(processor, videos):
    dataset = VideoQADataset(open_records(), videos, processor, kind="open", answer_to_label={"red": 0, "blue": 1})
    first, second = dataset[0], dataset[1]
    assert first["pixel_values"].shape == (T, 3, S, S) and first["pixel_values"].dtype == torch.float32
    assert (first["label"], second["label"]) == (0, -100)  # "zebra" is outside the vocabulary
    assert (first["id"], first["question"], first["type"], first["answer"]) == ("q0", "what colour is it?", "color", "red")
    assert "candidates" not in first
    batch = processor.collate([first, second])
    assert batch["pixel_values"].shape == (2, T, 3, S, S)
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].tolist() == [0, -100]
    assert batch["labels"].dtype == torch.long
    assert (batch["ids"], batch["types"], batch["answers"]) == (["q0", "q1"], ["color", "object"], ["red", "zebra"])
    assert batch["skipped"] == 0


def test_mc_items_and_batch(processor, videos):
    dataset = VideoQADataset(mc_records(), videos, processor, kind="mc")
    items = [dataset[0], dataset[1]]
    assert [item["label"] for item in items] == [1, 4]
    assert items[1]["candidates"] == list("abcde")
    batch = processor.collate(items)
    assert batch["input_ids"].shape[:2] == (2, 5)
    assert batch["candidate_mask"].tolist() == [[True, True, False, False, False], [True] * 5]
    assert batch["labels"].tolist() == [1, 4] and batch["labels"].dtype == torch.long
    assert batch["candidates"] == [["up", "left"], list("abcde")]


def test_count_labels_are_float(processor, videos):
    records = [{"id": "c0", "video": "a.mp4", "question": "how many times?", "answer": 3, "type": None}]
    dataset = VideoQADataset(records, videos, processor, kind="count")
    batch = processor.collate([dataset[0]])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [3.0]


def test_training_items_depend_on_seed_epoch_and_index_only(processor, videos):
    def item(seed: int, epoch: int) -> torch.Tensor:
        dataset = VideoQADataset(
            open_records(), videos, processor, kind="open", answer_to_label={}, training=True, seed=seed
        )
        dataset.set_epoch(epoch)
        return dataset[0]["pixel_values"]

    torch.testing.assert_close(item(0, 0), item(0, 0), rtol=0, atol=0)
    assert not torch.equal(item(0, 0), item(0, 1))
    assert not torch.equal(item(0, 0), item(1, 0))


def test_unreadable_and_missing_clips_are_skipped_and_counted(processor, videos, caplog):
    good = open_records()
    records = [*good, {**good[0], "id": "bad", "video": "broken.mp4"}, {**good[0], "id": "gone", "video": "missing.mp4"}]
    dataset = VideoQADataset(records, videos, processor, kind="open", answer_to_label={"red": 0})
    with caplog.at_level(logging.WARNING, logger="clover.data.datasets"):
        items = [dataset[i] for i in range(len(dataset))] + [dataset[2]]  # the broken clip twice
    assert items[2] is None and items[3] is None and items[4] is None
    assert dataset.skipped == 3
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, "each unreadable file is logged once"
    assert any("broken.mp4" in message for message in warnings)
    assert any("missing.mp4" in message and "no such file" in message for message in warnings)
    batch = processor.collate(items[1:4])
    assert batch["skipped"] == 2 and batch["ids"] == ["q1"] and batch["pixel_values"].shape[0] == 1
    assert processor.collate([None, None]) == {"skipped": 2, "ids": []}


def test_clip_cache_gives_the_same_items_and_decodes_each_clip_once(processor, videos, monkeypatch):
    records = [*open_records(), {**open_records()[0], "id": "q2"}]  # a.mp4 asked about twice
    cache = ClipCache(max_bytes=2**30)
    plain = VideoQADataset(records, videos, processor, kind="open", answer_to_label={}, training=True, seed=3)
    cached = VideoQADataset(records, videos, processor, kind="open", answer_to_label={}, training=True, seed=3, clip_cache=cache)
    for epoch in range(2):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(records)):
            torch.testing.assert_close(cached[index]["pixel_values"], plain[index]["pixel_values"], rtol=0, atol=0)
    assert len(cache) == 2 and cache.nbytes == 24 * 48 * 64 * 3 + 12 * 64 * 48 * 3  # every frame of a.mp4 and b.mp4
    # A test-time dataset over the same files shares the cache: nothing is decoded again.
    monkeypatch.setattr("clover.data.datasets.decode_video", lambda *args, **kwargs: pytest.fail("decoded again"))
    monkeypatch.setattr("clover.data.datasets.read_frames", lambda *args, **kwargs: pytest.fail("read from disk"))
    evaluation = VideoQADataset(records, videos, processor, kind="open", answer_to_label={}, clip_cache=cache)
    assert evaluation[1]["pixel_values"].shape == (T, 3, S, S)


def test_clip_cache_reads_from_disk_once_its_budget_is_spent(processor, videos):
    cache = ClipCache(max_bytes=24 * 48 * 64 * 3)  # a.mp4 fits exactly, then nothing more
    dataset = VideoQADataset(open_records(), videos, processor, kind="open", answer_to_label={}, clip_cache=cache)
    plain = VideoQADataset(open_records(), videos, processor, kind="open", answer_to_label={})
    for index in (0, 1, 1):
        torch.testing.assert_close(dataset[index]["pixel_values"], plain[index]["pixel_values"], rtol=0, atol=0)
    assert len(cache) == 1 and cache.nbytes == cache.max_bytes
    small = ClipCache(max_bytes=1000)  # smaller than any clip: every read goes to disk, nothing is kept
    dataset = VideoQADataset(open_records(), videos, processor, kind="open", answer_to_label={}, clip_cache=small)
    assert dataset[0]["pixel_values"].shape == (T, 3, S, S) and len(small) == 0 and small.nbytes == 0
    with pytest.raises(ValueError, match="max_bytes must be at least 0"):
        ClipCache(-1)


def test_clip_cache_skips_unreadable_clips_as_reading_does(processor, videos):
    records = [{**open_records()[0], "id": "bad", "video": "broken.mp4"}, {**open_records()[0], "id": "gone", "video": "missing.mp4"}]
    cache = ClipCache(max_bytes=2**30)
    dataset = VideoQADataset(records, videos, processor, kind="open", answer_to_label={}, clip_cache=cache)
    assert dataset[0] is None and dataset[1] is None and dataset[0] is None
    assert dataset.skipped == 3 and len(cache) == 0


def test_clip_cache_leaves_a_clip_it_cannot_decode_whole_to_read_frames(processor, tmp_path):
    """Damage past the frames an item needs fails the whole-clip decode, not the read: the item is kept."""
    truncated_copy(index_clip(tmp_path / "whole.gif", num_frames=24), tmp_path / "cut.gif", 0.9)
    with pytest.raises(VideoReadError, match="cut.gif"):  # the cut GIF cannot be decoded whole...
        decode_video(tmp_path / "cut.gif")
    records = [{**open_records()[0], "video": "cut.gif"}]
    cache = ClipCache(max_bytes=2**30)
    dataset = VideoQADataset(records, tmp_path, processor, kind="open", answer_to_label={}, clip_cache=cache)
    plain = VideoQADataset(records, tmp_path, processor, kind="open", answer_to_label={})
    expected = plain[0]["pixel_values"]  # ...but 8 of its frames can be read
    torch.testing.assert_close(dataset[0]["pixel_values"], expected, rtol=0, atol=0)
    torch.testing.assert_close(dataset[0]["pixel_values"], expected, rtol=0, atol=0)  # again, from disk
    assert dataset.skipped == 0 and len(cache) == 0


def test_dataloader_with_workers(processor, videos):
    records = [*open_records(), {**open_records()[0], "id": "bad", "video": "broken.mp4"}, {**open_records()[1], "id": "q3"}]
    dataset = VideoQADataset(records, videos, processor, kind="open", answer_to_label={"red": 0}, training=True)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=processor.collate)
    batches = list(loader)
    assert sum(batch["skipped"] for batch in batches) == 1
    assert sorted(id_ for batch in batches for id_ in batch["ids"]) == ["q0", "q1", "q3"]
    assert all(batch["pixel_values"].shape[1:] == (T, 3, S, S) for batch in batches)


def test_caption_dataset(processor, videos):
    pairs = [
        {"video": "a.mp4", "caption": "a white square blinks"},
        {"video": "broken.mp4", "caption": "nothing"},
        {"video": "b.mp4", "caption": "noise", "id": "n"},
    ]
    dataset = VideoCaptionDataset(pairs, videos, processor, seed=0)
    items = [dataset[i] for i in range(len(dataset))]
    assert items[1] is None
    assert items[0]["pixel_values"].shape == (T, 3, S, S) and items[0]["id"] == "a.mp4"
    batch = processor.collate(items)
    assert batch["skipped"] == 1 and batch["ids"] == ["a.mp4", "n"] and batch["captions"] == ["a white square blinks", "noise"]
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= processor.max_text_length
    assert "labels" not in batch


def test_bad_arguments_are_refused(processor, videos):
    with pytest.raises(ValueError, match="answer_to_label"):
        VideoQADataset(open_records(), videos, processor, kind="open")
    with pytest.raises(ValueError, match="kind must be one of"):
        VideoQADataset(open_records(), videos, processor, kind="frameqa")
    with pytest.raises(ValueError, match="need candidates"):
        VideoQADataset(open_records(), videos, processor, kind="mc")


def test_video_input_baselines(processor, videos):
    """'middle' shows the middle frame in every slot, 'none' a blank clip (the normalised mean colour)."""
    full, middle, blank = (
        VideoQADataset(open_records(), videos, processor, kind="open", answer_to_label={"red": 0}, video_input=mode)[0]
        for mode in ("full", "middle", "none")
    )
    frames = middle["pixel_values"]
    assert all(torch.equal(frames[i], frames[0]) for i in range(T))
    assert torch.equal(frames[0], full["pixel_values"][T // 2])
    assert torch.count_nonzero(blank["pixel_values"]) == 0 and blank["pixel_values"].shape == (T, 3, S, S)
    with pytest.raises(ValueError, match="video_input must be one of"):
        VideoQADataset(open_records(), videos, processor, kind="open", answer_to_label={}, video_input="audio")
