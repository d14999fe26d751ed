"""Pre-training: retrieval metrics on hand-made matrices, a short overfitting run of the model's
losses, and `finetune/pretrain.py` end to end in subprocesses (output directory, pairwise objective,
exact resume, unreadable clips) on a few generated clips with clover-tiny.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clover.retrieval import retrieval_metrics, video_to_text_metrics

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------------
# Retrieval metrics
# --------------------------------------------------------------------------------------------------


def test_retrieval_metrics_known_ranks() -> None:
    """4 texts, 6 videos; text i's video is i and ranks 1, 2, 3 and 5."""
    similarity = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3, 0.0, 0.1],  # video 0 first: rank 1
            [0.5, 0.4, 0.1, 0.2, 0.3, 0.0],  # video 0 above video 1: rank 2
            [0.1, 0.8, 0.6, 0.7, 0.0, 0.2],  # videos 1 and 3 above video 2: rank 3
            [0.9, 0.8, 0.7, 0.1, 0.6, 0.0],  # videos 0, 1, 2, 4 above video 3: rank 5
        ]
    )
    metrics = retrieval_metrics(similarity, [0, 1, 2, 3])
    assert metrics == pytest.approx({"R@1": 0.25, "R@5": 1.0, "R@10": 1.0, "median_rank": 2.5, "mean_rank": 11 / 4})
    assert retrieval_metrics(similarity) == metrics  # None = the diagonal


def test_retrieval_ties_are_pessimistic_and_ground_truth_is_followed() -> None:
    """A tie with the correct video counts against it; ground truth need not be the diagonal."""
    similarity = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.3]])
    assert retrieval_metrics(similarity, [0, 1])["mean_rank"] == 1.5  # text 0: rank 2 (tie), text 1: rank 1
    assert retrieval_metrics(torch.ones(3, 3))["R@1"] == 0.0  # collapsed embeddings: every rank is 3
    assert retrieval_metrics(similarity, [2, 0]) == pytest.approx({"R@1": 0.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 3.0, "mean_rank": 3.0})
    with pytest.raises(ValueError, match="one index per query"):
        retrieval_metrics(similarity, [0])


def test_video_to_text_metrics() -> None:
    """Videos as queries over the texts of the same (texts, videos) matrix."""
    similarity = torch.tensor([[0.9, 0.8, 0.0], [0.1, 0.2, 0.7], [0.3, 0.6, 0.5]])  # (texts, videos)
    # video 0: texts score 0.9, 0.1, 0.3 -> text 0 rank 1; video 1: 0.8, 0.2, 0.6 -> text 1 rank 3;
    # video 2: 0.0, 0.7, 0.5 -> text 2 rank 2.
    assert video_to_text_metrics(similarity) == pytest.approx({"R@1": 1 / 3, "R@5": 1.0, "R@10": 1.0, "median_rank": 2.0, "mean_rank": 2.0})


# --------------------------------------------------------------------------------------------------
# Generated data
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webvid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """8 train and 4 val clips of the synthetic benchmark in WebVid's format, plus a train CSV with a
    ninth row whose clip is not a video."""
    from clover.data.synthetic import generate_benchmark

    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, seed=0, train_clips=8, val_clips=4, test_clips=0, size=64, num_frames=16, fps=8.0, progress=False)
    root = out / "webvid"
    broken = root / "results_with_broken.csv"
    lines = (root / "results.csv").read_text(encoding="utf-8").rstrip("\n").splitlines()
    page_dir = lines[1].split(",")[3]
    (root / "videos" / page_dir / "999.mp4").write_bytes(b"this is not a video")
    lines.append(f"999,https://example.invalid/999.mp4,PT00H00M02S,{page_dir},a broken clip of a red circle")
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"train": root / "results.csv", "broken": broken, "val": root / "results_val.csv", "videos": root / "videos"}


