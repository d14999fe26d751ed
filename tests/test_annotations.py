"""Tests for `clover.data.annotations` on fixture files written here in the published formats.

The example rows are those of `shared/data-formats.md`; TGIF files are TAB-separated with a header and
CSV quoting, MSVD-QA is JSON plus `youtube_mapping.txt`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from clover.data.annotations import (
    DEFAULT_TOP_K,
    IGNORE_INDEX,
    TASKS,
    DatasetFormatError,
    build_answer_vocab,
    encode_answers,
    infer_generic_kind,
    load_annotations,
    load_caption_pairs,
    question_type,
    tgif_val_clips,
    vocab_coverage,
)

ACTION_HEADER = ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"]
FRAMEQA_HEADER = ["gif_name", "question", "answer", "type", "vid_id", "key", "description"]
COUNT_HEADER = ["gif_name", "question", "answer", "vid_id", "key"]

ACTION_ROW = ["tumblr_nqc2mbmU2J1uxhtnwo1_400", "What does the woman do 4 times ?", "flick", "do gymnastic",
              "chew food", "shake hips left and right", "pat the back of the other man", "2", "ACTION1", "5"]
FRAMEQA_ROW = ["tumblr_no73q2fm0I1uuf348o1_250", "what is being placed in the white ice cream cone ?", "cookie",
               "0", "FRAMEQA1159", "27138", "a chocolate cookie is being placed in a white ice cream cone ."]
COUNT_ROW = ["tumblr_nd53vw6Crc1r7na6zo1_400", "How many times does the man wave his head ?", "5", "COUNT2", "16"]


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Write a TGIF-style file: TAB-separated, header first, fields with quotes CSV-quoted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def count_rows(n_clips: int, per_clip: int = 2) -> list[list[str]]:
    """Count rows over `n_clips` gifs, `per_clip` questions each."""
    return [[f"gif{c:03d}", f"How many times q{q} ?", str(q), f"COUNT{c}", str(c * per_clip + q)]
            for c in range(n_clips) for q in range(per_clip)]


# --------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------


def test_task_specs():
    assert set(TASKS) == {"tgif-action", "tgif-transition", "tgif-frameqa", "tgif-count", "msvd-qa", "generic"}
    assert TASKS["tgif-action"].kind == "mc" and TASKS["tgif-action"].max_text_length == 100
    assert TASKS["tgif-frameqa"].kind == "open" and TASKS["tgif-frameqa"].has_question_types
    assert TASKS["tgif-count"].kind == "count" and TASKS["tgif-count"].max_text_length == 40
    assert TASKS["msvd-qa"].has_question_types and DEFAULT_TOP_K["msvd-qa"] == 1000


def test_unknown_task_and_split(tmp_path):
    with pytest.raises(ValueError, match="tgif-action"):
        load_annotations("tgif-actions", tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_annotations("tgif-count", tmp_path, "dev")


# --------------------------------------------------------------------------------------------------
# TGIF-QA
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["action", "transition"])
def test_tgif_multiple_choice(tmp_path, task):
    write_tsv(tmp_path / f"Test_{task}_question.csv", ACTION_HEADER, [ACTION_ROW])
    (record,) = load_annotations(f"tgif-{task}", tmp_path, "test")
    assert record["id"] == "5"
    assert record["video"] == "tumblr_nqc2mbmU2J1uxhtnwo1_400.gif"
    assert record["question"] == "What does the woman do 4 times ?"
    assert record["candidates"] == ["flick", "do gymnastic", "chew food", "shake hips left and right",
                                    "pat the back of the other man"]
    assert record["answer"] == 2 and record["candidates"][record["answer"]] == "chew food"
    assert record["type"] is None


def test_tgif_frameqa_type(tmp_path):
    rows = [FRAMEQA_ROW, ["g2", "how many dogs ?", "two", "1", "FRAMEQA2", "27139", "d"],
            ["g3", "what color is the car ?", "red", "2", "FRAMEQA3", "27140", "d"],
            ["g4", "where is the man ?", "room", "3", "FRAMEQA4", "27141", "d"]]
    write_tsv(tmp_path / "Test_frameqa_question.csv", FRAMEQA_HEADER, rows)
    records = load_annotations("tgif-frameqa", tmp_path, "test")
    assert records[0] == {"id": "27138", "video": "tumblr_no73q2fm0I1uuf348o1_250.gif",
                          "question": "what is being placed in the white ice cream cone ?",
                          "answer": "cookie", "type": "object"}
    assert [r["type"] for r in records] == ["object", "number", "color", "location"]
    assert [question_type(r) for r in records] == ["object", "number", "color", "location"]


def test_tgif_count_keeps_zero_and_numeric_names(tmp_path):
    rows = [COUNT_ROW, ["00123", "How many times ?", "0", "COUNT3", "17"]]
    write_tsv(tmp_path / "Test_count_question.csv", COUNT_HEADER, rows)
    records = load_annotations("tgif-count", tmp_path, "test")
    assert [r["answer"] for r in records] == [5, 0]
    assert all(isinstance(r["answer"], int) for r in records)
    assert records[1]["video"] == "00123.gif"  # not the number 123


def test_tgif_quoted_field_is_unescaped(tmp_path):
    path = tmp_path / "Test_frameqa_question.csv"
    path.write_text("\t".join(FRAMEQA_HEADER) + "\n"
                    + 'g1\t"what does he say ""hi"" to ?"\tdog\t0\tF1\t1\t"a ""quoted"" text"\n', encoding="utf-8")
    (record,) = load_annotations("tgif-frameqa", tmp_path, "test")
    assert record["question"] == 'what does he say "hi" to ?'


def test_tgif_repeated_keys_get_unique_ids(tmp_path):
    write_tsv(tmp_path / "Test_count_question.csv", COUNT_HEADER, [COUNT_ROW, COUNT_ROW])
    assert [r["id"] for r in load_annotations("tgif-count", tmp_path, "test")] == ["16", "16#2"]


def test_tgif_val_carved_by_clip(tmp_path):
    write_tsv(tmp_path / "Train_count_question.csv", COUNT_HEADER, count_rows(40, per_clip=3))
    train = load_annotations("tgif-count", tmp_path, "train")
    val = load_annotations("tgif-count", tmp_path, "val")
    train_clips, val_clips = {r["video"] for r in train}, {r["video"] for r in val}
    assert not train_clips & val_clips
    assert len(train) + len(val) == 120
    assert len(val_clips) == 4  # 10% of 40 clips
    expected = tgif_val_clips(tmp_path, 0.1, 0, task="tgif-count")
    assert sorted(c.removesuffix(".gif") for c in val_clips) == expected
    assert tgif_val_clips(tmp_path, 0.1, 0) == expected  # the only Train file in the folder
    assert load_annotations("tgif-count", tmp_path, "val") == val  # deterministic
    assert tgif_val_clips(tmp_path, 0.1, 1, task="count") != expected  # the seed matters
    assert len(tgif_val_clips(tmp_path, 0.25, 0, task="count")) == 10


def test_tgif_splits_json_is_respected(tmp_path):
    write_tsv(tmp_path / "Train_count_question.csv", COUNT_HEADER, count_rows(10))
    (tmp_path / "splits.json").write_text(json.dumps({"val": ["gif003", "gif007.gif"]}))
    val = load_annotations("tgif-count", tmp_path, "val", val_fraction=0.5)
    assert {r["video"] for r in val} == {"gif003.gif", "gif007.gif"}
    assert len(load_annotations("tgif-count", tmp_path, "train")) == 16
    assert tgif_val_clips(tmp_path, 0.5, 0) == ["gif003", "gif007"]


def test_tgif_missing_file_names_expected_file(tmp_path):
    (tmp_path / "gifs").mkdir()
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("tgif-action", tmp_path, "test")
    message = str(error.value)
    assert "Test_action_question.csv" in message and str(tmp_path) in message and "gifs" in message


def test_tgif_missing_column_names_file_and_column(tmp_path):
    path = write_tsv(tmp_path / "Test_frameqa_question.csv", [c for c in FRAMEQA_HEADER if c != "type"],
                     [[v for c, v in zip(FRAMEQA_HEADER, FRAMEQA_ROW) if c != "type"]])
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("tgif-frameqa", tmp_path, "test")
    message = str(error.value)
    assert str(path) in message and "missing columns type" in message and "found gif_name" in message


def test_tgif_comma_separated_file_is_reported(tmp_path):
    path = write_csv(tmp_path / "Test_count_question.csv", COUNT_HEADER, [COUNT_ROW])
    with pytest.raises(DatasetFormatError, match="missing columns gif_name"):
        load_annotations("tgif-count", tmp_path, "test")
    assert path.exists()


@pytest.mark.parametrize("bad_row, reason", [
    (["g1", "q ?", "five", "C1", "1"], "'answer' should be an integer"),
    (["g1", "q ?", "5", "C1"], "4 fields, the header has 5"),
])
def test_tgif_malformed_row_names_file_and_line(tmp_path, bad_row, reason):
    path = write_tsv(tmp_path / "Test_count_question.csv", COUNT_HEADER, [COUNT_ROW, bad_row])
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("tgif-count", tmp_path, "test")
    assert f"{path}, line 3" in str(error.value) and reason in str(error.value)


def test_tgif_mc_answer_out_of_range(tmp_path):
    write_tsv(tmp_path / "Test_action_question.csv", ACTION_HEADER, [ACTION_ROW[:7] + ["5"] + ACTION_ROW[8:]])
    with pytest.raises(DatasetFormatError, match="line 2: answer 5 is not a candidate index"):
        load_annotations("tgif-action", tmp_path, "test")


# --------------------------------------------------------------------------------------------------
# MSVD-QA
# --------------------------------------------------------------------------------------------------


def write_msvd(folder: Path) -> Path:
    """Shuffled mapping lines (line order != vid number) and an id with underscores and dashes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "youtube_mapping.txt").write_text(
        "a_b-c_D_10_20 vid3\n-4wsuPCjDBc_5_15 vid1\n\nxyz_0_4 vid2\n", encoding="utf-8")
    questions = [
        {"answer": "man", "id": 30934, "question": "who pours something ?", "video_id": 1},
        {"answer": "cook", "id": 30935, "question": "What is the woman doing?", "video_id": 3},
        {"answer": "slowly", "id": 30936, "question": "how does the dog run ?", "video_id": 2},
    ]
    for split in ("train", "val", "test"):
        (folder / f"{split}_qa.json").write_text(json.dumps(questions), encoding="utf-8")
    return folder


