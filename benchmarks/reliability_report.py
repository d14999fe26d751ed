"""Regenerate docs/reliability.md: the bad-input corpus through every layer, kill-resume, and load figures.

    python benchmarks/reliability_report.py [--with-load] [--output docs/reliability.md]

Writes the corpus (`tests/corpus.py`) into a temp dir, saves a random clover-tiny checkpoint, starts the
real app once, and puts every case through `read_frames`, the processor, the service, the app's
endpoints, `clover.predict` and `check_data`, recording each outcome (ok / error / crash / hang), its
time and its message. Then runs `tests/test_kill_resume.py` (pytest) for its summary and, with
`--with-load`, `benchmarks/app_load.py` for the load figures. The page is written whatever the outcomes;
cells that differ from what the case expects are marked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from tests.corpus import (  # noqa: E402
    LAYERS, TEST_DURATION_SEC, TEST_UPLOAD_MB, AppProcess, Case, Outcome, make_corpus, run_app, run_check_data,
    run_predict, run_processor, run_read, run_service,
)  # fmt: skip

SYMBOL = {"ok": "ok", "error": "error", "crash": "**CRASH**", "hang": "**HANG**"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-load", action="store_true", help="also run benchmarks/app_load.py")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    return parser.parse_args(argv)


def run_corpus(scratch: Path) -> tuple[list[Case], dict[tuple[str, str], Outcome]]:
    """Every case through every layer that applies to it."""
    from gradio_client import Client

    from app.service import VideoQAService
    from clover.processing_clover import CloverProcessor
    from tests.conftest import save_tiny_checkpoint

    checkpoint = save_tiny_checkpoint(scratch / "tiny")
    cases = make_corpus(scratch / "corpus")
    good = scratch / "corpus" / "good.mp4"
    processor = CloverProcessor.from_pretrained(checkpoint)
    service = VideoQAService(checkpoint, max_upload_mb=TEST_UPLOAD_MB, max_duration_sec=TEST_DURATION_SEC)
    outcomes: dict[tuple[str, str], Outcome] = {}
    with AppProcess(checkpoint, scratch / "app") as app, closing(Client(app.url, verbose=False, download_files=False)) as client:
        runners = {
            "read": lambda case: run_read(case, good),
            "processor": lambda case: run_processor(case, good, processor),
            "service": lambda case: run_service(case, good, service),
            "app": lambda case: run_app(case, good, client),
            "predict": lambda case: run_predict(case, good, checkpoint),
            "check_data": lambda case: run_check_data(case, good, scratch / "check_data"),
        }
        for case in cases:
            for layer in LAYERS:
                if layer in case.expect:
                    outcomes[case.name, layer] = runners[layer](case)
                    print(f"{case.name:34} {layer:10} {outcomes[case.name, layer].status}", file=sys.stderr)
    return cases, outcomes


def run_kill_resume(scratch: Path) -> dict:
    """tests/test_kill_resume.py through pytest, its summary read back."""
    summary = scratch / "kill_resume.json"
    env = {**os.environ, "CLOVER_KILL_RESUME_SUMMARY": str(summary)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_kill_resume.py"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(summary.read_text()) if summary.is_file() else {}
    result["passed"] = done.returncode == 0
    result["pytest"] = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    return result


def run_load() -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / "app_load.py")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return json.loads(done.stdout) if done.returncode == 0 else {"failed": done.stderr[-500:]}


# ---------------------------------------------------------------------------------------------- page
def cell(case: Case, layer: str, outcomes: dict[tuple[str, str], Outcome]) -> str:
    if layer not in case.expect:
        return "–"
    outcome = outcomes[case.name, layer]
    text = SYMBOL[outcome.status]
    return text if outcome.status == case.expect[layer] else f"**{text}** (expected {case.expect[layer]})"


def outcome_table(cases: list[Case], outcomes: dict[tuple[str, str], Outcome]) -> list[str]:
    lines = ["| case | what it is | " + " | ".join(LAYERS) + " |", "|" + " --- |" * (len(LAYERS) + 2)]
    for case in cases:
        cells = " | ".join(cell(case, layer, outcomes) for layer in LAYERS)
        lines.append(f"| {case.name} | {_escape(case.why)} | {cells} |")
    return lines


def message_table(cases: list[Case], outcomes: dict[tuple[str, str], Outcome]) -> list[str]:
    """The message the user sees, per case (the app's, else the service's, else the reader's)."""
    lines = ["| case | message shown by the app (or the first layer that refuses it) | slowest layer |", "| --- | --- | --- |"]
    for case in cases:
        shown = next((outcomes[case.name, layer] for layer in ("app", "service", "processor", "read")
                      if (case.name, layer) in outcomes and outcomes[case.name, layer].status != "ok"), None)  # fmt: skip
        slowest = max((outcomes[case.name, layer].seconds for layer in LAYERS if (case.name, layer) in outcomes), default=0)
        message = _escape(_short(shown.message)) if shown else "(answered)"
        lines.append(f"| {case.name} | {message} | {slowest:.2f} s |")
    return lines


def write_page(path: Path, cases: list[Case], outcomes: dict, kill: dict, load: dict | None) -> None:
    failures = sum(1 for case in cases for layer in case.expect if outcomes[case.name, layer].status != case.expect[layer])
    lines = [
        "# Reliability: bad input, faults and load, measured",
        "",
        "Generated by `python benchmarks/reliability_report.py --with-load` (do not edit by hand). The corpus is",
        "made by `tests/corpus.py`; `tests/test_reliability.py` and `tests/test_kill_resume.py` assert the same",
        "outcomes in the default `pytest` run.",
        "",
        "Layers: `read` = `clover.video.read_frames`; `processor` = `CloverProcessor` on those frames; `service` =",
        f"`VideoQAService` (limits {TEST_UPLOAD_MB} MB, {TEST_DURATION_SEC} s); `app` = the running `python app.py` through",
        "`gradio_client` (/answer, /choose); `predict` = `clover.predict`; `check_data` = `finetune.check_data` on a",
        "generic dataset holding the clip (\"error\" = counted unreadable with its reason, dataset still usable).",
        "\"ok\" is an answer, \"error\" a clear message; every case is bounded by 20 s, and after each the",
        "service and the app answer a good request.",
        "",
        f"**{len(cases)} cases, {sum(len(c.expect) for c in cases)} case-layer runs, {failures} not as expected.**",
        "",
        *outcome_table(cases, outcomes),
        "",
        "## What the user is told",
        "",
        *message_table(cases, outcomes),
        "",
        *kill_section(kill),
        *load_section(load),
        *SAFETY,
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def kill_section(kill: dict) -> list[str]:
    return [
        "## Kill and resume",
        "",
        "`python -m finetune.train_qa` (clover-tiny, 4 clips, batch 2, a checkpoint every step, "
        f"{kill.get('max_steps', '?')} steps) SIGKILLed three times at seeded moments, resumed with "
        "`--resume_from_checkpoint latest` each time, past a planted half-written checkpoint (no COMPLETE, truncated weights):",
        "",
        f"- killed: {', '.join(kill.get('kills', [])) or 'n/a'}",
        f"- resumed from: {', '.join(kill.get('resumed_from', [])) or 'n/a'}",
        f"- skipped: {'; '.join(s.split('/')[-1] for s in kill.get('skipped', [])) or 'n/a'}",
        f"- largest weight difference from the uninterrupted run: {kill.get('max_abs_weight_difference', 'n/a')}; "
        f"metrics equal: {kill.get('metrics_equal', 'n/a')}; test: {kill.get('pytest', '')}",
        "",
    ]


def load_section(load: dict | None) -> list[str]:
    if load is None:
        return ["## Load", "", "Not run this time (`--with-load`).", ""]
    return ["## Load", "", "`python benchmarks/app_load.py` (2 CPU cores shared with other work):", "", "```json",
            json.dumps(load, indent=1), "```", ""]  # fmt: skip


SAFETY = [
    "## Safety checks (tests/test_reliability.py)",
    "",
    "- Weights load only from safetensors: a checkpoint holding only `pytorch_model.bin` is refused by",
    "  `CloverForVideoQA.from_pretrained`, the service and `clover.predict` with a message, unless",
    "  `allow_pickle=True` / `--allow-pickle`.",
    "- Upload names with quotes, HTML, unicode, `..` are stored by Gradio as `<temp>/<sha256>/<cleaned name>`;",
    "  messages name the file, never the server's directories.",
    "- The app writes no files of its own; the uploads Gradio caches are deleted at shutdown (SIGINT or",
    "  SIGTERM), and after at most an hour while it runs (they stay that long so that follow-up questions",
    "  and the session's search can use them).",
    "- A body over the upload limit with a forged Content-Length, or chunked with none, named .txt, is not",
    "  stored; the service checks the size on disk and the probed duration, whatever the name.",
    "- Frames over 4096x2160 pixels are refused before decoding (an 8000x8000 GIF of 50 KB used to take 2 GB).",
    "",
]


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clover_reliability_") as name:
        scratch = Path(name)
        cases, outcomes = run_corpus(scratch)
        kill = run_kill_resume(scratch)
    load = run_load() if args.with_load else None
    write_page(args.output, cases, outcomes, kill, load)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
