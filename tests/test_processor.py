"""CloverProcessor: frame preprocessing by hand-checkable cases, text layouts, errors, save/load, and
that its outputs run through every head of a tiny CloverForVideoQA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clover.configuration_clover import CloverConfig
from clover.modeling_clover import CloverForVideoQA
from clover.processing_clover import PROCESSOR_CONFIG_NAME, CloverProcessor

T, S = 8, 112  # the clover-tiny preset's frames and image size


@pytest.fixture(scope="module")
def processor() -> CloverProcessor:
    return CloverProcessor.from_preset("clover-tiny")


def noise_clip(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random uint8 frames (T, H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, size=(T, height, width, 3), dtype=np.uint8)


def expected_value(processor: CloverProcessor, rgb: tuple[int, int, int]) -> torch.Tensor:
    """(c/255 - mean) / std per channel, shape (3,)."""
    return (torch.tensor(rgb) / 255 - torch.tensor(processor.image_mean)) / torch.tensor(processor.image_std)


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------


def test_batch_of_clips_of_different_sizes(processor):
    clips = [noise_clip(48, 64), noise_clip(120, 90, seed=1)]
    out = processor(clips, ["what moves?", "how many shapes are there?"])
    assert out["pixel_values"].shape == (2, T, 3, S, S)
    assert out["pixel_values"].dtype == torch.float32
    assert out["input_ids"].shape == out["attention_mask"].shape
    assert out["input_ids"].shape[0] == 2 and out["input_ids"].shape[1] <= processor.max_text_length
    assert "candidate_mask" not in out


@pytest.mark.parametrize("training", [False, True])
def test_constant_colour_is_normalised_exactly(processor, training):
    rgb = (200, 30, 120)
    clip = np.broadcast_to(np.array(rgb, dtype=np.uint8), (T, 50, 70, 3))
    pixels = processor.preprocess_frames(clip, training=training, generator=torch.Generator().manual_seed(0))
    assert pixels.shape == (T, 3, S, S)
    expected = expected_value(processor, rgb).view(1, 3, 1, 1).expand_as(pixels)
    torch.testing.assert_close(pixels, expected, atol=1e-5, rtol=0)


def test_centre_crop_keeps_the_centre(processor):
    # A wide clip: 100 px red | 224 px centre split into green (left) and blue (right) | 100 px red.
    clip = np.zeros((T, 224, 424, 3), dtype=np.uint8)
    clip[:, :, :100] = (255, 0, 0)
    clip[:, :, 100:212] = (0, 255, 0)
    clip[:, :, 212:324] = (0, 0, 255)
    clip[:, :, 324:] = (255, 0, 0)
    pixels = processor.preprocess_frames(clip)  # the centre 224x224 square resized to 112
    green, blue = expected_value(processor, (0, 255, 0)), expected_value(processor, (0, 0, 255))
    torch.testing.assert_close(pixels[:, :, :, : S // 2 - 2], green.view(1, 3, 1, 1).expand(T, 3, S, S // 2 - 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[:, :, :, S // 2 + 2 :], blue.view(1, 3, 1, 1).expand(T, 3, S, S // 2 - 2), atol=1e-5, rtol=0)
    red = expected_value(processor, (255, 0, 0))
    assert not torch.isclose(pixels[:, 0], red[0]).any(), "red border columns leaked into the centre crop"


def test_centre_crop_of_a_tall_clip_is_vertical_centre(processor):
    clip = np.zeros((T, 200, 100, 3), dtype=np.uint8)
    clip[:, 50:150] = 255  # the centre 100x100 square is white; top and bottom are black
    pixels = processor.preprocess_frames(clip)
    torch.testing.assert_close(pixels, expected_value(processor, (255, 255, 255)).view(1, 3, 1, 1).expand(T, 3, S, S))


def test_training_crop_same_for_all_frames_and_seeded(processor):
    frame = noise_clip(96, 128)[0]
    clip = np.stack([frame] * T)
    first = processor.preprocess_frames(clip, training=True, generator=torch.Generator().manual_seed(3))
    again = processor.preprocess_frames(clip, training=True, generator=torch.Generator().manual_seed(3))
    other = processor.preprocess_frames(clip, training=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    for t in range(1, T):  # identical frames in, identical frames out: one crop for the clip
        torch.testing.assert_close(first[t], first[0], rtol=0, atol=0)
    assert not torch.equal(first, other)
    assert not torch.equal(first, processor.preprocess_frames(clip))


def test_training_never_flips(processor):
    # Left half dark, right half bright: every crop keeps dark on the left.
    clip = np.zeros((T, 100, 100, 3), dtype=np.uint8)
    clip[:, :, 50:] = 255
    for seed in range(20):
        pixels = processor.preprocess_frames(clip, training=True, generator=torch.Generator().manual_seed(seed))
        assert pixels[0, 0, :, 0].mean() < pixels[0, 0, :, -1].mean()


@pytest.mark.parametrize(
    "frames, message",
    [
        (np.zeros((T, 32, 32), dtype=np.uint8), r"\(T, H, W, 3\)"),
        (np.zeros((T, 3, 32, 32), dtype=np.uint8), r"\(T, H, W, 3\)"),
        (np.zeros((T, 32, 32, 3), dtype=np.float32), "uint8"),
        (np.zeros((5, 32, 32, 3), dtype=np.uint8), "expected 8 frames"),
    ],
)
def test_bad_frames_are_refused(processor, frames, message):
    with pytest.raises(ValueError, match=message):
        processor.preprocess_frames(frames)


def test_preprocessed_clips_pass_through(processor):
    pixels = processor.preprocess_frames(noise_clip(64, 64))
    out = processor([pixels, noise_clip(64, 64)], ["a?", "b?"])
    torch.testing.assert_close(out["pixel_values"][0], pixels, rtol=0, atol=0)
    torch.testing.assert_close(out["pixel_values"][1], pixels, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------


def test_questions_are_truncated_to_max_text_length(processor):
    out = processor(text=["what " * 100, "short?"])
    assert out["input_ids"].shape == (2, processor.max_text_length)
    assert out["attention_mask"][1].sum() < processor.max_text_length


def test_multiple_choice_pads_candidates(processor):
    counts = (2, 5, 10)
    candidates = [[f"answer {i}" for i in range(count)] for count in counts]
    out = processor([noise_clip(64, 64)] * 3, ["what?", "where does it go?", "which one?"], candidates)
    batch, slots, length = out["input_ids"].shape
    assert (batch, slots) == (3, 10) and length <= processor.max_mc_text_length
    assert out["attention_mask"].shape == (3, 10, length)
    expected_mask = torch.tensor([[k < count for k in range(10)] for count in counts])
    assert torch.equal(out["candidate_mask"], expected_mask)
    # Empty slots hold "[CLS] [SEP]" so that no row of the encoder is all padding.
    assert out["attention_mask"][0, 2:].sum(-1).tolist() == [2] * 8


def test_multiple_choice_template(processor):
    options = ["move left", "move right", "stay still"]
    out = processor(text="where does the red circle go?", candidates=options)
    assert out["input_ids"].shape[:2] == (1, 3)
    for k, option in enumerate(options):
        text = processor.tokenizer.decode(out["input_ids"][0, k], skip_special_tokens=True)
        assert text.startswith("where does the red circle go? options :")
        assert "move left move right stay still" in text
        assert text.endswith(f"answer : {option}")


def candidate_tokens(processor, out, b: int, k: int) -> str:
    """The text under `candidate_token_mask` of row (b, k)."""
    return processor.tokenizer.decode(out["input_ids"][b, k][out["candidate_token_mask"][b, k]])


def test_candidate_token_mask_marks_exactly_the_scored_candidate(processor):
    options = [["move left", "grow", "stay still"], ["red", "blue"]]
    out = processor(text=["what does the red circle do twice ?", "what color ?"], candidates=options)
    assert out["candidate_token_mask"].shape == out["input_ids"].shape and out["candidate_token_mask"].dtype == torch.bool
    for b, row in enumerate(options):
        for k, option in enumerate(row):
            assert candidate_tokens(processor, out, b, k) == option
    assert not out["candidate_token_mask"][1, 2:].any()  # empty slots have no candidate tokens


def test_multiple_choice_truncation_keeps_the_scored_candidate(processor):
    options = ["move left", "move right"]
    out = processor(text="where " * 200 + "?", candidates=options)
    assert out["input_ids"].shape[-1] == processor.max_mc_text_length
    for k, option in enumerate(options):
        text = processor.tokenizer.decode(out["input_ids"][0, k], skip_special_tokens=True)
        assert text.endswith(f"answer : {option}")
        assert candidate_tokens(processor, out, 0, k) == option


@pytest.mark.parametrize(
    "text, candidates, message",
    [
        ("what?", ["yes"], "2 to 10 candidates, got 1"),
        ("what?", [str(i) for i in range(11)], "2 to 10 candidates, got 11"),
        ("", ["yes", "no"], "empty question"),
        ("   ", None, "empty question"),
        ("what?", ["yes", " "], "empty candidate"),
        (["what?", "who?"], [["yes", "no"]], "2 questions but candidates for 1"),
    ],
)
def test_bad_text_is_refused(processor, text, candidates, message):
    with pytest.raises(ValueError, match=message):
        processor(text=text, candidates=candidates)


def test_clip_and_text_counts_must_match(processor):
    with pytest.raises(ValueError, match="2 clips but 1 texts"):
        processor([noise_clip(32, 32), noise_clip(32, 32)], "what?")


# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(processor, tmp_path):
    model = CloverForVideoQA(CloverConfig.from_preset("clover-tiny"))
    model.save_pretrained(tmp_path)  # the processor goes into the model's directory
    processor.save_pretrained(tmp_path)
    assert (tmp_path / PROCESSOR_CONFIG_NAME).is_file() and (tmp_path / "config.json").is_file()
    loaded = CloverProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    clips = [noise_clip(48, 64), noise_clip(120, 90, seed=1)]
    args = (clips, ["what moves left?", "how many?"], [["left", "right"], ["1", "2", "3"]])
    expected = processor(*args, training=True, generator=torch.Generator().manual_seed(0))
    actual = loaded(*args, training=True, generator=torch.Generator().manual_seed(0))
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_saved_tokenizer_files_do_not_depend_on_what_was_encoded_before(tmp_path):
    """A fast tokenizer keeps its last call's padding and truncation; saving must not record them."""
    fresh, used = CloverProcessor.from_preset("clover-tiny"), CloverProcessor.from_preset("clover-tiny")
    used.encode_text(["what does the red circle do 3 times ?", "how many ?"])
    assert used.tokenizer.backend_tokenizer.truncation is not None  # the state this guards against
    fresh.save_pretrained(tmp_path / "fresh")
    used.save_pretrained(tmp_path / "used")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "used" / name).read_text() == (tmp_path / "fresh" / name).read_text(), name
    loaded = CloverProcessor.from_pretrained(tmp_path / "used")
    assert loaded.tokenizer.backend_tokenizer.truncation is None and loaded.tokenizer.backend_tokenizer.padding is None
    long_text = " ".join(["red"] * 60)  # calls still pad and truncate as the processor asks
    assert loaded.encode_text([long_text])["input_ids"].shape == (1, loaded.max_text_length)