def test_msvd_maps_by_vid_name_and_types(tmp_path):
    folder = write_msvd(tmp_path / "msvd")
    records = load_annotations("msvd-qa", folder, "test")
    assert [r["video"] for r in records] == [
        "YouTubeClips/-4wsuPCjDBc_5_15.avi", "YouTubeClips/a_b-c_D_10_20.avi", "YouTubeClips/xyz_0_4.avi"]
    assert records[0]["id"] == "30934" and records[0]["answer"] == "man"
    assert records[0]["question"] == "who pours something ?"
    assert [r["type"] for r in records] == ["who", "what", "how"]
    assert question_type({"question": "When does it rain ?"}, task="msvd-qa") == "when"


def test_msvd_videos_dir_adds_paths(tmp_path, caplog):
    folder = write_msvd(tmp_path / "msvd")
    (folder / "YouTubeClips").mkdir()
    (folder / "YouTubeClips" / "xyz_0_4.avi").write_bytes(b"")
    records = load_annotations("msvd-qa", folder, "val", videos_dir=folder)
    assert len(records) == 3  # nothing dropped
    assert records[2]["video_path"] == str(folder / "YouTubeClips" / "xyz_0_4.avi")
    assert "2 of 3 records have no clip" in caplog.text


def test_msvd_missing_mapping_file(tmp_path):
    folder = write_msvd(tmp_path / "msvd")
    (folder / "youtube_mapping.txt").unlink()
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("msvd-qa", folder, "train")
    assert "youtube_mapping.txt" in str(error.value) and "train_qa.json" in str(error.value)


