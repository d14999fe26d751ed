"""Tests for `clover.video`: sampling, seek modes, containers, GIFs, decord, and broken inputs.

Every clip is an index clip (see `tests/media.py`): frame i spells i, so each test checks which
frames a reader returned, not only their shape.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from clover import video
from clover.video import (
    VideoReadError,
    decode_video,
    probe_video,
    read_frames,
    read_frames_with_timestamps,
    sample_frames,
    write_video,
)
from tests.media import (
    animated_gif,
    audio_only_mp4,
    decode_index,
    index_clip,
    index_frame,
    random_clip,
    text_as_video,
    transparent_gif,
    truncated_copy,
    vfr_index_clip,
    zero_byte,
)

FPS = 25


def indices(frames: np.ndarray) -> list[int]:
    return [decode_index(frame) for frame in frames]


@pytest.fixture(scope="module")
def clip50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 frames (2 s at 25 fps), H.264 in mp4, a keyframe every 10 frames."""
    return index_clip(tmp_path_factory.mktemp("clips") / "clip50.mp4", 50, keyframe_interval=10)


# ------------------------------------------------------------------------------------ containers
CONTAINERS = {".mp4": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9", ".mkv": "libx264", ".mov": "libx264"}


@pytest.mark.parametrize("suffix", list(CONTAINERS))
def test_each_container_gives_the_centre_frames(tmp_path: Path, suffix: str) -> None:
    if CONTAINERS[suffix] not in av.codecs_available:
        pytest.skip(f"encoder {CONTAINERS[suffix]} missing from this FFmpeg build")
    path = index_clip(tmp_path / f"clip{suffix}", 50)
    frames, times = read_frames_with_timestamps(path, 8)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    # 50 frames in 8 segments: centre k = floor((2k + 1) * 50 / 16).
    assert indices(frames) == [3, 9, 15, 21, 28, 34, 40, 46]
    np.testing.assert_allclose(times, np.array([3, 9, 15, 21, 28, 34, 40, 46]) / FPS, atol=1e-6)


def test_frames_are_rgb(tmp_path: Path) -> None:
    red = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    red[..., 0] = 220
    frames = read_frames(write_video(tmp_path / "red.mp4", red), 2)
    mean = frames.reshape(-1, 3).mean(axis=0)
    assert mean[0] > 180 and mean[1] < 60 and mean[2] < 60, mean


# -------------------------------------------------------------------------------------- sampling
def test_test_time_indices_by_hand(clip50: Path) -> None:
    # 4 segments of 12.5 frames: centres floor(6.25), floor(18.75), floor(31.25), floor(43.75).
    assert indices(read_frames(clip50, 4, seek="exact")) == [6, 18, 31, 43]
    # One segment: the middle frame of 50.
    assert indices(read_frames(clip50, 1, seek="exact")) == [25]


def test_training_samples_stay_inside_their_segments(clip50: Path) -> None:
    rng = np.random.default_rng(0)
    bounds = [0, 6, 12, 18, 25, 31, 37, 43, 50]  # floor(k * 50 / 8)
    seen = set()
    for _ in range(5):
        got = indices(read_frames(clip50, 8, training=True, generator=rng))
        for k, index in enumerate(got):
            assert bounds[k] <= index < bounds[k + 1], (k, index)
        seen.add(tuple(got))
    assert len(seen) > 1  # it is random


def test_training_is_reproducible_with_a_seeded_generator(clip50: Path) -> None:
    first = read_frames(clip50, 8, training=True, generator=np.random.default_rng(7))
    second = read_frames(clip50, 8, training=True, generator=np.random.default_rng(7))
    assert indices(first) == indices(second)


def test_start_end_window(clip50: Path) -> None:
    # Window [0.4 s, 1.2 s) holds frames 10..29 (20 frames); 4 segments of 5: centres 12, 17, 22, 27.
    frames, times = read_frames_with_timestamps(clip50, 4, start_sec=0.4, end_sec=1.2, seek="exact")
    assert indices(frames) == [12, 17, 22, 27]
    assert np.all((times >= 0.4) & (times < 1.2))


def test_window_outside_the_clip_is_an_error(clip50: Path) -> None:
    with pytest.raises(VideoReadError, match="no frames between"):
        read_frames(clip50, 4, start_sec=5.0)


def test_short_clip_repeats_frames(tmp_path: Path) -> None:
    path = index_clip(tmp_path / "three.mp4", 3)
    # 3 frames in 8 segments: centre k = floor((2k + 1) * 3 / 16).
    assert indices(read_frames(path, 8)) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_one_frame_clip(tmp_path: Path) -> None:
    path = index_clip(tmp_path / "one.mp4", 1)
    frames, times = read_frames_with_timestamps(path, 4)
    assert indices(frames) == [0, 0, 0, 0]
    assert np.all(times == 0.0)
    assert indices(read_frames(path, 4, training=True, generator=np.random.default_rng(0))) == [0, 0, 0, 0]


# ------------------------------------------------------------------------------------ seek modes
def test_keyframe_mode_picks_keyframes_inside_segments(clip50: Path) -> None:
    # Keyframes at 0, 10, 20, 30, 40; segments [0,6) [6,12) [12,18) [18,25) [25,31) [31,37) [37,43) [43,50).
    # Segments with a keyframe take it; the others ([12,18), [31,37), [43,50)) take their centre.
    frames, times = read_frames_with_timestamps(clip50, 8, seek="keyframe")
    assert indices(frames) == [0, 10, 15, 20, 30, 34, 40, 46]
    np.testing.assert_allclose(times, np.array(indices(frames)) / FPS, atol=1e-6)


def test_keyframe_mode_takes_the_keyframe_nearest_the_centre(tmp_path: Path) -> None:
    # Keyframes every 5 frames; 40 frames in 2 segments [0,20) [20,40), centres 10 and 30.
    path = index_clip(tmp_path / "k5.mp4", 40, keyframe_interval=5)
    assert indices(read_frames(path, 2, seek="keyframe")) == [10, 30]


def test_auto_is_exact_on_short_clips_and_training_is_always_exact(clip50: Path) -> None:
    assert indices(read_frames(clip50, 8, seek="auto")) == [3, 9, 15, 21, 28, 34, 40, 46]
    rng = np.random.default_rng(3)
    got = indices(read_frames(clip50, 8, training=True, seek="keyframe", generator=rng))
    expected = np.random.default_rng(3).integers([0, 6, 12, 18, 25, 31, 37, 43], [6, 12, 18, 25, 31, 37, 43, 50])
    assert got == expected.tolist()


def test_auto_uses_keyframes_beyond_30_seconds(tmp_path: Path) -> None:
    # 40 frames at 1 fps = 40 s, keyframes every 10: keyframe mode applies.
    path = index_clip(tmp_path / "long.mp4", 40, size=(32, 32), fps=1, keyframe_interval=10)
    # Segments of 10 frames [0,10) [10,20) [20,30) [30,40): each holds exactly one keyframe.
    assert indices(read_frames(path, 4)) == [0, 10, 20, 30]
    assert indices(read_frames(path, 4, seek="exact")) == [5, 15, 25, 35]


def test_exact_reads_out_of_gop_order_targets(tmp_path: Path) -> None:
    # Long GOPs and many targets: decoding forward inside a GOP must give the same frames as seeking.
    path = index_clip(tmp_path / "gop.mp4", 120, size=(32, 32), keyframe_interval=40)
    assert indices(read_frames(path, 12, seek="exact")) == [(2 * k + 1) * 120 // 24 for k in range(12)]


# ----------------------------------------------------------------------------- decoded once
def test_decode_video_holds_every_frame_in_order(clip50: Path) -> None:
    decoded = decode_video(clip50)
    assert decoded.frames.shape == (50, 64, 64, 3) and decoded.frames.dtype == np.uint8
    assert indices(decoded.frames) == list(range(50))
    assert decoded.nbytes == 50 * 64 * 64 * 3


@pytest.mark.parametrize("kind", ["mp4", "gif"])
def test_sample_frames_draws_what_read_frames_reads(tmp_path: Path, clip50: Path, kind: str) -> None:
    path = clip50 if kind == "mp4" else animated_gif(tmp_path / "clip.gif", num_frames=12)[0]
    decoded = decode_video(path)
    for seed in range(3):  # training: the same generator draws the same frames
        expected = read_frames(path, 8, training=True, generator=np.random.default_rng(seed))
        got = sample_frames(decoded, 8, training=True, generator=np.random.default_rng(seed))
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(sample_frames(decoded, 8), read_frames(path, 8))  # segment centres
    if kind == "mp4":  # windows and keyframe seeking follow read_frames too
        np.testing.assert_array_equal(sample_frames(decoded, 4, start_sec=0.4, end_sec=1.2), read_frames(path, 4, start_sec=0.4, end_sec=1.2))
        assert indices(sample_frames(decoded, 8, seek="keyframe")) == [0, 10, 15, 20, 30, 34, 40, 46]


def test_decode_video_refuses_a_clip_over_the_budget_before_decoding(clip50: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "_decode_positions", lambda *args: pytest.fail("decoded a clip over the budget"))
    assert decode_video(clip50, max_bytes=50 * 64 * 64 * 3 - 1) is None


def test_decode_video_reports_unreadable_clips_like_read_frames(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match="not a video"):
        decode_video(text_as_video(tmp_path / "notes.mp4"))
    with pytest.raises(ValueError, match="num_frames must be at least 1"):
        sample_frames(decode_video(index_clip(tmp_path / "ok.mp4", 5)), 0)


# ---------------------------------------------------------------------------------------- probing
def test_probe_video(clip50: Path) -> None:
    info = probe_video(clip50)
    assert (info.width, info.height, info.num_frames) == (64, 64, 50)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_probe_webm_without_frame_count(tmp_path: Path) -> None:
    if "libvpx-vp9" not in av.codecs_available:
        pytest.skip("VP9 encoder missing")
    info = probe_video(index_clip(tmp_path / "clip.webm", 20))
    assert info.num_frames == 20 and info.duration == pytest.approx(0.8, abs=0.05)


# ------------------------------------------------------------------------------------------- GIFs
def test_gif_matches_pillow_composited_frames(tmp_path: Path) -> None:
    path, durations = animated_gif(tmp_path / "anim.gif", 12)
    with Image.open(path) as image:
        partial = [frame.tile[0][1] for frame in ImageSequence.Iterator(image) if frame.tile]
        assert any(box != (0, 0, 64, 48) for box in partial), "the GIF should hold partial-frame updates"
    with Image.open(path) as image:
        reference = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    frames, times = read_frames_with_timestamps(path, 12, seek="exact")
    assert indices(frames) == list(range(12))
    np.testing.assert_array_equal(frames, reference)
    np.testing.assert_allclose(times, np.cumsum([0, *durations[:-1]]) / 1000, atol=1e-6)


def test_gif_irregular_delays_sample_by_frame(tmp_path: Path) -> None:
    path, _ = animated_gif(tmp_path / "anim.gif", 12)
    assert indices(read_frames(path, 4)) == [1, 4, 7, 10]  # floor((2k + 1) * 12 / 8)
    info = probe_video(path)
    assert info.num_frames == 12 and info.duration == pytest.approx(0.94, abs=1e-6)


def test_gif_transparency_is_black_like_pillow(tmp_path: Path) -> None:
    path = transparent_gif(tmp_path / "clear.gif", 4)
    with Image.open(path) as image:
        reference = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    frames, times = read_frames_with_timestamps(path, 4, seek="exact")
    np.testing.assert_array_equal(frames, reference)
    assert frames[0, 0, 31].tolist() == [0, 0, 0]  # never painted: black, not the converter's white
    assert np.all(np.diff(times) > 0)  # 0 ms delays still give increasing times


def test_gif_with_decord_backend_goes_through_pyav(tmp_path: Path) -> None:
    path, _ = animated_gif(tmp_path / "anim.gif", 6)
    assert indices(read_frames(path, 3, backend="decord")) == [1, 3, 5]


# ----------------------------------------------------------------------------------------- decord
def test_decord_gives_the_same_frames_as_pyav(clip50: Path) -> None:
    pytest.importorskip("decord")
    pyav = read_frames(clip50, 8, seek="exact")
    decord_frames = read_frames(clip50, 8, seek="exact", backend="decord")
    assert indices(decord_frames) == indices(pyav) == [3, 9, 15, 21, 28, 34, 40, 46]
    assert np.abs(decord_frames.astype(int) - pyav.astype(int)).mean() < 2.0


def test_decord_on_broken_input_raises_video_read_error(tmp_path: Path, clip50: Path) -> None:
    with pytest.raises(VideoReadError):
        read_frames(truncated_copy(clip50, tmp_path / "cut.mp4", 0.5), backend="decord")


def test_decord_read_is_time_bounded(clip50: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("decord")
    monkeypatch.setattr(video, "DECORD_TIMEOUT_SECONDS", 1e-6)  # no real read finishes this fast
    with pytest.raises(VideoReadError, match="decord did not finish"):
        read_frames(clip50, 8, seek="exact", backend="decord")


# ----------------------------------------------------------------------------------- processes
def _read_indices(path: str) -> list[int]:
    return indices(read_frames(path, 4, seek="exact"))


def test_reading_from_several_processes_at_once(clip50: Path) -> None:
    # Like DataLoader workers: forked processes, each opening its own containers.
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_read_indices, [str(clip50)] * 4)
    assert results == [[6, 18, 31, 43]] * 4


# ------------------------------------------------------------------------------------ bad inputs
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match=r"missing\.mp4.*not found"):
        read_frames(tmp_path / "missing.mp4")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match="not a regular file"):
        read_frames(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match=r"empty\.mp4.*empty file"):
        read_frames(zero_byte(tmp_path / "empty.mp4"))


