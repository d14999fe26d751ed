"""app/service.py on a random clover-tiny checkpoint and small generated clips: answer ordering and
probabilities, multiple choice, the feature cache (encoder calls, entry and byte bounds), the upload and
duration limits, each bad input's message, and search over every clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.service import ServiceError, VideoQAService
from clover.inference import FeatureCache
from clover.modeling_clover import VideoFeatures
from tests.media import index_clip, random_clip, text_as_video


@pytest.fixture(scope="module")
def service(tiny_checkpoint: Path) -> VideoQAService:
    return VideoQAService(tiny_checkpoint)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three different short clips (1.2 s, 160x120)."""
    directory = tmp_path_factory.mktemp("clips")
    return [random_clip(directory / f"clip{seed}.mp4", num_frames=30, size=(160, 120), seed=seed) for seed in range(3)]


def count_encoder_calls(service: VideoQAService) -> list[int]:
    """Count calls of the real video encoder (its forward wrapped, not replaced)."""
    encoder = service.inference.model.clover.video_encoder
    calls = [0]
    forward = encoder.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    encoder.forward = counted
    return calls


# --- answers -------------------------------------------------------------------------------------


def test_answer_top_k_best_first(service, clips):
    answer = service.answer(clips[0], "what color is the circle ?", top_k=3)
    probabilities = [p for _, p in answer.answers]
    assert len(answer.answers) == 3 and answer.head == "open"
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
    assert {text for text, _ in answer.answers} <= set(service.inference.model.config.id2label.values())


def test_answer_frames_timestamps_and_relevance(service, clips):
    answer = service.answer(clips[0], "what does the star do ?")
    assert answer.frames.shape == (8, 120, 160, 3) and answer.frames.dtype == np.uint8
    assert answer.timestamps.shape == (8,) and np.all(np.diff(answer.timestamps) > 0)
    assert answer.relevance.shape == (8,) and answer.relevance.sum() == pytest.approx(1, abs=1e-5)
    # A temporal slot covers two frames: they share its relevance equally.
    assert np.allclose(answer.relevance[0::2], answer.relevance[1::2])


def test_relevance_comes_from_the_question_pooling_where_the_model_has_one(tiny_checkpoint, clips):
    """With `qa_pooling="cls+max+query"` the per-frame relevance is the pooling's attention summed per
    temporal slot (docs/app.md); without it, the fused [CLS]'s."""
    from clover.inference import CloverInference, frame_relevance
    from clover.modeling_clover import CloverForVideoQA
    from clover.processing_clover import CloverProcessor

    torch.manual_seed(0)
    model = CloverForVideoQA.from_pretrained(tiny_checkpoint, qa_pooling="cls+max+query")
    engine = CloverInference(model, CloverProcessor.from_pretrained(tiny_checkpoint))
    clip, _ = engine.clip_features(clips[0])
    question = "what does the star do ?"
    text = engine.processor.encode_text([question])
    with torch.inference_mode():
        states = model.clover.encode_text(text["input_ids"], text["attention_mask"])
        attention = model.heads["question_pooling"].attention(states, text["attention_mask"], clip.tokens)[0]  # (n,)
        cls = model(video_features=VideoFeatures(tokens=clip.tokens), head="open", output_cls_attention=True, **text).cls_attention[0]
    relevance = engine.answer(clip, question).relevance
    assert np.allclose(relevance, frame_relevance(attention, 4, 8), atol=1e-6)
    assert not np.allclose(relevance, frame_relevance(cls, 4, 8), atol=1e-4)
    plain = CloverInference.from_pretrained(tiny_checkpoint)
    plain_clip, _ = plain.clip_features(clips[0])
    with torch.inference_mode():
        plain_cls = plain.model(video_features=VideoFeatures(tokens=plain_clip.tokens), head="open", output_cls_attention=True, **text).cls_attention[0]
    assert np.allclose(plain.answer(plain_clip, question).relevance, frame_relevance(plain_cls, 4, 8), atol=1e-6)


def test_how_many_times_goes_to_the_count_head(service, clips):
    answer = service.answer(clips[0], "How many times does the red circle jump ?")
    assert answer.head == "count" and len(answer.answers) == 1
    assert answer.answers[0][0] in {str(n) for n in range(0, 11)}
    assert service.count(clips[0], "how many objects are there ?").head == "count"


def test_multiple_choice_ranks_every_distinct_candidate(service, clips):
    answer = service.choose(clips[1], "what does the circle do ?", ["jump", "blink", " Jump ", "rotate"])
    assert answer.head == "mc"
    assert sorted(text for text, _ in answer.answers) == ["blink", "jump", "rotate"]
    probabilities = [p for _, p in answer.answers]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-5)


# --- cache -----------------------------------------------------------------------------------------


def test_second_question_reuses_the_encoded_clip(tiny_checkpoint, clips):
    service = VideoQAService(tiny_checkpoint)
    calls = count_encoder_calls(service)
    first = service.answer(clips[2], "what color is the square ?")
    second = service.answer(clips[2], "where does the square move ?")
    service.choose(clips[2], "what shape is red ?", ["circle", "square"])
    assert calls[0] == 1 and not first.cached and second.cached
    assert service.cache.stats.hits == 2 and service.cache.stats.misses == 1
    assert second.timings["read"] == 0 and second.timings["encode"] == 0
    # A different window of the same file is a different entry.
    service.answer(clips[2], "what color is the square ?", start_sec=0.0, end_sec=0.6)
    assert calls[0] == 2