def test_msvd_missing_key_and_unknown_video(tmp_path):
    folder = write_msvd(tmp_path / "msvd")
    (folder / "train_qa.json").write_text(json.dumps([{"answer": "a", "id": 1, "question": "what ?"}]))
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("msvd-qa", folder, "train")
    assert "train_qa.json" in str(error.value) and "video_id" in str(error.value) and "entry 0" in str(error.value)
    (folder / "train_qa.json").write_text(json.dumps([{"answer": "a", "id": 1, "question": "what ?", "video_id": 9}]))
    with pytest.raises(DatasetFormatError, match="video_id 9 has no line 'vid9'"):
        load_annotations("msvd-qa", folder, "train")


def test_msvd_malformed_mapping_line(tmp_path):
    folder = write_msvd(tmp_path / "msvd")
    (folder / "youtube_mapping.txt").write_text("abc_1_2 vid1\nabc_3_4\n")
    with pytest.raises(DatasetFormatError, match=r"youtube_mapping.txt, line 2"):
        load_annotations("msvd-qa", folder, "test")


# --------------------------------------------------------------------------------------------------
# Generic files
# --------------------------------------------------------------------------------------------------


def test_generic_csv_open_with_split(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["video", "question", "answer", "split", "type"], [
        ["a.mp4", 'what is "it" ?', "dog", "train", "what"],
        ["b.mp4", "who is there ?", "man", "test", ""],
        ["c.mp4", "what colour ?", "red", "Validation", ""],
    ])
    train = load_annotations("generic", path, "train")
    assert train == [
        {"id": "qa.csv:2", "video": "a.mp4", "question": 'what is "it" ?', "answer": "dog", "type": "what"}
    ]
    assert [r["video"] for r in load_annotations("generic", path, "val")] == ["c.mp4"]
    assert infer_generic_kind(train) == "open"