def test_text_named_mp4(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match=r"notes\.mp4.*not a video"):
        read_frames(text_as_video(tmp_path / "notes.mp4"))


def test_audio_only_mp4(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match=r"sound\.mp4.*no video stream"):
        read_frames(audio_only_mp4(tmp_path / "sound.mp4"))
    with pytest.raises(VideoReadError, match="no video stream"):
        probe_video(tmp_path / "sound.mp4")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    whole = random_clip(tmp_path / f"whole{suffix}", 30, size=(32, 32))
    cut = truncated_copy(whole, tmp_path / f"cut{suffix}", 0.5)
    with pytest.raises(VideoReadError, match=r"cut\.m.*truncated"):
        read_frames(cut)


@pytest.mark.parametrize("read", [read_frames, decode_video, probe_video])
def test_header_cut_before_the_codec_parameters(tmp_path: Path, read) -> None:
    """70 % of this MP4 keeps a video stream in the header but not its codec parameters."""
    cut = truncated_copy(index_clip(tmp_path / "whole.mp4", 24), tmp_path / "cut.mp4", 0.7)
    with pytest.raises(VideoReadError, match=r"cut\.mp4.*truncated or corrupt: its video stream has no codec parameters"):
        read(cut)


def test_video_read_error_is_a_value_error() -> None:
    assert issubclass(VideoReadError, ValueError)