def test_from_config_takes_the_model_settings(processor):
    config = CloverConfig.from_preset("clover-tiny", num_frames=4, image_size=64, max_text_length=20, image_mean=[0.5] * 3)
    custom = CloverProcessor.from_config(config, processor.tokenizer)
    assert (custom.num_frames, custom.image_size, custom.max_text_length, custom.image_mean) == (4, 64, 20, [0.5] * 3)


def test_from_pretrained_names_a_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError, match=PROCESSOR_CONFIG_NAME):
        CloverProcessor.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------------
# Through the model
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> CloverForVideoQA:
    torch.manual_seed(0)
    config = CloverConfig.from_preset("clover-tiny", qa_heads=["open", "mc", "count"], id2label={0: "a", 1: "b"})
    return CloverForVideoQA(config).eval()


def test_outputs_run_through_every_head(processor, model):
    clips = [noise_clip(48, 64), noise_clip(120, 90, seed=1)]
    questions = ["what colour is the circle?", "how many squares are there?"]
    open_inputs = processor(clips, questions)
    mc_inputs = processor(clips, questions, [["red", "blue"], ["1", "2", "3", "4", "5"]])
    with torch.no_grad():
        open_out = model(**open_inputs, head="open", labels=torch.tensor([0, -100]))
        count_out = model(**open_inputs, head="count", labels=torch.tensor([1.0, 3.0]))
        mc_out = model(**mc_inputs, head="mc", labels=torch.tensor([1, 4]))
    assert open_out.logits.shape == (2, 2)
    assert count_out.logits.shape == (2,)
    assert mc_out.logits.shape == (2, 5)
    for out in (open_out, count_out, mc_out):
        assert torch.isfinite(out.loss)
    assert torch.isfinite(mc_out.logits[mc_inputs["candidate_mask"]]).all()
    # The padded candidate slots of the first question can never win.
    assert mc_out.logits[0].argmax() < 2
