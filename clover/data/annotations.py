"""Question-answer annotations and caption lists, read from the files exactly as they are published.

One entry point, `load_annotations(task, path, split)`, returns a list of plain dict records that the
training datasets, the metrics and `finetune/check_data.py` share. Every record has:

- `id`: a unique, stable string (TGIF `key`, MSVD `id`, generic `id` column or `<file>:<line>`);
- `video`: the clip's file name relative to the dataset's video folder;
- `question`;
- `answer`: a string (open-ended), the 0-based index of the right candidate (multiple choice) or an
  int (count);
- `candidates`: the candidate answers (multiple choice only);
- `type`: the question type used for per-type accuracy, or None.

Readers use the `csv` and `json` modules rather than pandas so that every field comes out as the text in
the file (pandas would turn a count answer `0` or a numeric-looking gif name into a number or NaN).
Any file that does not look as published raises `DatasetFormatError`, whose message names the file,
what was expected and what was found, so that a user pointing at the wrong folder sees why at once.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of an answer outside the vocabulary: ignored by the loss, counted wrong
SPLITS = ("train", "val", "test")
FRAMEQA_TYPES = ("object", "number", "color", "location")  # TGIF-FrameQA `type` 0..3
MSVD_QUESTION_TYPES = ("what", "who", "how", "when", "where")
DEFAULT_TOP_K: dict[str, int | None] = {"msvd-qa": 1000, "tgif-frameqa": None, "generic": None}

TaskKind = Literal["open", "mc", "count"]
Record = dict[str, Any]


class DatasetFormatError(ValueError):
    """An annotation file is missing or does not have the published layout."""


@dataclass(frozen=True)
class TaskSpec:
    """What the rest of the code needs to know about a question-answering task.

    Attributes:
        name: the task name used on the command line and in configs.
        kind: "open" (classification over an answer vocabulary), "mc" (pick one of the candidates)
            or "count" (integer regression). For "generic" this is the default; the file decides
            (see `infer_generic_kind`).
        max_text_length: default tokenised text length (40 for open/count, 100 for multiple choice,
            whose text holds the question and every candidate).
        has_question_types: whether records carry a `type` for per-type accuracy.
    """

    name: str
    kind: TaskKind
    max_text_length: int
    has_question_types: bool


DEFAULT_MAX_TEXT_LENGTH: dict[str, int] = {"open": 40, "count": 40, "mc": 100}

def _spec(name: str, kind: str, has_question_types: bool) -> TaskSpec:
    return TaskSpec(name, kind, DEFAULT_MAX_TEXT_LENGTH[kind], has_question_types)


TASKS: dict[str, TaskSpec] = {
    "tgif-action": _spec("tgif-action", "mc", False),
    "tgif-transition": _spec("tgif-transition", "mc", False),
    "tgif-frameqa": _spec("tgif-frameqa", "open", True),
    "tgif-count": _spec("tgif-count", "count", False),
    "msvd-qa": _spec("msvd-qa", "open", True),
    # Kind and types come from the file: candidates make it multiple choice, a `type` column gives types.
    "generic": _spec("generic", "open", False),
}

# TGIF-QA: the columns each task's file must have (others, such as vid_id and description, are ignored).
_TGIF_CANDIDATE_COLUMNS = ("a1", "a2", "a3", "a4", "a5")
_TGIF_COLUMNS: dict[str, tuple[str, ...]] = {
    "action": ("gif_name", "question", *_TGIF_CANDIDATE_COLUMNS, "answer", "key"),
    "transition": ("gif_name", "question", *_TGIF_CANDIDATE_COLUMNS, "answer", "key"),
    "frameqa": ("gif_name", "question", "answer", "type", "key"),
    "count": ("gif_name", "question", "answer", "key"),
}
_MSVD_KEYS = ("answer", "id", "question", "video_id")
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "training": "train", "testing": "test"}


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def load_annotations(
    task: str,
    path: str | os.PathLike,
    split: str,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    videos_dir: str | os.PathLike | None = None,
) -> list[Record]:
    """Read one split of a task's annotations as published.

    Args:
        task: one of `TASKS`.
        path: the TGIF-QA folder holding `{Train,Test}_{task}_question.csv`, the MSVD-QA folder holding
            `{train,val,test}_qa.json` and `youtube_mapping.txt`, or a generic .csv/.jsonl/.json file.
        split: "train", "val" or "test".
        val_fraction, seed: how TGIF's validation clips are carved out of Train (see `tgif_val_clips`).
        videos_dir: if given, each record also gets `video_path` (the clip's full path) and the number of
            clips missing there is logged. Records are never dropped here: dropping test questions
            would change the denominator of the published accuracy.

    Returns:
        The records of the split, in file order.
    """
    spec = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if spec.name.startswith("tgif-"):
        records = _load_tgif(spec.name.removeprefix("tgif-"), Path(path), split, val_fraction, seed)
    elif spec.name == "msvd-qa":
        records = _load_msvd(Path(path), split)
    else:
        records = _load_generic(Path(path), split)
    if videos_dir is not None:
        _attach_video_paths(records, Path(videos_dir))
    return records


def get_task(task: str) -> TaskSpec:
    """The `TaskSpec` of `task`, or a ValueError listing the known tasks."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[task]


def _attach_video_paths(records: list[Record], videos_dir: Path) -> None:
    """Add `video_path` to each record and log how many clips are missing from `videos_dir`."""
    missing = []
    for record in records:
        full = videos_dir / record["video"]
        record["video_path"] = str(full)
        if not full.is_file():
            missing.append(record["video"])
    if missing:
        examples = ", ".join(sorted(set(missing))[:5])
        logger.warning(
            "%d of %d records have no clip in %s (e.g. %s)", len(missing), len(records), videos_dir, examples
        )


# --------------------------------------------------------------------------------------------------
# Error helpers: every message names the file, what was expected and what was found
# --------------------------------------------------------------------------------------------------


def _require_file(path: Path, expected: str) -> None:
    """Raise `DatasetFormatError` if `path` is not a file, listing what its folder does contain."""
    if path.is_file():
        return
    folder = path.parent
    if not folder.is_dir():
        found = f"the folder {folder} does not exist"
    else:
        names = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} entries)" if len(names) > 12 else "")
        found = f"{folder} contains: {shown or 'nothing'}"
    raise DatasetFormatError(f"missing file {path}: expected {expected}; {found}")