def test_same_bytes_under_another_name_hit_the_cache(tiny_checkpoint, clips, tmp_path):
    service = VideoQAService(tiny_checkpoint)
    calls = count_encoder_calls(service)
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(clips[0].read_bytes())
    service.answer(clips[0], "what color is the circle ?")
    assert service.answer(copy, "what color is the circle ?").cached and calls[0] == 1


def test_cache_bounded_in_entries(tiny_checkpoint, clips):
    service = VideoQAService(tiny_checkpoint, cache_entries=2)
    for clip in clips:
        service.answer(clip, "what color is the circle ?")
    stats = service.cache.stats
    assert len(service.cache) == stats.entries == 2 and stats.evictions == 1
    assert not service.answer(clips[0], "what color is the circle ?").cached  # the oldest went first
    assert service.answer(clips[2], "what color is the circle ?").cached


def test_cache_bounded_in_bytes(tiny_checkpoint, clips):
    probe = VideoQAService(tiny_checkpoint)
    probe.answer(clips[0], "what color is the circle ?")
    entry_bytes = probe.cache.stats.bytes
    assert entry_bytes > 8 * 120 * 160 * 3  # previews plus tokens
    service = VideoQAService(tiny_checkpoint, cache_mb=1.5 * entry_bytes / 2**20)
    for clip in clips:
        service.answer(clip, "what color is the circle ?")
        assert service.cache.stats.bytes <= 1.5 * entry_bytes
    assert len(service.cache) == 1


def test_feature_cache_skips_an_entry_larger_than_the_budget(service, clips):
    entry, _ = service.inference.clip_features(clips[0])
    cache = FeatureCache(max_entries=4, max_bytes=entry.nbytes - 1)
    cache.put(entry)
    assert len(cache) == 0 and cache.stats.bytes == 0


# --- limits and bad input --------------------------------------------------------------------------


def test_upload_size_limit_checks_the_file_on_disk(tiny_checkpoint, clips):
    service = VideoQAService(tiny_checkpoint, max_upload_mb=0.001)
    with pytest.raises(ServiceError, match=r"^file is \d+ MB; the limit is 0.001 MB$"):
        service.answer(clips[0], "what color is the circle ?")


def test_duration_limit_uses_the_probed_duration(tiny_checkpoint, tmp_path):
    service = VideoQAService(tiny_checkpoint, max_duration_sec=1)
    long_clip = index_clip(tmp_path / "long.mp4", num_frames=50)  # 2 s at 25 fps
    with pytest.raises(ServiceError, match=r"^clip is 2 s long; the limit is 1 s$"):
        service.answer(long_clip, "what color is the circle ?")
    assert service.cache.stats.entries == 0


@pytest.mark.parametrize(
    "question, message",
    [("", "question is empty"), ("   ", "question is empty"), ("why?" * 80, "question is 320 characters long; the limit is 300")],
)
def test_bad_questions(service, clips, question, message):
    with pytest.raises(ServiceError, match=f"^{message}$"):
        service.answer(clips[0], question)


def test_question_over_the_token_limit(service, clips):
    limit = service.inference.processor.max_text_length
    with pytest.raises(ServiceError, match=rf"^question is \d+ tokens long; the limit is {limit}$"):
        service.answer(clips[0], "red " * limit)


@pytest.mark.parametrize(
    "candidates, message",
    [
        (["jump"], "multiple choice needs 2 to 10 different candidates; got 1"),
        (["jump", "JUMP"], "multiple choice needs 2 to 10 different candidates; got 1"),
        ([str(n) for n in range(11)], "multiple choice needs 2 to 10 different candidates; got 11"),
        (["jump", ""], "candidate 2 is empty"),
    ],
)
def test_bad_candidates(service, clips, candidates, message):
    with pytest.raises(ServiceError, match=f"^{message}$"):
        service.choose(clips[0], "what does the circle do ?", candidates)


def test_unreadable_and_missing_files(service, tmp_path):
    not_video = text_as_video(tmp_path / "notes.mp4")
    with pytest.raises(ServiceError, match=r"^cannot read video '.*notes\.mp4': ") as error:
        service.answer(not_video, "what color is the circle ?")
    assert isinstance(error.value.__cause__, ValueError)
    with pytest.raises(ServiceError, match=r"^video file 'absent\.mp4' not found$"):
        service.answer(tmp_path / "absent.mp4", "what color is the circle ?")
    with pytest.raises(ServiceError, match="^no video given$"):
        service.answer(None, "what color is the circle ?")


def test_bad_window(service, clips):
    with pytest.raises(ServiceError, match=r"^end time 0.5 s is not after start time 1 s$"):
        service.answer(clips[0], "what color is the circle ?", start_sec=1.0, end_sec=0.5)
    with pytest.raises(ServiceError, match=r"^start time 5 s is past the end of the clip \(1.2 s\)$"):
        service.answer(clips[1], "what color is the circle ?", start_sec=5.0)


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(ServiceError, match=r"checkpoint '.*nowhere' not found\. Point --checkpoint"):
        VideoQAService(tmp_path / "nowhere")


# --- search ----------------------------------------------------------------------------------------


def test_search_ranks_every_clip(service, clips):
    hits = service.search("a red circle jumps", [str(clip) for clip in clips])
    assert sorted(hit.video for hit in hits) == sorted(str(clip) for clip in clips)
    similarities = [hit.similarity for hit in hits]
    assert similarities == sorted(similarities, reverse=True) and all(-1 <= s <= 1 for s in similarities)
    assert sum(hit.probability for hit in hits) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ServiceError, match="^query is empty$"):
        service.search(" ", [str(clips[0])])


def test_int8_model_answers(tiny_checkpoint, clips):
    service = VideoQAService(tiny_checkpoint, quantize_int8=True)
    assert len(service.answer(clips[0], "what color is the circle ?").answers) == 5
