"""`python -m clover.predict` as users run it (subprocesses, random clover-tiny checkpoint): the --json
schema, multiple choice, one-line errors without tracebacks, and the CSV batch mode."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media import random_clip, text_as_video

ROOT = Path(__file__).resolve().parents[1]


def run_predict(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clover.predict", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("predict_clips")
    random_clip(directory / "a.mp4", num_frames=20, size=(96, 64), seed=3)
    random_clip(directory / "b.mp4", num_frames=20, size=(96, 64), seed=4)
    text_as_video(directory / "broken.mp4")
    return directory


def test_json_output_schema(tiny_checkpoint, clip_dir):
    result = run_predict(clip_dir / "a.mp4", "what color is the circle ?", "--checkpoint", tiny_checkpoint, "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)  # exactly one JSON object
    assert list(output) == ["answers"] and len(output["answers"]) == 3
    assert all(set(item) == {"answer", "probability"} for item in output["answers"])
    probabilities = [item["probability"] for item in output["answers"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1


def test_multiple_choice_ranks_the_candidates(tiny_checkpoint, clip_dir):
    result = run_predict(clip_dir / "a.mp4", "what does the star do ?", "--candidates", "jump", "blink", "rotate",
                         "--checkpoint", tiny_checkpoint, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)["answers"]
    assert sorted(item["answer"] for item in answers) == ["blink", "jump", "rotate"]


@pytest.mark.parametrize(
    "video, question, message",
    [
        ("broken.mp4", "what color is the circle ?", "error: cannot read video '.*broken.mp4': "),
        ("absent.mp4", "what color is the circle ?", "error: cannot read video '.*absent.mp4': file not found"),
        ("a.mp4", " ", "error: question is empty"),
    ],
)
def test_errors_are_one_line_without_traceback(tiny_checkpoint, clip_dir, video, question, message):
    result = run_predict(clip_dir / video, question, "--checkpoint", tiny_checkpoint)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert re.match(message, result.stderr)


def test_missing_checkpoint_is_a_one_line_error(tmp_path, clip_dir):
    result = run_predict(clip_dir / "a.mp4", "what color ?", "--checkpoint", tmp_path / "nothing")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_csv_batch_mode(tiny_checkpoint, clip_dir, tmp_path):
    questions = tmp_path / "questions.csv"
    with open(questions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "question", "candidates"])
        writer.writerow(["a.mp4", "what color is the circle ?", ""])
        writer.writerow(["a.mp4", "what does the star do ?", "jump|blink|rotate"])
        writer.writerow(["b.mp4", "how many times does the star jump ?", ""])
        writer.writerow(["broken.mp4", "what color is the circle ?", ""])
    output = tmp_path / "out" / "answers.csv"
    result = run_predict("--videos", clip_dir, "--questions", questions, "--output", output, "--checkpoint", tiny_checkpoint)
    assert result.returncode == 1 and "1 row(s) failed" in result.stderr and "Traceback" not in result.stderr
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["video"] for row in rows] == ["a.mp4", "a.mp4", "b.mp4", "broken.mp4"]
    assert list(rows[0]) == ["video", "question", "answer", "probability", "error"]
    assert rows[1]["answer"] in {"jump", "blink", "rotate"} and 0 < float(rows[1]["probability"]) <= 1
    assert rows[2]["answer"] in {str(n) for n in range(11)} and rows[2]["probability"] == "1.000000"  # count head
    assert rows[3]["answer"] == "" and rows[3]["error"].startswith("cannot read video")
    assert all(row["error"] == "" for row in rows[:3])


def test_usage_errors(tiny_checkpoint):
    result = run_predict("--videos", "somewhere")
    assert result.returncode == 2 and "batch mode takes --videos, --questions and --output" in result.stderr