def _require_columns(path: Path, found: Sequence[str], required: Iterable[str], what: str = "columns") -> None:
    """Raise `DatasetFormatError` naming the missing columns (or keys) and those found."""
    missing = [name for name in required if name not in found]
    if missing:
        raise DatasetFormatError(
            f"{path}: missing {what} {', '.join(missing)}; expected {', '.join(required)}; "
            f"found {', '.join(found) or 'none'}"
        )


def _row_error(path: Path, line: int | str, reason: str) -> DatasetFormatError:
    """An error for one malformed row, naming the file and the line (or JSON entry)."""
    where = f"line {line}" if isinstance(line, int) else line
    return DatasetFormatError(f"{path}, {where}: {reason}")


def _parse_int(path: Path, line: int | str, column: str, text: str) -> int:
    """Parse an integer field, or raise an error naming the file, the line and the column."""
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        raise _row_error(path, line, f"column {column!r} should be an integer, got {text!r}") from None


# --------------------------------------------------------------------------------------------------
# CSV reading
# --------------------------------------------------------------------------------------------------


def _read_csv(
    path: Path, delimiter: str, required: Sequence[str] = ()
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a CSV file with standard quoting (doubled inner quotes are unescaped).

    Returns the header and `(line_number, row)` pairs; every value is the field's text, stripped of
    surrounding whitespace. `required` columns are checked before any row is read. A row with more or
    fewer fields than the header raises an error naming its line (trailing empty fields are allowed).
    Blank lines are skipped.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quotechar='"', doublequote=True)
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DatasetFormatError(f"{path} is empty: expected a header line with {', '.join(required) or 'columns'}")
        _require_columns(path, header, required)
        rows = []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            while len(fields) > len(header) and not fields[-1].strip():
                fields = fields[:-1]
            if len(fields) != len(header):
                raise _row_error(path, reader.line_num, f"{len(fields)} fields, the header has {len(header)}")
            rows.append((reader.line_num, {name: value.strip() for name, value in zip(header, fields)}))
    return header, rows