# --------------------------------------------------------------------------------------------------
# The model's losses go down when overfitting a few pairs
# --------------------------------------------------------------------------------------------------

OVERFIT_STEPS = 40


@pytest.fixture(scope="module")
def overfit_losses(webvid: dict[str, Path]) -> list[dict[str, float]]:
    """Named losses of 40 AdamW steps (lr 1e-3) on one batch of 4 pairs, masks seeded per step as the
    script seeds them. (The ranking terms rise for the first few steps while the alignment pulls the
    masked positives close, then fall: 20 steps were not enough to see that on rank_v.)"""
    from clover.configuration_clover import CloverConfig
    from clover.data.annotations import load_caption_pairs
    from clover.data.datasets import VideoCaptionDataset
    from clover.modeling_clover import CloverForPretraining
    from clover.processing_clover import CloverProcessor
    from finetune.pretrain import mask_generator

    processor = CloverProcessor.from_preset("clover-tiny")
    pairs = load_caption_pairs(webvid["train"], webvid["videos"])[:4]
    dataset = VideoCaptionDataset(pairs, webvid["videos"], processor, training=False)
    batch = processor.collate([dataset[i] for i in range(len(dataset))])
    torch.manual_seed(0)
    model = CloverForPretraining(CloverConfig.from_preset("clover-tiny")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    history = []
    for step in range(OVERFIT_STEPS):
        output = model(
            batch["pixel_values"], batch["input_ids"], batch["attention_mask"],
            tokenizer=processor.tokenizer, generator=mask_generator(0, 0, step, 0),
        )
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        history.append({"total": output.loss.item(), **{name: value.item() for name, value in output.losses.items()}})
    return history


def _first_and_last(history: list[dict[str, float]], name: str, window: int = 3) -> tuple[float, float]:
    """Means of a loss over the first and the last `window` steps (single steps are noisy: new masks)."""
    values = [entry[name] for entry in history]
    return sum(values[:window]) / window, sum(values[-window:]) / window


@pytest.mark.parametrize("name", ["total", "mlm", "rank_v", "rank_t"])
def test_overfitting_lowers_total_mlm_and_ranking_losses(overfit_losses: list[dict[str, float]], name: str) -> None:
    first, last = _first_and_last(overfit_losses, name)
    assert last < first, f"{name}: mean of the first 3 steps {first:.4f}, of the last 3 {last:.4f}"


@pytest.mark.parametrize("name", ["align_v_a2p", "align_v_p2a", "align_t_a2p", "align_t_p2a"])
def test_overfitting_lowers_alignment_losses(overfit_losses: list[dict[str, float]], name: str) -> None:
    first, last = _first_and_last(overfit_losses, name)
    assert last < first - 0.05, f"{name}: mean of the first 3 steps {first:.4f}, of the last 3 {last:.4f}"


# --------------------------------------------------------------------------------------------------
# The script end to end
# --------------------------------------------------------------------------------------------------


def run_pretrain(webvid: dict[str, Path], output_dir: Path, *extra: str, csv: str = "broken") -> subprocess.CompletedProcess:
    """`python -m finetune.pretrain` on the generated clips: clover-tiny, batches of 4, no workers."""
    command = [
        sys.executable, "-m", "finetune.pretrain",
        "--train_csv", str(webvid[csv]), "--video_root", str(webvid["videos"]), "--val_csv", str(webvid["val"]),
        "--output_dir", str(output_dir), "--preset", "clover-tiny", "--per_device_train_batch_size", "4",
        "--num_workers", "0", "--learning_rate", "1e-3", "--seed", "7", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def full_run(webvid: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """4 steps of the Clover objective on the 8 clips plus the broken one (3 steps per epoch), a
    checkpoint every step (the last 2 kept)."""
    output = tmp_path_factory.mktemp("full")
    result = run_pretrain(webvid, output, "--max_train_steps", "4", "--checkpointing_steps", "1")
    return output, result.stderr


def test_script_output_loads_for_question_answering(full_run: tuple[Path, str]) -> None:
    from clover.modeling_clover import CloverForVideoQA
    from clover.processing_clover import CloverProcessor

    output, log = full_run
    assert "***** Running pre-training *****" in log
    model = CloverForVideoQA.from_pretrained(output)
    assert model.config.pretrain_objective == "clover" and "open" in model.config.qa_heads
    CloverProcessor.from_pretrained(output)
    card = (output / "README.md").read_text(encoding="utf-8")
    assert "Zero-shot retrieval" in card and "Trained on synthetic data" in card
    complete = sorted(p.name for p in (output / "checkpoints").iterdir() if (p / "COMPLETE").is_file())
    assert complete == ["step_3", "step_4"]


def test_one_log_line_per_checkpoint(full_run: tuple[Path, str]) -> None:
    """Each of the 4 checkpoints logs our one line, not Accelerate's line per file saved nor its notice
    that the MLM head's tied tensors were saved once (they are tied again on load)."""
    _, log = full_run
    assert log.count("saved checkpoint") == 4
    assert "Removed shared tensor" not in log and "Model weights saved in" not in log and "Saving current state" not in log


def test_script_metrics_have_losses_and_retrieval(full_run: tuple[Path, str]) -> None:
    output, log = full_run
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["completed_steps"] == 4 and metrics["epochs"] == 2
    assert set(metrics["final_losses"]) == {"mlm", "align_v_a2p", "align_v_p2a", "align_t_a2p", "align_t_p2a", "rank_v", "rank_t"}
    t2v = metrics["retrieval"]["text_to_video"]
    assert {"R@1", "R@5", "R@10", "median_rank", "mean_rank"} <= set(t2v) and t2v["num_pairs"] == 4
    assert "val text-to-video R@1" in log


def test_saved_retrieval_heads_hold_the_training_pairs_statistics(webvid: dict[str, Path], full_run: tuple[Path, str]) -> None:
    """The saved video and text heads' BatchNorm statistics are those of the 8 readable training pairs
    read for evaluation (the broken clip left out), not the running averages of training."""
    from clover.data.annotations import load_caption_pairs
    from clover.data.datasets import VideoCaptionDataset
    from clover.modeling_clover import CloverForPretraining
    from clover.processing_clover import CloverProcessor

    output, log = full_run
    assert "BatchNorm statistics set from 8 training pairs" in log
    model, processor = CloverForPretraining.from_pretrained(output).eval(), CloverProcessor.from_pretrained(output)
    pairs = load_caption_pairs(webvid["train"], webvid["videos"])
    dataset = VideoCaptionDataset(pairs, webvid["videos"], processor, training=False)
    batch = processor.collate([dataset[i] for i in range(len(dataset))])
    clover = model.clover
    with torch.no_grad():
        video = clover.video_proj[:-1](clover.encode_video(batch["pixel_values"]).tokens.flatten(1, 3).mean(1))  # (8, E)
        text = clover.text_proj[:-1](clover.encode_text(batch["input_ids"], batch["attention_mask"])[:, 0])  # (8, E)
    for norm, inputs in ((clover.video_proj[-1], video), (clover.text_proj[-1], text)):
        torch.testing.assert_close(norm.running_mean, inputs.mean(0), rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(norm.running_var, inputs.var(0), rtol=1e-3, atol=1e-6)


def test_norm_statistics_command_sets_a_checkpoints_statistics_and_nothing_else(
    webvid: dict[str, Path], full_run: tuple[Path, str], tmp_path: Path
) -> None:
    """`python -m finetune.norm_statistics` on a copy of the run whose statistics were spoilt: they come
    back to the run's own (the same 8 pairs), every other tensor is untouched, and metrics.json and the
    model card get the retrieval measured after, the spoilt run's kept beside it."""
    import shutil

    from safetensors.torch import load_file, save_file

    from finetune import norm_statistics

    output, _ = full_run
    model = tmp_path / "model"
    shutil.copytree(output, model, ignore=shutil.ignore_patterns("checkpoints"))
    saved = load_file(output / "model.safetensors")
    spoilt = {**saved, "clover.video_proj.4.running_mean": saved["clover.video_proj.4.running_mean"] + 3.0}
    save_file(spoilt, model / "model.safetensors", metadata={"format": "pt"})

    result = norm_statistics.main([
        "--model", str(model), "--train_csv", str(webvid["train"]), "--video_root", str(webvid["videos"]), "--val_csv", str(webvid["val"]),
    ])  # fmt: skip
    assert result["pairs"] == 8
    restored = load_file(model / "model.safetensors")
    assert restored.keys() == saved.keys()
    for name, tensor in saved.items():
        torch.testing.assert_close(restored[name], tensor, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    original = json.loads((output / "metrics.json").read_text(encoding="utf-8"))["retrieval"]
    assert metrics["retrieval"] == result["after"]
    assert metrics["retrieval"]["text_to_video"]["median_rank"] == original["text_to_video"]["median_rank"]
    assert metrics["retrieval_before_norm_statistics"] == result["before"]
    assert metrics["norm_statistics"] == {"pairs": 8, "train_csv": str(webvid["train"])}
    assert "## Retrieval heads' BatchNorm statistics re-estimated" in (model / "README.md").read_text(encoding="utf-8")


def test_norm_statistics_command_leaves_layernorm_heads_alone(webvid: dict[str, Path], tmp_path: Path) -> None:
    from clover.configuration_clover import CloverConfig
    from clover.modeling_clover import CloverModel
    from clover.processing_clover import CloverProcessor
    from finetune import norm_statistics

    CloverModel(CloverConfig.from_preset("clover-tiny", alignment_head_norm="layernorm")).save_pretrained(tmp_path)
    CloverProcessor.from_preset("clover-tiny").save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    assert norm_statistics.main(["--model", str(tmp_path), "--train_csv", str(webvid["train"]), "--video_root", str(webvid["videos"])]) == {}
    assert (tmp_path / "model.safetensors").read_bytes() == before
    with pytest.raises(SystemExit):
        norm_statistics.parse_args(["--model", str(tmp_path), "--train_csv", "x.csv", "--video_root", ".", "--pairs", "1"])


def test_unreadable_clip_is_skipped_and_counted(full_run: tuple[Path, str]) -> None:
    """The broken row is read in every epoch (once or twice: the last batch wraps around) and skipped."""
    output, log = full_run
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["train_pairs"] == 9 and metrics["skipped_training_clips"] >= 2
    assert "skipping unreadable clip" in log and "999.mp4" in log
    assert [entry["skipped_clips"] for entry in metrics["history"]][-1] == metrics["skipped_training_clips"]


def test_resume_matches_an_uninterrupted_run(webvid: dict[str, Path], full_run: tuple[Path, str], tmp_path: Path) -> None:
    """Stopped after the 2nd checkpoint (mid-epoch) and resumed with `latest`: same weights, same losses."""
    from safetensors.torch import load_file

    run_pretrain(webvid, tmp_path, "--max_train_steps", "4", "--checkpointing_steps", "1", "--stop_after_step", "2")
    assert not (tmp_path / "model.safetensors").exists()
    result = run_pretrain(webvid, tmp_path, "--max_train_steps", "4", "--checkpointing_steps", "1", "--resume_from_checkpoint", "latest")
    assert "resumed from" in result.stderr and "step_2" in result.stderr
    expected, resumed = load_file(full_run[0] / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")
    history = [json.loads((path / "metrics.json").read_text())["history"] for path in (full_run[0], tmp_path)]
    for entry, resumed_entry in zip(*history):
        assert resumed_entry["losses"] == pytest.approx(entry["losses"], abs=1e-6)
        assert resumed_entry["skipped_clips"] == entry["skipped_clips"]


def test_pairwise_objective_runs(webvid: dict[str, Path], tmp_path: Path) -> None:
    run_pretrain(webvid, tmp_path, "--objective", "pairwise", "--max_train_steps", "2", csv="train")
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["final_losses"]) == {"mlm", "itc_v2t", "itc_t2v"}
    assert metrics["objective"]["pretrain_objective"] == "pairwise"
    assert json.loads((tmp_path / "config.json").read_text())["pretrain_objective"] == "pairwise"
    assert "text_to_video" in metrics["retrieval"]


@pytest.mark.parametrize("saved_class", ["CloverModel", "CloverForVideoQA"])
def test_pretraining_from_a_checkpoint_without_mlm_head_starts_a_clean_head(
    tmp_path: Path, saved_class: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`pretrain.py --model` on a video-pre-training or QA checkpoint: its encoders load exactly, the
    new MLM head is initialised as BERT's (bias zero, not uninitialised memory, which once made every
    loss NaN) and tied to the word embeddings, the objective flags override the saved config, and
    transformers says nothing (it used to warn that such a checkpoint "seem corrupted")."""
    import transformers
    from accelerate import PartialState

    from clover import modeling_clover
    from clover.configuration_clover import CloverConfig
    from finetune.pretrain import load_pretraining_model

    PartialState()  # the script's logger needs the state its Accelerator creates
    torch.manual_seed(0)
    saved = getattr(modeling_clover, saved_class)(CloverConfig.from_preset("clover-tiny"))
    saved.save_pretrained(tmp_path)
    transformers.logging.enable_propagation()  # its warnings reach caplog
    try:
        with caplog.at_level(logging.WARNING):
            model = load_pretraining_model(tmp_path, pretrain_objective="pairwise")
    finally:
        transformers.logging.disable_propagation()
    assert [record.getMessage() for record in caplog.records] == []
    assert model.config.pretrain_objective == "pairwise"
    encoders = model.clover.state_dict()
    for name, tensor in saved.base_model.state_dict().items():
        assert torch.equal(encoders[name], tensor), name
    predictions = model.mlm_head.predictions
    assert torch.equal(predictions.bias, torch.zeros_like(predictions.bias))
    assert predictions.decoder.weight is model.clover.text_encoder.embeddings.word_embeddings.weight
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())
    # The mechanism itself, whatever the memory held: initialising the head zeroes a NaN bias.
    with torch.no_grad():
        predictions.bias.fill_(float("nan"))
    model._init_weights(predictions)
    assert torch.equal(predictions.bias, torch.zeros_like(predictions.bias))


# --------------------------------------------------------------------------------------------------
# Retrieval heads fitted again to a fine-tuned model's encoders
# --------------------------------------------------------------------------------------------------


def tiny_clover(seed: int = 0) -> "CloverModel":  # noqa: F821
    from clover.configuration_clover import CloverConfig
    from clover.modeling_clover import CloverModel

    torch.manual_seed(seed)
    return CloverModel(CloverConfig.from_preset("clover-tiny")).eval()


def test_fit_heads_aligns_paired_features_and_trains_nothing_else() -> None:
    """32 pairs whose text feature is a fixed linear map of the video feature plus noise: the heads of
    a random model rank them at chance; fitted, they find every pair, and no other weight moves."""
    from finetune.fit_retrieval_heads import PooledPairs, fit_heads, heads_retrieval

    clover = tiny_clover()
    generator = torch.Generator().manual_seed(1)
    video = torch.randn(32, clover.config.video_width, generator=generator)  # (32, Cv)
    mixing = torch.randn(clover.config.video_width, clover.config.text_config.hidden_size, generator=generator)
    text = video @ mixing / clover.config.video_width**0.5 + 0.1 * torch.randn(32, mixing.shape[1], generator=generator)  # (32, D)
    pairs = PooledPairs(video, text)
    before_state = {name: tensor.clone() for name, tensor in clover.state_dict().items()}
    assert heads_retrieval(clover, pairs)["text_to_video"]["R@1"] < 0.3
    losses = fit_heads(clover, pairs, epochs=60, learning_rate=1e-3, weight_decay=0.0, batch_size=16, seed=0)
    assert clover.set_embedding_statistics(pairs.video, pairs.text) == 32
    assert len(losses) == 60 and losses[-1] < losses[0] / 4
    after = heads_retrieval(clover, pairs)
    assert after["text_to_video"]["R@1"] == 1.0 and after["video_to_text"]["R@1"] == 1.0
    assert after["text_to_video"]["num_pairs"] == 32
    changed = {name.split(".")[0] for name, tensor in clover.state_dict().items() if not torch.equal(tensor, before_state[name])}
    assert changed == {"video_proj", "text_proj"}


def test_fit_retrieval_heads_command_changes_only_the_heads_of_a_qa_checkpoint(webvid: dict[str, Path], tmp_path: Path) -> None:
    """`python -m finetune.fit_retrieval_heads` on a clover-tiny QA checkpoint: only the two heads'
    tensors change in the saved weights (so the answers cannot), the training loss falls, and
    metrics.json and the model card get the retrieval before and after."""
    from accelerate import Accelerator
    from safetensors.torch import load_file

    from clover.modeling_clover import CloverForVideoQA
    from clover.processing_clover import CloverProcessor
    from finetune import fit_retrieval_heads
    from finetune.pretrain import load_pairs, measure_retrieval, val_loader
    from tests.conftest import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "model")
    (model / "metrics.json").write_text(json.dumps({"test": {}}), encoding="utf-8")
    saved = load_file(model / "model.safetensors")
    result = fit_retrieval_heads.main([
        "--model", str(model), "--train_csv", str(webvid["broken"]), "--video_root", str(webvid["videos"]),
        "--val_csv", str(webvid["val"]), "--epochs", "10",
    ])  # fmt: skip
    assert result["pairs"] == 8  # the broken clip is left out
    assert result["final_loss"] < result["first_loss"]
    assert result["text_pooling"] == {"before": "cls", "after": "mean"}
    assert result["before"]["text_to_video"]["num_pairs"] == result["after"]["text_to_video"]["num_pairs"] == 4
    fitted = load_file(model / "model.safetensors")
    assert fitted.keys() == saved.keys()
    changed = {name.rsplit(".", 2)[0] for name in saved if not torch.equal(fitted[name], saved[name])}
    assert changed == {"clover.video_proj", "clover.text_proj"}
    # The saved model's own retrieval path (pooling from its config) gives the figures the command measured.
    loaded, processor = CloverForVideoQA.from_pretrained(model).eval(), CloverProcessor.from_pretrained(model)
    assert loaded.config.retrieval_text_pooling == "mean"
    val = val_loader(load_pairs(str(webvid["val"]), str(webvid["videos"])), processor, batch_size=4)
    measured = measure_retrieval(Accelerator(), loaded.clover, val)
    for direction in ("text_to_video", "video_to_text"):
        assert measured[direction] == pytest.approx(result["after"][direction])
    metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"] == {} and metrics["retrieval_heads"] == json.loads(json.dumps(result))
    assert "## Retrieval heads fitted to the fine-tuned encoders" in (model / "README.md").read_text(encoding="utf-8")
    with pytest.raises(SystemExit):
        fit_retrieval_heads.parse_args(["--model", str(model), "--train_csv", "x.csv", "--video_root", ".", "--epochs", "0"])
    with pytest.raises(SystemExit):
        fit_retrieval_heads.parse_args(["--model", str(model), "--train_csv", "x.csv", "--video_root", ".", "--pairs", "1"])
