"""Every case of the bad-input corpus (`tests/corpus.py`) through every layer, and the safety checks.

Each layer must give a clear error or a correct answer for each case: no crash, no hang (20 s per case
at most), no stack trace shown to the user, and it serves a good request right after a bad one. The app
is the real `python app.py` on a random clover-tiny checkpoint (one server for the module), with small
limits (2 MB, 120 s) so that "too large" and "too long" cost little.

Safety: pickle weights are refused unless allowed; hostile upload names reach no file-system path
unsanitised; the app leaves no files of its own behind; the size and duration
limits hold when the client lies about the size or the extension.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.service import ServiceError, VideoQAService
from clover.modeling_clover import CloverForVideoQA
from clover.processing_clover import CloverProcessor
from tests.corpus import (
    CASE_TIMEOUT_SEC, GOOD_QUESTION, TEST_DURATION_SEC, TEST_UPLOAD_MB, AppProcess, Case, all_cases,
    make_corpus, run_app, run_check_data, run_predict, run_processor, run_read, run_service,
)  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
CASES = all_cases()


def _params(layer: str) -> list:
    return [pytest.param(case.name, id=case.name) for case in CASES if layer in case.expect]


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    directory = tmp_path_factory.mktemp("corpus")
    return {case.name: case for case in make_corpus(directory)}


@pytest.fixture(scope="module")
def good(corpus: dict[str, Case]) -> Path:
    return corpus["good clip"].video


@pytest.fixture(scope="module")
def service(tiny_checkpoint: Path) -> VideoQAService:
    return VideoQAService(tiny_checkpoint, max_upload_mb=TEST_UPLOAD_MB, max_duration_sec=TEST_DURATION_SEC)


@pytest.fixture(scope="module")
def app(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real app with small limits, its Gradio temp dir our own (so its files can be counted)."""
    with AppProcess(tiny_checkpoint, tmp_path_factory.mktemp("app")) as process:
        yield process


@pytest.fixture(scope="module")
def client(app: AppProcess):
    with closing(Client(app.url, verbose=False, download_files=False)) as client:
        yield client


def _check(outcome, case: Case, layer: str) -> None:
    """The layer did what the case expects, within the time bound, with a message for the user."""
    assert outcome.status in ("ok", "error"), f"{layer} {outcome.status} on {case.name!r}: {outcome.message}"
    assert outcome.status == case.expect[layer], f"{layer} on {case.name!r}: {outcome.status}: {outcome.message}"
    assert outcome.seconds < CASE_TIMEOUT_SEC
    if outcome.status == "error":
        assert outcome.message.strip() and "Traceback" not in outcome.message


# ------------------------------------------------------------------------------------ each layer
@pytest.mark.parametrize("name", _params("read"))
def test_read_frames(corpus, good, name):
    _check(run_read(corpus[name], good), corpus[name], "read")


@pytest.mark.parametrize("name", _params("processor"))
def test_processor(corpus, good, tiny_checkpoint, name):
    processor = CloverProcessor.from_pretrained(tiny_checkpoint)
    _check(run_processor(corpus[name], good, processor), corpus[name], "processor")


@pytest.mark.parametrize("name", _params("service"))
def test_service_then_a_good_request(corpus, good, service, name):
    _check(run_service(corpus[name], good, service), corpus[name], "service")
    assert len(service.answer(good, GOOD_QUESTION).answers) == 5


@pytest.mark.parametrize("name", _params("app"))
def test_app_endpoint_then_a_good_request(corpus, good, client, name):
    outcome = run_app(corpus[name], good, client)
    _check(outcome, corpus[name], "app")
    if outcome.status == "error":  # the service's own message, HTML-escaped, never a generic failure
        assert "failed on the server" not in outcome.message
    assert len(client.predict(handle_file(good), GOOD_QUESTION, api_name="/answer")["confidences"]) == 5


@pytest.mark.parametrize("name", _params("predict"))
def test_predict_cli(corpus, good, tiny_checkpoint, name):
    _check(run_predict(corpus[name], good, tiny_checkpoint), corpus[name], "predict")


@pytest.mark.parametrize("name", _params("check_data"))
def test_check_data(corpus, good, tmp_path, name):
    _check(run_check_data(corpus[name], good, tmp_path), corpus[name], "check_data")