# --------------------------------------------------------------------------------------------------
# TGIF-QA
# --------------------------------------------------------------------------------------------------


def tgif_question_file(path: str | os.PathLike, tgif_task: str, split: str) -> Path:
    """The published file name of a TGIF-QA task's split: `Train_action_question.csv` etc."""
    prefix = "Test" if split == "test" else "Train"
    return Path(path) / f"{prefix}_{tgif_task}_question.csv"


def tgif_val_clips(
    path: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0, *, task: str | None = None
) -> list[str]:
    """The gif names carved out of TGIF-QA's Train file as the validation split, sorted.

    If the folder has a `splits.json` with `{"val": [gif names]}` (the synthetic benchmark writes one),
    that list is used. Otherwise the distinct gif names of Train are sorted, shuffled with
    `random.Random(seed)` and the first `round(val_fraction * n)` are taken, so no clip is in both
    train and val and the carving is the same on every machine. Training records this list.

    `task` ("tgif-action" or "action", ...) picks the Train file; it may be left out only when the
    folder holds a single `Train_*_question.csv`.
    """
    folder = Path(path)
    listed = _read_splits_json(folder)
    if listed is not None:
        return sorted(listed)
    train_file = tgif_question_file(folder, _tgif_task_name(folder, task), "train")
    _require_file(train_file, f"the TGIF-QA file {train_file.name} (TAB-separated, with a header)")
    _, rows = _read_csv(train_file, "\t", ["gif_name"])
    return _carve_val_clips([row["gif_name"] for _, row in rows], val_fraction, seed)


def _carve_val_clips(gif_names: Iterable[str], val_fraction: float, seed: int) -> list[str]:
    """Sort the distinct names, shuffle with `random.Random(seed)`, take `round(fraction * n)`; sorted."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    clips = sorted(set(gif_names))
    random.Random(seed).shuffle(clips)
    return sorted(clips[: round(val_fraction * len(clips))])


def _tgif_task_name(folder: Path, task: str | None) -> str:
    """"action" from "tgif-action"/"action"; with no task, the only Train file's task."""
    if task is not None:
        name = task.removeprefix("tgif-")
        if name not in _TGIF_COLUMNS:
            raise ValueError(f"unknown TGIF-QA task {task!r}; expected one of {', '.join(_TGIF_COLUMNS)}")
        return name
    found = sorted(folder.glob("Train_*_question.csv"))
    names = [p.name.removeprefix("Train_").removesuffix("_question.csv") for p in found]
    if len(names) != 1:
        raise ValueError(f"{folder} holds Train files for {names or 'no task'}: pass task= to pick one")
    return names[0]


def _read_splits_json(folder: Path) -> list[str] | None:
    """The `val` gif names of `<folder>/splits.json` (without `.gif`), or None if there is no such file."""
    path = folder / "splits.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("val"), list):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetFormatError(f'{path}: expected {{"val": [gif names]}}; found {found}')
    return [str(name).removesuffix(".gif") for name in data["val"]]


def _load_tgif(tgif_task: str, folder: Path, split: str, val_fraction: float, seed: int) -> list[Record]:
    """Read a TGIF-QA task's split; val and train are the two parts of the Train file."""
    path = tgif_question_file(folder, tgif_task, split)
    _require_file(path, f"the TGIF-QA file {path.name} (TAB-separated, with a header)")
    _, rows = _read_csv(path, "\t", _TGIF_COLUMNS[tgif_task])
    records = [_tgif_record(tgif_task, path, line, row) for line, row in rows]
    _make_ids_unique(records)
    if split == "test":
        return records
    listed = _read_splits_json(folder)
    gif_names = [r["video"].removesuffix(".gif") for r in records]
    val_clips = set(listed if listed is not None else _carve_val_clips(gif_names, val_fraction, seed))
    in_val = split == "val"
    return [r for r in records if (r["video"].removesuffix(".gif") in val_clips) == in_val]


