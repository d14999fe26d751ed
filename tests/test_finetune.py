"""Fine-tuning with `finetune/train_qa.py` on a handful of generated clips (clover-tiny, CPU).

Runs call `train_qa.main(argv)` in-process (seconds each); the two-process check runs
`tests/finetune_dist_worker.py` under `torch.distributed.run` (gloo).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clover import CloverConfig
from clover.data.annotations import load_annotations
from clover.data.synthetic import generate_benchmark
from clover.modeling_clover import CloverForVideoQA
from clover.processing_clover import CloverProcessor
from finetune import evaluate, train_qa, training
from finetune.common import load_finetuned
from tests.launch import torchrun
from tests.media import zero_byte

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train, 1 val and 1 test clips at 112 px, 8 frames, in the TGIF-QA and MSVD-QA formats."""
    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, seed=1, train_clips=4, val_clips=1, test_clips=1, size=112, num_frames=8, fps=8, progress=False)
    return out


def _argv(bench: Path, out: Path, task: str = "tgif-action", *extra: str) -> list[str]:
    data = ["--annotations", str(bench / "tgif"), "--videos", str(bench / "tgif" / "gifs")]
    if task == "msvd-qa":
        data = ["--annotations", str(bench / "msvd"), "--videos", str(bench / "msvd")]
    return [
        "--task", task, *data, "--preset", "clover-tiny", "--output_dir", str(out), "--num_workers", "0",
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--warmup_ratio", "0", "--skip_test", *extra,
    ]  # fmt: skip


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


# Steps and learning rate per task kind. Multiple choice scores each candidate from the fused [CLS], and
# a randomly initialised clover-tiny first sits at ln 5 for a few dozen steps (every candidate's [CLS]
# alike) before it learns to tell them apart, so it gets more steps than the other heads.
OVERFIT = {"tgif-action": ("60", "1e-3"), "tgif-frameqa": ("10", "5e-4"), "tgif-count": ("10", "5e-4")}


@pytest.mark.parametrize("task", ["tgif-action", "tgif-frameqa", "tgif-count"])
def test_a_few_steps_lower_the_loss(bench: Path, tmp_path: Path, task: str) -> None:
    """Overfitting the 4 training clips: the last steps' loss is below the first steps'."""
    out = tmp_path / "run"
    steps, learning_rate = OVERFIT[task]
    train_qa.main(_argv(bench, out, task, "--max_train_steps", steps, "--seed", "0", "--learning_rate", learning_rate))
    losses = _losses(out)
    assert len(losses) == int(steps)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_clip_cache_trains_the_same_weights_and_is_shared_by_every_split(bench: Path, tmp_path: Path) -> None:
    """--clip_cache_gb changes where frames come from, never which: the same steps give the same weights."""
    weights = {}
    for cache in ("0", "1"):
        out = tmp_path / f"cache{cache}"
        argv = _argv(bench, out, "tgif-frameqa", "--max_train_steps", "3", "--seed", "0", "--clip_cache_gb", cache)
        train_qa.main(argv)
        weights[cache] = load_file(out / "model.safetensors")
    assert weights["0"].keys() == weights["1"].keys()
    assert all(torch.equal(weights["0"][name], weights["1"][name]) for name in weights["0"])
    run = train_qa.setup(train_qa.parse_args(_argv(bench, tmp_path / "shared", "tgif-frameqa", "--clip_cache_gb", "0.5")))
    datasets = [*run.data.datasets, *(loader.dataset.dataset for loader in run.data.eval_loaders.values())]
    assert {id(dataset.clip_cache) for dataset in datasets} == {id(run.data.datasets[0].clip_cache)}
    assert run.data.datasets[0].clip_cache.max_bytes == 2**29


