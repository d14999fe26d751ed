"""The real app (`python app.py` in a subprocess, random clover-tiny) through `gradio_client`: each named
endpoint, an unreadable clip's error message, serving on after it; settings from flags and environment;
importing app.py does no heavy work."""

from __future__ import annotations

import importlib.util
from contextlib import closing
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.settings import Settings, parse_settings
from clover.video import VideoReadError, read_frames
from tests.media import text_as_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(app_url: str):
    client = Client(app_url, verbose=False, download_files=False)
    yield client
    client.close()


def confidences(value: dict) -> list[float]:
    return [item["confidence"] for item in value["confidences"]]


def test_api_lists_the_three_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/answer", "/choose", "/search"}
    assert [p["parameter_name"] for p in endpoints["/choose"]["parameters"]] == ["video", "question", "candidates"]


def test_answer_endpoint(client, demo_examples):
    value = client.predict(handle_file(demo_examples / "clips" / "noise_a.mp4"), "what color is the circle ?", api_name="/answer")
    scores = confidences(value)
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
    assert value["label"] == value["confidences"][0]["label"]


def test_choose_endpoint(client, demo_examples):
    value = client.predict(
        handle_file(demo_examples / "clips" / "noise_b.mp4"), "what does the star do ?", "jump\nblink\n\nrotate\n", api_name="/choose"
    )
    assert sorted(item["label"] for item in value["confidences"]) == ["blink", "jump", "rotate"]
    assert sum(confidences(value)) == pytest.approx(1, abs=1e-4)


def test_search_endpoint_ranks_examples_and_session_clips(app_url, tmp_path):
    from tests.media import random_clip

    with closing(Client(app_url, verbose=False, download_files=False)) as session:
        before = session.predict("a red circle jumps", api_name="/search")
        assert sorted(item["label"] for item in before["confidences"]) == ["noise_a.mp4", "noise_b.mp4"]
        mine = random_clip(tmp_path / "mine.mp4", num_frames=20, size=(96, 64), seed=7)
        session.predict(handle_file(mine), "what color is the circle ?", api_name="/answer")
        after = session.predict("a red circle jumps", api_name="/search")
    assert sorted(item["label"] for item in after["confidences"]) == ["mine.mp4", "noise_a.mp4", "noise_b.mp4"]
    assert sum(confidences(after)) == pytest.approx(1, abs=1e-4)
    with closing(Client(app_url, verbose=False, download_files=False)) as other:  # another session: not its clip
        assert len(other.predict("a red circle jumps", api_name="/search")["confidences"]) == 2


def test_unreadable_clip_gives_the_readers_message_and_the_app_serves_on(client, tmp_path, demo_examples):
    not_video = text_as_video(tmp_path / "notes.mp4")
    with pytest.raises(VideoReadError) as local:
        read_frames(not_video)
    with pytest.raises(AppError) as error:
        client.predict(handle_file(not_video), "what color is the circle ?", api_name="/answer")
    message = str(error.value)
    assert message.startswith("cannot read video '") and message.endswith(f"notes.mp4': {local.value.reason}")
    assert "Traceback" not in message
    with pytest.raises(AppError, match="^question is empty$"):
        client.predict(handle_file(demo_examples / "clips" / "noise_a.mp4"), "  ", api_name="/answer")
    value = client.predict(handle_file(demo_examples / "clips" / "noise_a.mp4"), "what color is it ?", api_name="/answer")
    assert len(value["confidences"]) == 5


# --- settings and import ---------------------------------------------------------------------------


def test_settings_flags_over_environment_over_defaults():
    assert parse_settings([], {}) == Settings()
    environ = {"CLOVER_CHECKPOINT": "me/clover-ft", "CLOVER_MAX_UPLOAD_MB": "20", "GRADIO_SERVER_PORT": "8000",
               "GRADIO_SERVER_NAME": "0.0.0.0", "CLOVER_INT8": "1"}  # fmt: skip
    settings = parse_settings(["--port", "9000", "--max-duration", "30"], environ)
    assert settings.checkpoint == "me/clover-ft" and settings.max_upload_mb == 20 and settings.int8
    assert settings.port == 9000 and settings.host == "0.0.0.0" and settings.max_duration_sec == 30
    assert parse_settings(["--int8", "--share", "--concurrency", "4"], {}).share


def test_bad_setting_value_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        parse_settings([], {"CLOVER_MAX_UPLOAD_MB": "lots"})
    assert "CLOVER_MAX_UPLOAD_MB='lots' is not a valid float" in capsys.readouterr().err


def test_importing_app_py_builds_the_layout_without_loading_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOVER_CHECKPOINT", str(tmp_path / "absent"))
    spec = importlib.util.spec_from_file_location("clover_app_main", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.holder._service is None and module.settings.checkpoint == str(tmp_path / "absent")
    assert "could not be loaded" in module.build_demo.__globals__["Handlers"](module.holder, []).note()