def _tgif_record(tgif_task: str, path: Path, line: int, row: dict[str, str]) -> Record:
    """One TGIF-QA row as a record; answers and types are checked and converted."""
    if not row["gif_name"]:
        raise _row_error(path, line, "empty gif_name")
    record: Record = {
        "id": row["key"] or f"line{line}",
        "video": f"{row['gif_name']}.gif",
        "question": row["question"],
        "type": None,
    }
    if tgif_task in ("action", "transition"):
        record["candidates"] = [row[column] for column in _TGIF_CANDIDATE_COLUMNS]
        record["answer"] = _parse_int(path, line, "answer", row["answer"])
        if not 0 <= record["answer"] < len(_TGIF_CANDIDATE_COLUMNS):
            raise _row_error(path, line, f"answer {record['answer']} is not a candidate index 0..4")
    elif tgif_task == "count":
        record["answer"] = _parse_int(path, line, "answer", row["answer"])
        if record["answer"] < 0:
            raise _row_error(path, line, f"count answer {record['answer']} is negative")
    else:
        record["answer"] = row["answer"]
        code = _parse_int(path, line, "type", row["type"])
        if not 0 <= code < len(FRAMEQA_TYPES):
            raise _row_error(path, line, f"type {code} is not 0..3 ({', '.join(FRAMEQA_TYPES)})")
        record["type"] = FRAMEQA_TYPES[code]
    return record


def _make_ids_unique(records: list[Record]) -> None:
    """Suffix repeated ids with `#2`, `#3`, ... in file order, so ids stay unique and stable."""
    seen: Counter[str] = Counter()
    for record in records:
        seen[record["id"]] += 1
        if seen[record["id"]] > 1:
            record["id"] = f"{record['id']}#{seen[record['id']]}"


# --------------------------------------------------------------------------------------------------
# MSVD-QA
# --------------------------------------------------------------------------------------------------


def read_youtube_mapping(path: str | os.PathLike) -> dict[int, str]:
    """Read `youtube_mapping.txt`: video_id N -> clip name, by each line's `vidN` (not by line order).

    A line is `<youtube_id>_<start>_<end> vidN`; YouTube ids may contain `_` and `-`, so the line is split
    on whitespace: the first token is the clip name and the last is `vidN`.
    """
    path = Path(path)
    _require_file(path, "youtube_mapping.txt with lines '<youtube_id>_<start>_<end> vidN'")
    mapping: dict[int, str] = {}
    with path.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            match = re.fullmatch(r"vid(\d+)", tokens[-1])
            if len(tokens) < 2 or match is None:
                raise _row_error(path, line_number, f"expected '<youtube_id>_<start>_<end> vidN', got {line.strip()!r}")
            video_id = int(match.group(1))
            if video_id in mapping:
                raise _row_error(path, line_number, f"vid{video_id} is mapped twice")
            mapping[video_id] = tokens[0]
    return mapping


def msvd_question_type(question: str) -> str:
    """MSVD-QA's question type: the question's first word, lower-cased (what, who, how, when, where)."""
    words = question.strip().split()
    return re.sub(r"\W+$", "", words[0]).lower() if words else ""


def _load_msvd(folder: Path, split: str) -> list[Record]:
    """Read `<split>_qa.json` and map each `video_id` to `YouTubeClips/<clip>.avi`."""
    mapping = read_youtube_mapping(folder / "youtube_mapping.txt")
    path = folder / f"{split}_qa.json"
    _require_file(path, f"the MSVD-QA file {path.name} (a JSON list of {{{', '.join(_MSVD_KEYS)}}})")
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise DatasetFormatError(f"{path}: expected a JSON list of question objects, found {type(entries).__name__}")
    return [_msvd_record(path, index, entry, mapping) for index, entry in enumerate(entries)]


