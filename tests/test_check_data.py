"""`python -m finetune.check_data` on generated datasets: the JSON report, and refusals with a reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clover.data.annotations import load_annotations
from clover.data.synthetic import generate_benchmark
from finetune import check_data
from tests.media import zero_byte


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train, 1 val, 1 test clips; one train clip is missing and one is a zero-byte file."""
    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, seed=2, train_clips=4, val_clips=1, test_clips=1, size=64, num_frames=8, fps=8, progress=False)
    clips = sorted({r["video"] for r in load_annotations("tgif-frameqa", out / "tgif", "train")})
    (out / "tgif" / "gifs" / clips[0]).unlink()
    zero_byte(out / "tgif" / "gifs" / clips[1])
    return out


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | None, str]:
    code = check_data.main(list(argv))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def test_report_counts_missing_and_unreadable_clips(bench: Path, capsys: pytest.CaptureFixture) -> None:
    tgif = bench / "tgif"
    code, report, err = _run(capsys, "--task", "tgif-frameqa", "--annotations", str(tgif), "--videos", str(tgif / "gifs"))
    assert code == 0, err
    expected = {split: len(load_annotations("tgif-frameqa", tgif, split)) for split in ("train", "val", "test")}
    assert report["splits"] == expected
    assert (report["clips"], report["missing_clips"], report["unreadable_clips"]) == (6, 1, 1)
    assert report["answer_vocab_size"] == len({r["answer"] for r in load_annotations("tgif-frameqa", tgif, "train")})
    assert 0.0 <= report["test_answer_coverage"] <= 1.0
    assert "decoding clips" in err  # the progress bar is on stderr


def test_no_decode_only_checks_files(bench: Path, capsys: pytest.CaptureFixture) -> None:
    tgif = bench / "tgif"
    code, report, _ = _run(capsys, "--task", "tgif-action", "--annotations", str(tgif), "--videos", str(tgif / "gifs"), "--no-decode")
    assert code == 0
    assert (report["missing_clips"], report["unreadable_clips"], report["answer_vocab_size"]) == (1, 0, None)


def test_all_clips_missing_fails_with_reason(bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, report, err = _run(capsys, "--task", "msvd-qa", "--annotations", str(bench / "msvd"), "--videos", str(tmp_path))
    assert code == 1 and report["missing_clips"] == report["clips"]
    assert "all 6 clips are missing" in err


def test_empty_train_file_fails(bench: Path, tmp_path: Path) -> None:
    """Through the command line: exit status 1 and the reason on stderr."""
    tgif = tmp_path / "tgif"
    shutil.copytree(bench / "tgif", tgif, ignore=shutil.ignore_patterns("gifs", "splits.json"))
    train = tgif / "Train_count_question.csv"
    train.write_text(train.read_text().splitlines()[0] + "\n")
    command = [sys.executable, "-m", "finetune.check_data", "--task", "tgif-count", "--annotations", str(tgif), "--videos", str(bench / "tgif" / "gifs")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert run.returncode == 1
    assert "no train questions" in run.stderr


def test_wrong_folder_fails_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, report, err = _run(capsys, "--task", "tgif-action", "--annotations", str(tmp_path), "--videos", str(tmp_path))
    assert code == 1 and report is None
    assert "Train_action_question.csv" in err