def test_bad_arguments_are_value_errors(clip50: Path) -> None:
    with pytest.raises(ValueError, match="seek"):
        read_frames(clip50, seek="fast")
    with pytest.raises(ValueError, match="num_frames"):
        read_frames(clip50, 0)


# ------------------------------------------------------------------------------------------ writer
def test_write_video_accepts_an_iterator(tmp_path: Path) -> None:
    path = write_video(tmp_path / "gen.mp4", (index_frame(i, (32, 32)) for i in range(20)), FPS)
    assert indices(read_frames(path, 4, seek="exact")) == [2, 7, 12, 17]


def test_variable_frame_rate_uses_packet_times(tmp_path: Path) -> None:
    # 20 frames: ten 10 ms apart, then ten 300 ms apart. Sampling is by frame; times are the true ones.
    times = [0.01 * i for i in range(10)] + [0.09 + 0.3 * (i + 1) for i in range(10)]
    path = vfr_index_clip(tmp_path / "vfr.mkv", times)
    frames, got_times = read_frames_with_timestamps(path, 4, seek="exact")
    assert indices(frames) == [2, 7, 12, 17]  # floor((2k + 1) * 20 / 8)
    np.testing.assert_allclose(got_times, [times[i] for i in (2, 7, 12, 17)], atol=1e-3)
    # A window in seconds selects by the true times: [1.0 s, 2.0 s) holds frames 13, 14, 15.
    assert indices(read_frames(path, 3, start_sec=1.0, end_sec=2.0, seek="exact")) == [13, 14, 15]