def _msvd_record(path: Path, index: int, entry: Any, mapping: Mapping[int, str]) -> Record:
    """One MSVD-QA question object as a record."""
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise _row_error(path, where, f"expected an object, got {type(entry).__name__}")
    _require_columns(path, list(entry), _MSVD_KEYS, what=f"keys in {where}:")
    video_id = _parse_int(path, where, "video_id", str(entry["video_id"]))
    if video_id not in mapping:
        raise _row_error(path, where, f"video_id {video_id} has no line 'vid{video_id}' in youtube_mapping.txt")
    question = str(entry["question"])
    return {
        "id": str(entry["id"]),
        "video": f"YouTubeClips/{mapping[video_id]}.avi",
        "question": question,
        "answer": str(entry["answer"]),
        "type": msvd_question_type(question),
        "video_id": video_id,
    }


def _read_json(path: Path) -> Any:
    """Parse a JSON file, naming the file and the position on a syntax error."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise _row_error(path, error.lineno, f"not valid JSON ({error.msg})") from None


# --------------------------------------------------------------------------------------------------
# Generic CSV / JSON-lines files
# --------------------------------------------------------------------------------------------------

_GENERIC_COLUMNS = ("video", "question", "answer")


def _load_generic(path: Path, split: str) -> list[Record]:
    """Read a generic file; a `split` column filters it, otherwise the whole file is the split."""
    header, rows = _read_generic_rows(path)
    _require_columns(path, header, _GENERIC_COLUMNS)
    found_splits: set[str] = set()
    records = []
    for line, row in rows:
        if "split" in header:
            row_split = _normalise_split(str(row.get("split", "")))
            found_splits.add(row_split)
            if row_split != split:
                continue
        records.append(_generic_record(path, line, row))
    if "split" in header and split not in found_splits:
        logger.warning("%s has no rows with split %r; splits found: %s", path, split, sorted(found_splits))
    _check_unique_ids(path, records)
    infer_generic_kind(records)  # raises on a mix of rows with and without candidates
    return records


def _read_generic_rows(path: Path) -> tuple[list[str], Sequence[tuple[int | str, dict[str, Any]]]]:
    """Header and `(line, row)` pairs of a .csv, .jsonl or .json (list or JSON lines) file."""
    _require_file(path, "a .csv, .jsonl or .json file with columns video, question, answer")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, ",")
    if suffix not in (".jsonl", ".json"):
        raise DatasetFormatError(f"{path}: expected a .csv, .jsonl or .json file, found {suffix or 'no extension'}")
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json" and text.lstrip().startswith("["):
        entries = _read_json(path)
        pairs: list[tuple[int | str, Any]] = [(f"entry {i}", entry) for i, entry in enumerate(entries)]
    else:
        pairs = list(_parse_json_lines(path, text))
    for where, entry in pairs:
        if not isinstance(entry, dict):
            raise _row_error(path, where, f"expected an object, got {type(entry).__name__}")
    header = list(dict.fromkeys(key for _, entry in pairs for key in entry))
    return header, pairs


def _parse_json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Parse one JSON value per non-blank line, naming the line of a syntax error."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise _row_error(path, number, f"not valid JSON ({error.msg})") from None


def _normalise_split(name: str) -> str:
    """"Validation"/"dev" -> "val", etc.; other names lower-cased."""
    name = name.strip().lower()
    return _SPLIT_ALIASES.get(name, name)


def _generic_record(path: Path, line: int | str, row: Mapping[str, Any]) -> Record:
    """One generic row as a record; with candidates, the answer becomes the candidate's index."""
    for column in _GENERIC_COLUMNS:
        if row.get(column) is None or str(row[column]).strip() == "":
            raise _row_error(path, line, f"empty {column!r}")
    record: Record = {
        "id": str(row["id"]) if row.get("id") not in (None, "") else f"{path.name}:{_line_label(line)}",
        "video": str(row["video"]).strip(),
        "question": str(row["question"]).strip(),
        "type": str(row["type"]).strip() if row.get("type") not in (None, "") else None,
    }
    candidates = _parse_candidates(path, line, row.get("candidates"))
    if candidates is None:
        record["answer"] = str(row["answer"]).strip()
    else:
        record["candidates"] = candidates
        record["answer"] = _answer_index(path, line, row["answer"], candidates)
    return record