def test_generic_csv_without_split_is_whole_file(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["id", "video", "question", "answer"],
                     [["q1", "a.mp4", "q ?", "x"], ["q2", "b.mp4", "q ?", "y"]])
    assert [r["id"] for r in load_annotations("generic", path, "test")] == ["q1", "q2"]


def test_generic_csv_multiple_choice(tmp_path):
    path = write_csv(tmp_path / "mc.csv", ["video", "question", "answer", "candidates"], [
        ["a.mp4", "what ?", "cat", json.dumps(["dog", "cat", "bird"])],
        ["b.mp4", "what ?", "2", "run|walk|jump"],
    ])
    records = load_annotations("generic", path, "train")
    assert [r["candidates"] for r in records] == [["dog", "cat", "bird"], ["run", "walk", "jump"]]
    assert [r["answer"] for r in records] == [1, 2]
    assert infer_generic_kind(records) == "mc"


def test_generic_jsonl_with_and_without_candidates(tmp_path):
    path = tmp_path / "qa.jsonl"
    lines = [{"video": "a.mp4", "question": "q ?", "answer": "bird", "candidates": ["dog", "cat", "bird"],
              "split": "train"},
             {"video": "b.mp4", "question": "q ?", "answer": 0, "candidates": ["dog", "cat"], "split": "train"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert [r["answer"] for r in load_annotations("generic", path, "train")] == [2, 0]
    open_path = tmp_path / "open.json"
    open_path.write_text(json.dumps([{"video": "a.mp4", "question": "q ?", "answer": "yes", "id": 7}]))
    (record,) = load_annotations("generic", open_path, "test")
    assert record["id"] == "7" and record["answer"] == "yes" and "candidates" not in record


def test_generic_answer_not_among_candidates(tmp_path):
    path = write_csv(tmp_path / "mc.csv", ["video", "question", "answer", "candidates"],
                     [["a.mp4", "what ?", "fish", "dog|cat"]])
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("generic", path, "train")
    assert "mc.csv, line 2" in str(error.value) and "'fish'" in str(error.value)


def test_generic_ambiguous_numeric_answer(tmp_path):
    path = write_csv(tmp_path / "mc.csv", ["video", "question", "answer", "candidates"],
                     [["a.mp4", "how many ?", "1", "3|2|1"]])
    with pytest.raises(DatasetFormatError, match="both candidate 2's text and the index 1"):
        load_annotations("generic", path, "train")


def test_generic_mixed_kinds_rejected(tmp_path):
    path = write_csv(tmp_path / "mix.csv", ["video", "question", "answer", "candidates"],
                     [["a.mp4", "q ?", "dog", "dog|cat"], ["b.mp4", "q ?", "dog", ""]])
    with pytest.raises(DatasetFormatError, match="1 of 2 records have candidates"):
        load_annotations("generic", path, "train")


def test_generic_missing_column_and_file(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["clip", "question", "answer"], [["a.mp4", "q ?", "x"]])
    with pytest.raises(DatasetFormatError) as error:
        load_annotations("generic", path, "train")
    assert str(path) in str(error.value) and "missing columns video" in str(error.value)
    assert "found clip, question, answer" in str(error.value)
    with pytest.raises(DatasetFormatError, match="missing file .*nope.csv"):
        load_annotations("generic", tmp_path / "nope.csv", "train")


def test_generic_bad_jsonl_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"video": "a.mp4", "question": "q", "answer": "x"}\n{"video": \n')
    with pytest.raises(DatasetFormatError, match="qa.jsonl, line 2: not valid JSON"):
        load_annotations("generic", path, "train")


# --------------------------------------------------------------------------------------------------
# Answer vocabulary
# --------------------------------------------------------------------------------------------------


def open_records(answers: list[str]) -> list[dict]:
    return [{"id": str(i), "question": "q", "answer": a, "video": "v"} for i, a in enumerate(answers)]


def test_vocab_top_k_and_ties():
    records = open_records(["dog", "cat", "cat", "bird", "ant", "dog", "cat", "emu"])
    assert build_answer_vocab(records) == ["cat", "dog", "ant", "bird", "emu"]
    assert build_answer_vocab(records, top_k=3) == ["cat", "dog", "ant"]
    assert build_answer_vocab(list(reversed(records)), top_k=3) == ["cat", "dog", "ant"]


def test_encode_answers_and_coverage():
    vocab = ["cat", "dog"]
    records = open_records(["dog", "cat", "zebra", "cat"])
    assert encode_answers(records, vocab) == [1, 0, IGNORE_INDEX, 0]
    assert IGNORE_INDEX == -100
    assert vocab_coverage(records, vocab) == pytest.approx(0.75)
    assert math.isnan(vocab_coverage([], vocab))


def test_vocab_rejects_multiple_choice_records():
    with pytest.raises(ValueError, match="open-ended"):
        build_answer_vocab([{"id": "1", "answer": 2, "candidates": ["a", "b", "c"]}])


# --------------------------------------------------------------------------------------------------
# Caption pairs for pre-training
# --------------------------------------------------------------------------------------------------


def test_webvid_caption_csv(tmp_path):
    path = write_csv(tmp_path / "results_2M_train.csv", ["videoid", "contentUrl", "duration", "page_dir", "name"], [
        ["31353427", "https://example.com/a.mp4", "PT00H00M15S", "006001_006050", 'A "cosy", warm room'],
        ["1234", "https://example.com/b.mp4", "PT00H00M10S", "000001_000050", ""],
    ])
    pairs = load_caption_pairs(path)
    assert pairs == [{"video": "006001_006050/31353427.mp4", "caption": 'A "cosy", warm room'}]


def test_plain_caption_csv_and_missing_clips(tmp_path, caplog):
    path = write_csv(tmp_path / "captions.csv", ["video", "caption"],
                     [["clips/a.mp4", "a dog runs"], ["clips/b.mp4", "a cat sleeps"]])
    assert len(load_caption_pairs(path)) == 2
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    assert load_caption_pairs(path, video_root=tmp_path) == [{"video": "clips/a.mp4", "caption": "a dog runs"}]
    assert "1 of 2 clips are missing" in caplog.text


def test_caption_csv_with_unknown_columns(tmp_path):
    path = write_csv(tmp_path / "captions.csv", ["file", "text"], [["a.mp4", "x"]])
    with pytest.raises(DatasetFormatError) as error:
        load_caption_pairs(path)
    message = str(error.value)
    assert str(path) in message and "videoid" in message and "video, caption" in message
    assert "found file, text" in message
