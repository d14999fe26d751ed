"""Question grounding: teach the question-guided pooling to look at the object a question names.

The synthetic benchmark knows, for every question, which object it is about and where that object is
in every segment of the clip; `python -m clover.data.synthetic` writes both into a `grounding.json`
beside each dataset's annotation files (the published TGIF-QA and MSVD-QA have no such file).
`finetune.train_qa --grounding_weight W` adds to each training question's loss W times
`grounding_loss`: minus the log of the share of the question pooling's attention that falls on the
named object's video tokens.

Why: the pooling can answer "what shape is the red object ?" about a clip of several objects only by
attending to the red object, but trained from the answers alone its attention stays near uniform for
longer than the demo recipe trains (docs/results.md, "Where binding is lost" and "Binding sooner").
Telling it where to look removes that plateau. It is supervision the real datasets do not have: a
recipe choice for the synthetic demo, like the video stage's scene labels, not part of the method.

`--grounding_time step` narrows the term, on the Action, Transition and Count questions, to the
object's tokens in the time slots of the step the question asks about (the step done k times, the step
after or before the anchor, the steps of the counted action): the pooling is told when to look as well
as where (docs/results.md, "When to look: the step asked about").

The file (format `clover-synthetic-grounding-1`):
    {"format": ..., "num_segments": 8,
     "boxes": {record video path: [[box or null per segment] per object]},   box = [x0, y0, x1, y1]
     "questions": {task: {record id: object index}},
     "asked_segments": {task: {record id: [segment, ...]}}}   (Action, Transition, Count; not a count of 0)
Boxes are fractions of the frame side. The model samples one frame per equal segment of the clip, so
frame i of T sampled frames lies in segment floor(i * num_segments / T).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

GROUNDING_FILE = "grounding.json"
GROUNDING_FORMAT = "clover-synthetic-grounding-1"
# A token counts as the object's when the object's box covers at least this share of the token's
# cell in one of the token's frames (and the cell the box covers most always counts, so a shrunken
# object still has a token).
MIN_CELL_COVER = 0.25

Box = Sequence[float] | None


class GroundingError(ValueError):
    """A grounding file that is missing or does not match the annotations."""


def load_grounding(folder: str | os.PathLike) -> dict[str, Any]:
    """The `grounding.json` of an annotation folder, checked."""
    path = Path(folder) / GROUNDING_FILE
    if not path.is_file():
        raise GroundingError(
            f"{path}: no grounding file. --grounding_weight needs the object boxes that `python -m "
            "clover.data.synthetic` writes beside its annotations (the published TGIF-QA and MSVD-QA have "
            "none): regenerate the benchmark with this version, or train with --grounding_weight 0"
        )
    try:
        grounding = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise GroundingError(f"{path}: not valid JSON ({error}); regenerate the benchmark") from error
    if not isinstance(grounding, dict) or grounding.get("format") != GROUNDING_FORMAT:
        found = grounding.get("format") if isinstance(grounding, dict) else type(grounding).__name__
        raise GroundingError(f"{path}: format {found!r}, expected {GROUNDING_FORMAT!r}; regenerate the benchmark")
    return grounding


def attach_grounding(records: Sequence[dict[str, Any]], grounding: Mapping[str, Any], task: str, min_objects: int = 1,
                     asked_step_only: bool = False) -> int:
    """Give each record whose question names an object, in a clip of at least `min_objects` objects,
    `record["grounding"]`: that object's boxes per segment, `record["grounding_segments"]`, and
    `record["grounding_objects"]`: how many objects the clip has. Returns
    how many records got one; raises when the file names a clip or an object the records do not have
    (the file belongs to other annotations). `min_objects=2` leaves out the clips of one object, where
    there is no other object to tell the named one from (docs/results.md, "The grounding term's
    weight"). `asked_step_only`: a question the file gives `asked_segments` keeps the boxes of those
    segments only (null elsewhere), so the term asks for attention on the object while it does the step
    asked about; the other questions keep every segment's."""
    named = grounding["questions"].get(task, {})
    asked = asked_segments(grounding, task) if asked_step_only else {}
    attached = 0
    for record in records:
        index = named.get(str(record["id"]))
        if index is None:
            continue
        objects = grounding["boxes"].get(record["video"])
        if objects is None or not 0 <= index < len(objects):
            raise GroundingError(
                f"{task} question {record['id']} names object {index} of {record['video']}, which the grounding "
                "file does not have; the file was written for other annotations: regenerate the benchmark"
            )
        if len(objects) < min_objects:
            continue
        segments = asked.get(str(record["id"]))
        record["grounding"] = objects[index] if segments is None else only_segments(objects[index], segments)
        record["grounding_segments"] = grounding["num_segments"]
        record["grounding_objects"] = len(objects)
        attached += 1
    return attached


def asked_segments(grounding: Mapping[str, Any], task: str) -> dict[str, list[int]]:
    """{record id: the segments of the step the question asks about} for `task`'s Action, Transition
    and Count questions (empty for the other tasks; a count of 0 is absent). Raises GroundingError with
    what to do for a file an older generator wrote without them."""
    if "asked_segments" not in grounding:
        raise GroundingError(
            "the grounding file has no asked_segments (an older generator wrote it): add them with `python -c "
            "\"from clover.data.synthetic import add_grounding; add_grounding('BENCHMARK_FOLDER')\"` (make_demo "
            "does it itself), or regenerate the benchmark"
        )
    return grounding["asked_segments"].get(task, {})


def only_segments(segment_boxes: Sequence[Box], segments: Sequence[int]) -> list[Box]:
    """The boxes of `segments`, None in every other segment."""
    keep = set(segments)
    return [box if segment in keep else None for segment, box in enumerate(segment_boxes)]


def boxes_in_crop(segment_boxes: Sequence[Box], num_segments: int, num_frames: int, crop: Sequence[float]) -> torch.Tensor:
    """The object's box in each of the `num_frames` sampled frames, in fractions of the crop the model
    sees: `crop` = (x0, y0, x1, y1) of the frame, as fractions. (T, 4); NaN rows where it is not shown."""
    x0, y0, x1, y1 = crop
    boxes = torch.full((num_frames, 4), float("nan"))
    for frame in range(num_frames):
        box = segment_boxes[frame * num_segments // num_frames]
        if box is not None:
            boxes[frame] = torch.tensor(
                [(box[0] - x0) / (x1 - x0), (box[1] - y0) / (y1 - y0), (box[2] - x0) / (x1 - x0), (box[3] - y0) / (y1 - y0)]
            )
    return boxes  # (T, 4)


def token_mask(boxes: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Which video tokens hold the object: (B, T, 4) boxes (NaN rows: not shown) on a (t, h, w) token
    grid -> (B, t*h*w) bool. Token (k, i, j) is the object's when, in one of slot k's frames, the box
    covers at least MIN_CELL_COVER of cell (i, j), or covers that cell more than any other cell."""
    slots, height, width = grid
    batch, frames = boxes.shape[:2]
    if frames % slots:
        raise ValueError(f"{frames} frames do not split evenly into {slots} time slots")
    rows = torch.arange(height, dtype=boxes.dtype) / height  # cell tops, fractions of the crop
    cols = torch.arange(width, dtype=boxes.dtype) / width
    x0, y0, x1, y1 = (boxes[..., k, None] for k in range(4))  # each (B, T, 1)
    overlap_x = ((torch.minimum(x1, cols + 1 / width) - torch.maximum(x0, cols)).clamp_min(0) * width)  # (B, T, w)
    overlap_y = ((torch.minimum(y1, rows + 1 / height) - torch.maximum(y0, rows)).clamp_min(0) * height)  # (B, T, h)
    cover = overlap_y.unsqueeze(-1) * overlap_x.unsqueeze(-2)  # (B, T, h, w), share of each cell covered
    cover = cover.nan_to_num(0.0)
    most = cover.flatten(2).amax(-1)[..., None, None]  # (B, T, 1, 1)
    held = (cover >= MIN_CELL_COVER) | ((cover == most) & (most > 0))  # (B, T, h, w)
    return held.view(batch, slots, frames // slots, height, width).any(2).flatten(1)  # (B, t*h*w)


def grounding_loss(attention: torch.Tensor, mask: torch.Tensor, target_share: float | torch.Tensor = 1.0) -> torch.Tensor:
    """-log of the attention mass on the named object's tokens, averaged over the questions that have
    any: (B, n) attention (each row sums to 1), (B, n) bool mask -> scalar (0 when no row has a token).

    With `target_share` s < 1 each question's term is -log(min(mass / s, 1)): nothing once a share s of
    the attention is on the object, so the rest may go elsewhere (with one object in the clip the
    pooling untold puts about 0.6 on it; docs/results.md, "The grounding term on clips of several
    objects only, and without it"). `target_share` is one s for every question, or (B,): one each
    (`target_shares`)."""
    grounded = mask.any(-1)  # (B,)
    if not grounded.any():
        return attention.sum() * 0.0
    mass = (attention * mask).sum(-1)[grounded]  # (G,)
    log_share = mass.clamp_min(1e-6).log()  # (G,)
    per_question = isinstance(target_share, torch.Tensor)
    if not per_question and target_share >= 1:
        return -log_share.mean()  # the term as first written, to the bit
    log_target = target_share.to(log_share)[grounded].log() if per_question else math.log(target_share)  # (G,) or scalar
    return (log_target - log_share).clamp_min(0.0).mean()


def target_shares(objects: torch.Tensor, one: float, several: float) -> torch.Tensor:
    """Each question's target share by how many objects its clip has: (B,) counts (0 where a question
    names none) -> (B,) shares, `one` for clips of one object and `several` for clips of more.

    Why: a share below 1 on a clip of several objects lets attention go to the other objects, which
    costs binding among three; on a clip of one it can only free attention for the background.
    docs/results.md, "A share by the number of objects", measures 0.6 on one object and 1 on several:
    the lone object keeps all the attention either way, and the gains of 0.6 go with the binding."""
    return torch.where(objects > 1, several, one).to(torch.float32)  # (B,)


__all__ = [
    "GROUNDING_FILE", "GROUNDING_FORMAT", "GroundingError", "asked_segments", "attach_grounding", "boxes_in_crop",
    "grounding_loss", "load_grounding", "only_segments", "target_shares", "token_mask",
]