def _line_label(line: int | str) -> str:
    """"12" for line 12, "entry3" for JSON list entry 3 (used in default ids)."""
    return str(line).replace(" ", "")


def _parse_candidates(path: Path, line: int | str, value: Any) -> list[str] | None:
    """Candidates from a JSON list, a JSON list in a string, or a `|`-separated string; None if empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise _row_error(path, line, f"candidates are not a valid JSON list ({error.msg})") from None
        else:
            value = text.split("|")
    if not isinstance(value, list) or len(value) < 2:
        raise _row_error(path, line, f"expected at least 2 candidates, got {value!r}")
    return [str(candidate).strip() for candidate in value]


def _answer_index(path: Path, line: int | str, answer: Any, candidates: list[str]) -> int:
    """The index of the right candidate: a JSON integer is an index; text is matched to a candidate.

    Text that is a digit string is read as an index only when it is not also the text of a different
    candidate (candidates "3", "4", ... with answer "4" would be ambiguous and raise).
    """
    if isinstance(answer, int) and not isinstance(answer, bool):
        index = answer
    else:
        text = str(answer).strip()
        by_text = candidates.index(text) if text in candidates else None
        by_index = int(text) if re.fullmatch(r"\d+", text) and int(text) < len(candidates) else None
        if by_text is not None and by_index is not None and by_text != by_index:
            raise _row_error(
                path, line, f"answer {text!r} is both candidate {by_text}'s text and the index {by_index}: "
                "write the candidate's text or a JSON integer",
            )
        index = by_text if by_text is not None else by_index
        if index is None:
            raise _row_error(path, line, f"answer {text!r} is neither one of the candidates {candidates} nor an index")
    if not 0 <= index < len(candidates):
        raise _row_error(path, line, f"answer index {index} is outside 0..{len(candidates) - 1}")
    return index


def _check_unique_ids(path: Path, records: list[Record]) -> None:
    """Raise if an `id` column repeats a value (ids key predictions and must be unique)."""
    counts = Counter(record["id"] for record in records)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        raise DatasetFormatError(f"{path}: ids must be unique; repeated: {', '.join(repeated[:5])}")


def infer_generic_kind(records: Sequence[Mapping[str, Any]]) -> TaskKind:
    """"mc" if every record has candidates, "open" if none has; a mix raises `DatasetFormatError`."""
    with_candidates = sum(1 for record in records if record.get("candidates"))
    if with_candidates == 0:
        return "open"
    if with_candidates == len(records):
        return "mc"
    raise DatasetFormatError(
        f"{with_candidates} of {len(records)} records have candidates: "
        "a file must be all multiple choice or all open-ended"
    )


# --------------------------------------------------------------------------------------------------
# Question types
# --------------------------------------------------------------------------------------------------


def question_type(record: Mapping[str, Any], task: str | None = None) -> str | None:
    """The question type used for per-type accuracy, or None when the task has none.

    A record's `type` is returned as is, except that a raw FrameQA code (0..3, as in the TGIF file) is
    turned into its name when `task` is "tgif-frameqa". A record without a type gets MSVD's type (the
    question's first word) when `task` is "msvd-qa".
    """
    value = record.get("type")
    if value is not None and value != "":
        if task == "tgif-frameqa" and str(value).strip().isdigit():
            return FRAMEQA_TYPES[int(value)]
        return str(value)
    if task == "msvd-qa":
        return msvd_question_type(str(record.get("question", "")))
    return None


# --------------------------------------------------------------------------------------------------
# Answer vocabulary (open-ended tasks)
# --------------------------------------------------------------------------------------------------


def build_answer_vocab(records: Iterable[Mapping[str, Any]], top_k: int | None = None) -> list[str]:
    """The `top_k` most frequent answers of the training records (None = all of them).

    Ordered by decreasing count, ties broken alphabetically, so the vocabulary (and so the classifier's
    label ids) is the same on every run.
    """
    counts = Counter(_open_answer(record) for record in records)
    ranked = sorted(counts, key=lambda answer: (-counts[answer], answer))
    return ranked if top_k is None else ranked[:top_k]


def encode_answers(records: Iterable[Mapping[str, Any]], vocab: Sequence[str]) -> list[int]:
    """Each record's answer as its index in `vocab`, or `IGNORE_INDEX` (-100) if outside it.

    Out-of-vocabulary test questions are kept: the loss ignores them and the metrics count them wrong.
    """
    index = {answer: i for i, answer in enumerate(vocab)}
    return [index.get(_open_answer(record), IGNORE_INDEX) for record in records]


def vocab_coverage(records: Sequence[Mapping[str, Any]], vocab: Sequence[str]) -> float:
    """The fraction of records whose answer is in `vocab` (the best accuracy reachable); NaN if no records."""
    if not records:
        return float("nan")
    labels = encode_answers(records, vocab)
    return sum(label != IGNORE_INDEX for label in labels) / len(labels)


def _open_answer(record: Mapping[str, Any]) -> str:
    """An open-ended record's answer; multiple-choice and count records have no vocabulary."""
    answer = record["answer"]
    if not isinstance(answer, str) or "candidates" in record:
        raise ValueError(
            f"answer vocabularies are for open-ended records; record {record.get('id')!r} has answer {answer!r}"
        )
    return answer