def test_config_overrides_parse_and_reach_the_model(bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--config_overrides` values are JSON where they parse, text_config keys nest, and the saved model
    has them; a malformed pair and a use with --model are refused with a message."""
    overrides = training.parse_config_overrides("num_fusion_layers=1, text_config.initializer_range=0.05,video_backbone=null,pretrain_objective=pairwise")
    assert overrides == {
        "num_fusion_layers": 1, "text_config": {"initializer_range": 0.05}, "video_backbone": None, "pretrain_objective": "pairwise",
    }
    with pytest.raises(ValueError, match="key=value"):
        training.parse_config_overrides("num_fusion_layers")
    # A list keeps its commas: "patch_size=[2,4,4]" is one pair.
    assert training.parse_config_overrides("patch_size=[2,4,4],video_depths=[2, 2, 2],embed_dim=64") == {
        "patch_size": [2, 4, 4], "video_depths": [2, 2, 2], "embed_dim": 64,
    }
    out = tmp_path / "run"
    train_qa.main(_argv(bench, out, "tgif-frameqa", "--max_train_steps", "1", "--config_overrides", "num_fusion_layers=1,text_config.initializer_range=0.05"))
    config = json.loads((out / "config.json").read_text())
    assert config["num_fusion_layers"] == 1 and config["text_config"]["initializer_range"] == 0.05
    assert len(CloverForVideoQA.from_pretrained(out).clover.fusion.layer) == 1
    argv = _argv(bench, tmp_path / "x", "tgif-frameqa", "--config_overrides", "num_fusion_layers=1")
    argv[argv.index("--preset") : argv.index("--preset") + 2] = ["--model", str(out)]
    with pytest.raises(SystemExit):
        train_qa.parse_args(argv)
    assert "--config_overrides go with --preset" in capsys.readouterr().err


def test_multi_task_model_saves_loads_and_evaluates(bench: Path, tmp_path: Path) -> None:
    """One model for mc, count and two open tasks: heads are the union, the open vocabulary the union
    of both tasks' answers; the output dir loads, and evaluate.py writes predictions and metrics."""
    out = tmp_path / "multi"
    argv = _argv(bench, out, "tgif-action", "--max_train_steps", "2")
    argv = [a for a in argv if a != "--skip_test"]
    argv += ["--task", "tgif-count", "tgif-frameqa", "msvd-qa"]
    argv += ["--annotations", str(bench / "tgif"), str(bench / "tgif"), str(bench / "msvd")]
    argv += ["--videos", str(bench / "tgif" / "gifs"), str(bench / "tgif" / "gifs"), str(bench / "msvd")]
    argv = _dedupe_first_paths(argv)
    metrics = train_qa.main(argv)
    model = CloverForVideoQA.from_pretrained(out)
    CloverProcessor.from_pretrained(out)
    assert model.config.qa_heads == ["open", "mc", "count"]
    answers = {r["answer"] for t, p in (("tgif-frameqa", "tgif"), ("msvd-qa", "msvd")) for r in load_annotations(t, bench / p, "train")}
    assert set(model.config.id2label.values()) == answers
    assert set(metrics["test"]) == {"tgif-action", "tgif-count", "tgif-frameqa", "msvd-qa"}
    assert {"val_clips.json", "metrics.json", "all_results.json", "README.md", "model.safetensors"} <= {p.name for p in out.iterdir()}
    assert (out / "best" / "model.safetensors").is_file()
    assert "Trained on synthetic data" in (out / "README.md").read_text()

    eval_dir = tmp_path / "eval"
    argv = ["--model", str(out), "--task", "tgif-frameqa", "--annotations", str(bench / "tgif"),
            "--videos", str(bench / "tgif" / "gifs"), "--split", "test", "--output_dir", str(eval_dir), "--num_workers", "0"]
    result = evaluate.main(argv)
    with (eval_dir / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result["num_questions"] == len(load_annotations("tgif-frameqa", bench / "tgif", "test"))
    assert list(rows[0]) == ["id", "question", "prediction", "answer", "correct"]
    assert json.loads((eval_dir / "metrics.json").read_text())["num_questions"] == len(rows)
    assert "out of vocabulary" in (eval_dir / "metrics.md").read_text()


def _dedupe_first_paths(argv: list[str]) -> list[str]:
    """`_argv` gave one --annotations/--videos; with 4 tasks they must be given once per task."""
    for flag in ("--annotations", "--videos"):
        i = argv.index(flag)
        del argv[i : i + 2]
        j = argv.index(flag)
        argv.insert(j + 1, argv[j + 1])  # the first task (tgif-action) uses the same folder as tgif-count
    return argv


def test_kill_and_resume_gives_the_same_weights(bench: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A run stopped after step 3 (one epoch = 2 steps at batch 2; checkpoints every 3 steps and at epoch
    ends, so the last is mid-epoch) and resumed from `latest`, past a half-written newer checkpoint,
    ends with the uninterrupted run's weights."""
    common = ["--per_device_train_batch_size", "2", "--max_train_steps", "6", "--checkpointing_steps", "3"]
    train_qa.main(_argv(bench, tmp_path / "a", "tgif-action", *common))
    stopped = tmp_path / "b"
    assert train_qa.main(_argv(bench, stopped, "tgif-action", *common, "--stop_after_step", "3")) is None
    checkpoints = stopped / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_2", "step_3"]
    half = checkpoints / "step_5"
    shutil.copytree(checkpoints / "step_3", half)
    (half / "COMPLETE").unlink()  # as if killed between the rename and the marker
    with caplog.at_level(logging.INFO):
        train_qa.main(_argv(bench, stopped, "tgif-action", *common, "--resume_from_checkpoint", "latest"))
    assert "skipping half-written checkpoint" in caplog.text and "step_5" in caplog.text
    assert "resumed from" in caplog.text and "step_3" in caplog.text
    expected, got = load_file(tmp_path / "a" / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert _losses(stopped)[-2:] == pytest.approx(_losses(tmp_path / "a")[-2:], abs=1e-6)


def test_half_written_checkpoint_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "checkpoints"
    for step, complete in ((2, True), (4, True), (6, False)):
        (root / f"step_{step}").mkdir(parents=True)
        if complete:
            (root / f"step_{step}" / "COMPLETE").write_text("")
    with caplog.at_level(logging.WARNING):
        assert training.find_checkpoint(Namespace(resume_from_checkpoint="latest", output_dir=str(tmp_path))) == root / "step_4"
        assert training.find_checkpoint(Namespace(resume_from_checkpoint=str(root / "step_6"), output_dir=str(tmp_path))) == root / "step_4"
    assert "skipping half-written checkpoint" in caplog.text and "step_6" in caplog.text


def test_unreadable_and_missing_clips_are_skipped_and_counted(bench: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bench"
    shutil.copytree(bench / "tgif", broken / "tgif")
    train_clips = sorted({r["video"] for r in load_annotations("tgif-action", broken / "tgif", "train")})
    zero_byte(broken / "tgif" / "gifs" / train_clips[0])
    (broken / "tgif" / "gifs" / train_clips[1]).unlink()
    out = tmp_path / "run"
    metrics = train_qa.main(_argv(broken, out, "tgif-action", "--max_train_steps", "1"))
    assert metrics["skipped_training_clips"] == 2  # one epoch of 4 clips, one batch
    assert len(_losses(out)) == 1


def test_lora_adapters_save_and_merge(bench: Path, tmp_path: Path) -> None:
    """LoRA on the attention projections with trainable heads: saved as base/ + adapter/ (loadable and
    mergeable), or with --merge_lora as a plain model with the same answers."""
    adapter_out, merged_out = tmp_path / "lora", tmp_path / "merged"
    train_qa.main(_argv(bench, adapter_out, "tgif-action", "--max_train_steps", "2", "--train", "lora", "--seed", "3"))
    train_qa.main(_argv(bench, merged_out, "tgif-action", "--max_train_steps", "2", "--train", "lora", "--seed", "3", "--merge_lora"))
    adapter_config = json.loads((adapter_out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["modules_to_save"] == ["mc", "mc_match"]  # clover-tiny's concat+match scoring
    from_adapter, _ = load_finetuned(adapter_out)
    merged = CloverForVideoQA.from_pretrained(merged_out)
    a, b = from_adapter.state_dict(), merged.state_dict()
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    base = CloverForVideoQA.from_pretrained(adapter_out / "base")
    base_layer, merged_layer = base.clover.text_encoder.encoder.layer[0], merged.clover.text_encoder.encoder.layer[0]
    assert not torch.equal(base_layer.attention.self.query.weight, merged_layer.attention.self.query.weight)  # adapter merged
    assert torch.equal(base_layer.intermediate.dense.weight, merged_layer.intermediate.dense.weight)  # frozen


def test_training_modes_train_the_region_map_of_cls_max_regions() -> None:
    """The region map of qa_pooling="cls+max+regions" is new for question answering like the heads, so
    `--train heads` trains it and `--train lora` keeps it among PEFT's fully trained modules."""
    config = CloverConfig.from_preset("clover-tiny", qa_heads=["open"], id2label={0: "a", 1: "b"}, qa_pooling="cls+max+regions")
    model = train_qa.apply_training_mode(CloverForVideoQA(config), Namespace(train="heads"))
    trained = {name.split(".")[0] for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained == {"heads", "region_proj"}
    lora = train_qa.apply_training_mode(CloverForVideoQA(config), Namespace(train="lora", lora_rank=2, lora_alpha=4))
    assert lora.peft_config["default"].modules_to_save == ["open", "region_proj"]
    assert any("region_proj.modules_to_save" in name for name, p in lora.named_parameters() if p.requires_grad)


def test_qa_pooling_flag_adds_question_guided_pooling_to_a_checkpoint(bench: Path, tmp_path: Path) -> None:
    """`--qa_pooling cls+max+query` from a "cls+max" checkpoint: the encoders and heads load, the
    question-guided pooling starts new, trains at the heads' rate and is saved; `--train heads` trains it."""
    plain = tmp_path / "plain"
    train_qa.main(_argv(bench, plain, "tgif-frameqa", "--max_train_steps", "1"))
    out = tmp_path / "query"
    argv = _argv(bench, out, "tgif-frameqa", "--max_train_steps", "2", "--qa_pooling", "cls+max+query", "--train", "heads")
    argv[argv.index("--preset") : argv.index("--preset") + 2] = ["--model", str(plain)]
    train_qa.main(argv)
    before, after = CloverForVideoQA.from_pretrained(plain), CloverForVideoQA.from_pretrained(out)
    assert before.config.qa_pooling == "cls+max" and after.config.qa_pooling == "cls+max+query"
    assert torch.equal(before.clover.fusion.layer[0].attention.self.query.weight, after.clover.fusion.layer[0].attention.self.query.weight)
    assert "question_pooling" not in before.heads and "question_pooling" in after.heads
    groups = training.parameter_groups(after, 1e-3, 0.01, head_lr_multiplier=5.0)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert [lr_of[id(p)] for p in after.heads["question_pooling"].parameters()] == [pytest.approx(5e-3)] * 14


def _worker_grads(bench: Path, tmp_path: Path, processes: int) -> dict:
    out = tmp_path / f"grads_{processes}.pt"
    worker = [str(Path(__file__).with_name("finetune_dist_worker.py")), str(out), str(bench), str(4 // processes)]
    run = torchrun(processes, worker, cwd=tmp_path, timeout=240, env={"ACCELERATE_USE_CPU": "true"})  # what `accelerate launch --cpu` sets
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return torch.load(out)


def test_two_processes_give_the_gradients_of_one(bench: Path, tmp_path: Path) -> None:
    """2 gloo processes x 2 clips (DDP-averaged) = 1 process x the same 4 clips."""
    one, two = _worker_grads(bench, tmp_path, 1), _worker_grads(bench, tmp_path, 2)
    assert two["ids"] == one["ids"][:2]  # rank 0 holds the first half of the same global batch
    assert one["grads"].keys() == two["grads"].keys() and len(one["grads"]) > 100
    for name, grad in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_train_fraction_keeps_a_seeded_subset_in_order():
    from finetune.train_qa import subsample

    records = [{"id": str(i)} for i in range(100)]
    kept = subsample(records, 0.1, seed=3)
    assert len(kept) == 10 and kept == sorted(kept, key=lambda r: int(r["id"]))
    assert kept == subsample(records, 0.1, seed=3) and kept != subsample(records, 0.1, seed=4)
    assert subsample(records, 1.0, seed=3) is records


def test_the_script_runs_on_two_cpu_processes(bench: Path, tmp_path: Path) -> None:
    """The documented two-process command end to end: two ranks, the global batch, a loadable output;
    then evaluate.py on two processes writes the one-process predictions (each question once)."""
    out = tmp_path / "ddp"
    script = [str(ROOT / "finetune" / "train_qa.py"), *_argv(bench, out, "tgif-count", "--max_train_steps", "2")]
    result = torchrun(2, script, cwd=ROOT, timeout=300, env={"ACCELERATE_USE_CPU": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert log.count("Num processes: 2") == 2 and "Total train batch size (w. parallel, distributed & accumulation) = 8" in log
    assert json.loads((out / "metrics.json").read_text())["completed_steps"] == 2
    checkpoint = out / "checkpoints" / "step_2"  # both processes' random states, for a two-process resume
    assert sorted(path.name for path in checkpoint.glob("random_states_*.pkl")) == ["random_states_0.pkl", "random_states_1.pkl"]
    CloverForVideoQA.from_pretrained(out)

    def evaluate_argv(directory: Path) -> list[str]:
        return ["--model", str(out), "--task", "tgif-count", "--annotations", str(bench / "tgif"), "--videos", str(bench / "tgif" / "gifs"),
                "--split", "train", "--output_dir", str(directory), "--num_workers", "0", "--batch_size", "3"]  # fmt: skip

    evaluate.main(evaluate_argv(tmp_path / "one"))
    result = torchrun(2, [str(ROOT / "finetune" / "evaluate.py"), *evaluate_argv(tmp_path / "two")], cwd=ROOT, timeout=300,
                      env={"ACCELERATE_USE_CPU": "true"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = ((tmp_path / run / "predictions.csv").read_text() for run in ("one", "two"))
    assert two == one and len(one.splitlines()) - 1 == len(load_annotations("tgif-count", bench / "tgif", "train"))


def test_task_sampling_alpha_sets_each_tasks_share_of_an_epoch():
    """alpha 1: each task the batches its data fills (the order as it always was); alpha 0: the same
    number for every task, the small task repeating its examples in fresh shuffles; same epoch length."""
    from finetune.train_qa import TaskBatchSampler

    sizes, batch = [10, 40, 150], 5  # 2, 8 and 30 batches of their own
    natural = TaskBatchSampler(sizes, batch, seed=1)
    assert natural.batches_per_task() == [2, 8, 30] and len(natural) == 40
    uniform = TaskBatchSampler(sizes, batch, seed=1, alpha=0.0)
    assert uniform.batches_per_task() == [14, 13, 13] and len(uniform) == 40  # 40 / 3, remainder to the first
    half = TaskBatchSampler(sizes, batch, seed=1, alpha=0.5)
    # sqrt(10) : sqrt(40) : sqrt(150) = 3.16 : 6.32 : 12.25 of 40 batches -> 5.8, 11.6, 22.5
    assert half.batches_per_task() == [6, 12, 22]

    for sampler in (natural, uniform, half):
        batches = list(sampler)
        assert len(batches) == len(sampler) and all(len(b) == batch for b in batches)
        task_of = [next(t for t, end in enumerate([10, 50, 200]) if b[0] < end) for b in batches]
        for b, t in zip(batches, task_of):  # every batch holds one task's examples
            assert all([0, 10, 50][t] <= i < [10, 50, 200][t] for i in b)
        assert [task_of.count(t) for t in range(3)] == sampler.batches_per_task()
        assert batches == list(type(sampler)(sizes, batch, seed=1, alpha=sampler.alpha))  # a function of (seed, epoch)
    # alpha 1 is the order the sampler always gave: each task's one shuffle cut into batches (the last
    # one wrapping around), then all batches shuffled; sizes that batches do not divide included.
    odd = TaskBatchSampler([7, 12, 3], 5, seed=2)
    rng, expected = odd.rng(), []
    for offset, n in zip(odd.offsets, odd.sizes):
        expected += odd.full_batches(rng.permutation(n) + offset)
    assert list(odd) == [expected[i] for i in rng.permutation(len(expected))]
    small = [i for b in uniform for i in b if i < 10]
    assert sorted(small) == sorted(list(range(10)) * 7)  # 14 batches of 5: seven whole shuffles of the 10


def test_video_lr_multiplier_scales_only_the_video_encoder():
    from clover.configuration_clover import CloverConfig

    model = CloverForVideoQA(CloverConfig.from_preset("clover-tiny"))
    groups = training.parameter_groups(model, 1e-3, 0.01, head_lr_multiplier=5.0, video_lr_multiplier=0.1)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(lr_of) == len(named)  # every trainable parameter once
    for name, parameter in named.items():
        expected = 5e-3 if name.startswith("heads.") else 1e-4 if name.startswith("clover.video_encoder.") else 1e-3
        assert lr_of[id(parameter)] == pytest.approx(expected), name
    argv = ["--task", "tgif-action", "--annotations", "a", "--videos", "v", "--output_dir", "o", "--preset", "clover-tiny", "--video_lr_multiplier", "0.2"]
    args = train_qa.parse_args(argv)
    assert args.video_lr_multiplier == 0.2 and args.task_sampling_alpha == 1.0