def test_predict_cli_process_prints_one_line_for_a_bad_clip(corpus, tiny_checkpoint):
    """The real process: exit 1 and one `error:` line on stderr, no traceback (the in-process runs
    above check every case)."""
    command = [sys.executable, "-m", "clover.predict", str(corpus["8000x8000 GIF"].video), GOOD_QUESTION,
               "--checkpoint", str(tiny_checkpoint)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "megapixels" in done.stderr


# ------------------------------------------------------------------------------------------ safety
@pytest.fixture(scope="module")
def pickle_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with its weights as pytorch_model.bin (pickle) instead of safetensors."""
    from safetensors.torch import load_file

    directory = tmp_path_factory.mktemp("pickle_checkpoint")
    shutil.copytree(tiny_checkpoint, directory, dirs_exist_ok=True)
    torch.save(load_file(directory / "model.safetensors"), directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    return directory


def test_pickle_weights_are_refused_unless_allowed(pickle_checkpoint, tiny_checkpoint):
    with pytest.raises(OSError, match="pickle weights .* allow_pickle=True"):
        CloverForVideoQA.from_pretrained(pickle_checkpoint)
    with pytest.raises(ValueError, match="allow_pickle"):
        CloverForVideoQA.from_pretrained(tiny_checkpoint, use_safetensors=False)
    with pytest.raises(ServiceError, match="pickle"):
        VideoQAService(pickle_checkpoint)
    allowed = CloverForVideoQA.from_pretrained(pickle_checkpoint, allow_pickle=True)
    reference = CloverForVideoQA.from_pretrained(tiny_checkpoint)
    for (name, got), expected in zip(allowed.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=name)


def test_predict_cli_refuses_pickle_weights_unless_allow_pickle(pickle_checkpoint, good, capsys):
    from clover import predict

    assert predict.main([str(good), GOOD_QUESTION, "--checkpoint", str(pickle_checkpoint)]) == 1
    assert "pickle" in capsys.readouterr().err
    assert predict.main([str(good), GOOD_QUESTION, "--checkpoint", str(pickle_checkpoint), "--allow-pickle", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["answers"]) == 5


def test_hostile_upload_name_stays_inside_the_temp_dir(app, client, corpus):
    """Uploads named with quotes, HTML, unicode and `..` are stored as `<temp dir>/<sha256>/<cleaned name>`,
    the error names the file and not the server's directories, and nothing appears outside the temp dir."""
    weird = corpus["hostile file name"].video.resolve()
    broken = weird.with_name("<img src=x onerror=alert(1)> ..\u202e.mp4")
    broken.write_bytes(b"not a video" * 10)
    outside_before = {path for path in app.directory.rglob("*") if app.temp_dir not in path.parents}
    assert len(client.predict(handle_file(weird), GOOD_QUESTION, api_name="/answer")["confidences"]) == 5
    with pytest.raises(AppError) as error:
        client.predict(handle_file(broken), GOOD_QUESTION, api_name="/answer")
    message = str(error.value)  # names the file (as Gradio stored it: no < or >), not the server's directories
    assert message.startswith("cannot read video 'img src=x onerror=alert(1) ..") and "<" not in message
    assert str(app.temp_dir) not in message and "/" not in message.split(":")[0]
    stored = [path.relative_to(app.temp_dir) for path in app.files() if "clip.mp4" in path.name or "onerror" in path.name]
    assert len(stored) == 2 and all(len(path.parts) == 2 and len(path.parts[0]) == 64 for path in stored), stored
    assert {path for path in app.directory.rglob("*") if app.temp_dir not in path.parents} == outside_before


def test_the_app_writes_no_files_of_its_own(app, client, corpus, good):
    """Requests (good and bad) leave only Gradio's copies of the uploads in the temp dir: one per
    distinct upload, none for repeated ones, no frame images or other files."""
    before = set(app.files())
    clips = [good, corpus["random bytes .mp4"].video, corpus["one-frame GIF"].video]
    for _ in range(2):
        for clip in clips:
            try:
                client.predict(handle_file(clip), GOOD_QUESTION, api_name="/answer")
            except AppError:
                pass
    added = set(app.files()) - before
    assert {path.name for path in added} <= {clip.name for clip in clips}
    assert len(added) <= len(clips)


def test_upload_limit_holds_when_the_client_lies_about_the_size(app, tmp_path):
    """A body larger than the limit, sent with a forged small Content-Length or chunked with none, and
    named .txt: the server refuses it (or reads only the declared bytes) and stores nothing large."""
    big = os.urandom(int((TEST_UPLOAD_MB + 1) * 2**20))
    for chunked in (False, True):
        status, body = _raw_upload(app.port, big, "clip.txt", forged_length=None if chunked else 1000)
        stored = [path for path in app.files() if path.stat().st_size > TEST_UPLOAD_MB * 2**20]
        assert not stored, f"chunked={chunked}: stored {stored} (HTTP {status} {body[:200]!r})"
        if status == 200:  # accepted: then only what the forged length declared can have been read
            assert all(path.stat().st_size <= 1000 for path in app.files() if path.name == "clip.txt")


def test_service_checks_the_real_size_and_duration_not_the_name(service, corpus, tmp_path):
    big = tmp_path / "small.gif"  # the name says small
    big.write_bytes(os.urandom(int((TEST_UPLOAD_MB + 0.5) * 2**20)))
    with pytest.raises(ServiceError, match=f"the limit is {TEST_UPLOAD_MB} MB"):
        service.answer(big, GOOD_QUESTION)
    with pytest.raises(ServiceError, match=f"36000 s long; the limit is {TEST_DURATION_SEC} s"):
        service.answer(corpus["long clip named .txt"].video, GOOD_QUESTION)


def test_temp_files_are_removed_at_shutdown(tiny_checkpoint, tmp_path, good):
    """A second server: after an upload its temp dir holds the file; after SIGTERM, nothing of it."""
    with AppProcess(tiny_checkpoint, tmp_path) as app:
        with closing(Client(app.url, verbose=False, download_files=False)) as client:
            client.predict(handle_file(good), GOOD_QUESTION, api_name="/answer")
        assert app.files()
    assert app.returncode is not None
    assert not app.files(), f"left behind at shutdown: {app.files()}"


def _raw_upload(port: int, data: bytes, filename: str, forged_length: int | None) -> tuple[int, bytes]:
    """POST a multipart upload to Gradio's upload route: a forged Content-Length, or chunked with none."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/gradio_api/upload")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        if forged_length is None:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for start in range(0, len(body), 2**16):
                chunk = body[start : start + 2**16]
                connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            connection.putheader("Content-Length", str(forged_length))
            connection.endheaders()
            try:
                connection.send(body)
            except OSError:
                pass  # the server may close the connection once it has its declared bytes
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return 0, str(error).encode()
    finally:
        connection.close()