# --------------------------------------------------------------------------------------------------
# Video-text pairs for pre-training
# --------------------------------------------------------------------------------------------------

_WEBVID_COLUMNS = ("videoid", "page_dir", "name")
_PLAIN_CAPTION_COLUMNS = ("video", "caption")


def load_caption_pairs(
    csv_path: str | os.PathLike, video_root: str | os.PathLike | None = None
) -> list[dict[str, str]]:
    """Read a WebVid-style caption CSV as `[{"video": <path relative to the root>, "caption": ...}]`.

    Accepts WebVid's own columns (`videoid, contentUrl, duration, page_dir, name`: the clip is
    `<page_dir>/<videoid>.mp4` and `name` is the caption) or a plain CSV with `video` and `caption`.
    Rows with an empty caption are skipped, and with `video_root` so are clips missing there; both
    counts are logged (real corpora have holes, and an epoch must not crash on them).
    """
    path = Path(csv_path)
    _require_file(
        path, "a caption CSV with WebVid's columns (videoid, contentUrl, duration, page_dir, name) or video, caption"
    )
    header, rows = _read_csv(path, ",")
    is_webvid = all(column in header for column in _WEBVID_COLUMNS)
    if not is_webvid and not all(column in header for column in _PLAIN_CAPTION_COLUMNS):
        raise DatasetFormatError(
            f"{path}: expected WebVid's columns videoid, contentUrl, duration, page_dir, name "
            f"or the columns video, caption; found {', '.join(header) or 'none'}"
        )
    pairs, empty = [], 0
    for line, row in rows:
        pair = _caption_pair(path, line, row, is_webvid)
        if pair is None:
            empty += 1
        else:
            pairs.append(pair)
    if empty:
        logger.warning("%s: skipped %d rows with an empty caption", path, empty)
    return _drop_missing_clips(pairs, Path(video_root)) if video_root is not None else pairs


def _caption_pair(path: Path, line: int, row: dict[str, str], is_webvid: bool) -> dict[str, str] | None:
    """One caption row as `{"video", "caption"}`, or None if the caption is empty."""
    if is_webvid:
        if not row["videoid"]:
            raise _row_error(path, line, "empty videoid")
        video = f"{row['page_dir']}/{row['videoid']}.mp4" if row["page_dir"] else f"{row['videoid']}.mp4"
        caption = row["name"]
    else:
        if not row["video"]:
            raise _row_error(path, line, "empty video")
        video, caption = row["video"], row["caption"]
    return {"video": video, "caption": caption} if caption else None


def _drop_missing_clips(pairs: list[dict[str, str]], video_root: Path) -> list[dict[str, str]]:
    """Keep the pairs whose clip exists under `video_root`, logging how many were dropped."""
    kept = [pair for pair in pairs if (video_root / pair["video"]).is_file()]
    if len(kept) < len(pairs):
        logger.warning("%d of %d clips are missing under %s; skipped", len(pairs) - len(kept), len(pairs), video_root)
    return kept
