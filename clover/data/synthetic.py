"""A procedurally generated video QA benchmark: moving shapes, questions in the real datasets' formats.

    python -m clover.data.synthetic OUT_DIR [--seed 0] [--train-clips 1200 --val-clips 200 --test-clips 300]
                                            [--size 112] [--frames 32] [--fps 8] [--workers 2]

Why: the project must be trainable, testable and demonstrable without downloading TGIF-QA, MSVD-QA or
WebVid. This module writes a small benchmark whose files are byte-for-byte in the published formats
(see `shared/data-formats.md`), so the same loaders and scripts run on it and on the real data.

Design, driven by what the model sees (8 frames, one per equal segment of the clip):
- A clip is `NUM_SEGMENTS` = 8 equal segments. Every action lasts a whole number of segments, and the
  discrete actions (blink, jump) hold one state for a whole segment (off/on, up/down), so each
  repetition is visible in whichever frame of the segment the sampler picks. A repetition of blink or
  jump therefore costs two segments, and counts run 0..4.
- Each object carries a small dark marker, so that rotation is visible even for a circle.
- The answers of the Action, Transition and Count questions are balanced per question template (a
  greedy balancer picks, for each clip, the available question whose answer is rarest so far), so the
  question text alone does not give the answer; the answers need motion over several frames, so one
  middle frame does not either.
- Colours and shapes are unique within a clip, so "the red object", "the circle" and "the red circle"
  each name exactly one object.

Output layout under OUT_DIR:
    tgif/{Train,Test}_{action,transition,frameqa,count}_question.csv, tgif/gifs/<gif_name>.gif,
    tgif/splits.json                          TGIF-QA (Train holds the train and val clips)
    msvd/{train,val,test}_qa.json, msvd/youtube_mapping.txt, msvd/YouTubeClips/<id>_<s>_<e>.avi
    tgif/grounding.json, msvd/grounding.json  where each object is, which one each question names and
                                              when the step a motion question asks about happens
                                              (ours, not in the published datasets)
    webvid/results.csv (train), webvid/results_val.csv (val), webvid/videos/<page_dir>/<videoid>.mp4
    scenes.json (the ground truth of every clip), metadata.json, corpus.txt
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from clover.grounding import GROUNDING_FILE, GROUNDING_FORMAT
from clover.video import write_video

# --------------------------------------------------------------------------------------------------
# Vocabulary of the scenes
# --------------------------------------------------------------------------------------------------

NUM_SEGMENTS = 8  # the model samples 8 frames, one per equal segment; every action spans whole segments
SPLITS = ("train", "val", "test")
# How the clips are encoded; metadata.json records it. 2: the MP4s without x264's macroblock-tree rate
# control, the same bytes every run (`clover.video.write_video`); 1 (no record): with it.
CLIPS_VERSION = 2

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
SIZES: dict[str, float] = {"small": 0.08, "big": 0.12}  # base radius as a fraction of the frame side

MOVES: dict[str, tuple[int, int]] = {"move left": (-1, 0), "move right": (1, 0), "move up": (0, -1), "move down": (0, 1)}
STILL = "stay still"
REPEATED_ACTIONS = (*MOVES, "rotate", "grow", "shrink", "blink", "jump")  # the actions that can be "done k times"
ACTIONS = (*REPEATED_ACTIONS, STILL)
TWO_SEGMENT_ACTIONS = ("blink", "jump")  # one repetition = one segment in the odd state + one segment back
COUNTED_ACTIONS = ("blink", "jump")  # the actions of the Count questions
MAX_REPS = 4

# Words of the captions, MSVD answers and location answers.
THIRD_PERSON = {
    "move left": "moves left", "move right": "moves right", "move up": "moves up", "move down": "moves down",
    "rotate": "rotates", "grow": "grows", "shrink": "shrinks", "blink": "blinks", "jump": "jumps",
    STILL: "stays still",
}
GERUND = {
    "move left": "moving", "move right": "moving", "move up": "moving", "move down": "moving",
    "rotate": "rotating", "grow": "growing", "shrink": "shrinking", "blink": "blinking", "jump": "jumping",
}
DIRECTION = {"move left": "left", "move right": "right", "move up": "up", "move down": "down"}
TIMES_WORDS = {1: "", 2: "twice", 3: "three times", 4: "four times"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")
ZONES: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5), "left": (0.24, 0.5), "right": (0.76, 0.5), "top": (0.5, 0.26), "bottom": (0.5, 0.76),
}
FRAMEQA_TYPES = {"object": 0, "number": 1, "color": 2, "location": 3}

# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionStep:
    """One action of an object's timeline: `action` done `reps` times over segments [start, start + length)."""

    action: str
    reps: int
    start: int
    length: int


@dataclass
class SceneObject:
    """One shape and what it does. Positions and sizes are fractions of the frame side (size-free)."""

    shape: str
    color: str
    size: str
    x: float  # centre at the first frame
    y: float
    angle: float  # degrees, where the marker points at the first frame
    spin: int  # +1 counter-clockwise, -1 clockwise (rotate)
    step: float  # displacement of one repetition of a move, fraction of the frame side
    steps: list[ActionStep] = field(default_factory=list)
    zone: str | None = None  # set for objects that never move: where they stay

    def reps_of(self, action: str) -> int:
        """How many times the object does `action` (0 if never)."""
        return sum(step.reps for step in self.steps if step.action == action)

    def core_steps(self) -> list[ActionStep]:
        """The steps that are not `stay still`."""
        return [step for step in self.steps if step.action != STILL]


@dataclass
class Background:
    """A dark, muted texture: base colour plus a sinusoidal grating and fixed noise."""

    color: tuple[int, int, int]
    period: float  # grating period, fraction of the frame side
    orientation: float  # degrees
    contrast: float  # grating amplitude in grey levels
    checker: bool  # a second, crossed grating


@dataclass
class Scene:
    """Everything needed to render one clip and to answer every question about it."""

    name: str  # the TGIF gif_name
    index: int  # global clip index (msvd vid{index + 1}, webvid videoid)
    split: str
    seed: int  # seeds the background noise
    background: Background
    objects: list[SceneObject]
    occlusion: bool  # whether objects were allowed to overlap


# --------------------------------------------------------------------------------------------------
# Scene sampling
# --------------------------------------------------------------------------------------------------


def sample_scene(rng: random.Random, name: str, index: int, split: str) -> Scene:
    """Sample a clip: 1 to 3 objects with distinct colours and shapes, each with a feasible timeline."""
    num_objects = rng.choice((1, 2, 3))
    shapes = rng.sample(SHAPES, num_objects)
    colors = rng.sample(list(COLORS), num_objects)
    occlusion = rng.random() < 0.15
    for _ in range(200):
        objects = [_sample_object(rng, shape, color) for shape, color in zip(shapes, colors)]
        if occlusion or _separated(objects):
            break
    base = tuple(rng.randint(35, 95) for _ in range(3))
    background = Background(
        color=base,  # type: ignore[arg-type]
        period=rng.uniform(0.08, 0.3),
        orientation=rng.uniform(0, 180),
        contrast=rng.uniform(6, 16),
        checker=rng.random() < 0.5,
    )
    return Scene(name, index, split, rng.randrange(2**31), background, objects, occlusion)


def _sample_object(rng: random.Random, shape: str, color: str) -> SceneObject:
    """An object with a timeline of 1 to 3 distinct actions that stays inside the frame."""
    size = rng.choice(tuple(SIZES))
    while True:
        steps = _sample_timeline(rng)
        moves = any(step.action in MOVES for step in steps)
        obj = SceneObject(
            shape=shape, color=color, size=size, x=0.5, y=0.5, angle=rng.uniform(0, 360),
            spin=rng.choice((1, -1)), step=rng.uniform(0.08, 0.13), steps=steps,
        )
        for _ in range(30):
            if moves:
                obj.x, obj.y = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)
            else:
                obj.zone = rng.choice(tuple(ZONES))
                zx, zy = ZONES[obj.zone]
                obj.x, obj.y = zx + rng.uniform(-0.03, 0.03), zy + rng.uniform(-0.03, 0.03)
            if _inside_frame(obj):
                return obj


def _sample_timeline(rng: random.Random) -> list[ActionStep]:
    """1 to 3 distinct actions, 1 to 4 repetitions each, padded with `stay still` to fill the 8 segments.

    Moves, rotate, grow and shrink take one or two segments per repetition (two = slow); blink and jump
    take two (the odd state, then back). About two objects in five get a blink or jump first, with
    the whole budget to draw its repetitions from, so that high counts are common enough to balance the
    Count answers.
    """
    if rng.random() < 0.4:
        counted, extra = [rng.choice(COUNTED_ACTIONS)], rng.choice((0, 1, 2))
    else:
        counted, extra = [], rng.choice((1, 2, 3))
    actions = counted + rng.sample([a for a in REPEATED_ACTIONS if a not in counted], extra)
    budget, reps_of, units = NUM_SEGMENTS, {}, {}
    for position, action in enumerate(actions):  # the counted action gets its repetitions first
        units[action] = 2 if action in TWO_SEGMENT_ACTIONS else rng.choice((1, 1, 2))
        reserve = sum(2 if a in TWO_SEGMENT_ACTIONS else 1 for a in actions[position + 1 :])
        if action in counted:
            reserve = 0  # the later actions are dropped if the count takes the whole clip
        max_reps = min(MAX_REPS, (budget - reserve) // units[action])
        if max_reps >= 1:
            reps_of[action] = rng.randint(1, max_reps)
            budget -= reps_of[action] * units[action]
    plan = [(action, reps_of[action], units[action]) for action in actions if action in reps_of]
    rng.shuffle(plan)
    lead = rng.randint(0, budget) if rng.random() < 0.4 else 0
    steps, start = [], 0
    if lead:
        steps.append(ActionStep(STILL, 1, 0, lead))
        start = lead
    for action, reps, unit in plan:
        steps.append(ActionStep(action, reps, start, reps * unit))
        start += reps * unit
    if start < NUM_SEGMENTS:
        steps.append(ActionStep(STILL, 1, start, NUM_SEGMENTS - start))
    return steps


def _inside_frame(obj: SceneObject) -> bool:
    """Whether the object's whole extent stays inside the frame at every sampled instant."""
    for t in _check_times():
        state = object_state(obj, t)
        if not (state.radius <= state.x <= 1 - state.radius and state.radius <= state.y <= 1 - state.radius):
            return False
    return True


def _separated(objects: Sequence[SceneObject]) -> bool:
    """Whether no two objects ever overlap (no occlusion)."""
    for t in _check_times():
        states = [object_state(obj, t) for obj in objects]
        for i, a in enumerate(states):
            for b in states[i + 1 :]:
                if math.hypot(a.x - b.x, a.y - b.y) < (a.radius + b.radius) * 1.05:
                    return False
    return True


def _check_times() -> list[float]:
    """Instants (in segments) at which geometry is checked: 4 per segment, the segment ends included."""
    return [i / 4 for i in range(NUM_SEGMENTS * 4 + 1)]


# --------------------------------------------------------------------------------------------------
# Motion: the state of an object at a time measured in segments
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectState:
    """Where an object is at one instant, in fractions of the frame side."""

    x: float
    y: float
    radius: float
    angle: float
    visible: bool


JUMP_HEIGHT = 0.15
GROWTH = 1.2  # scale factor of one repetition of grow (and 1 / GROWTH for shrink)


def object_state(obj: SceneObject, t: float) -> ObjectState:
    """The object's state at time `t` in segments (0 = clip start, 8 = clip end).

    Continuous actions (moves, rotate, grow, shrink) progress linearly over their segments. Blink and
    jump hold the odd state (off, up) for the whole first segment of each repetition and the normal
    state for the second, so one frame from anywhere in a segment shows the state of that segment.
    """
    x, y, angle, scale = obj.x, obj.y, obj.angle, 1.0
    visible, lift = True, 0.0
    for step in obj.steps:
        if t < step.start:
            break
        progress = min(1.0, (t - step.start) / step.length)
        amount = step.reps * progress
        if step.action in MOVES:
            dx, dy = MOVES[step.action]
            x, y = x + dx * obj.step * amount, y + dy * obj.step * amount
        elif step.action == "rotate":
            angle += obj.spin * 90.0 * amount
        elif step.action == "grow":
            scale *= GROWTH**amount
        elif step.action == "shrink":
            scale /= GROWTH**amount
        elif step.action in TWO_SEGMENT_ACTIONS and t < step.start + step.length:
            odd = int(t - step.start) % 2 == 0
            visible = not (odd and step.action == "blink")
            lift = JUMP_HEIGHT if odd and step.action == "jump" else 0.0
    return ObjectState(x, y - lift, SIZES[obj.size] * scale, angle, visible)


def frame_time(frame: int, num_frames: int) -> float:
    """Time in segments of frame `frame`: the end of its share of the segment (the last frame of a
    segment completes the segment's motion; blink/jump states hold over the whole segment)."""
    per_segment = num_frames // NUM_SEGMENTS
    segment, within = divmod(frame, per_segment)
    return segment + (within + 1) / per_segment - 1e-6


# How far a drawn shape reaches from its centre, in radii: the cross's arm corners (hypot(1, 0.32)).
SHAPE_EXTENT = 1.05


def segment_boxes(obj: SceneObject) -> list[list[float] | None]:
    """Per segment, the box `[x0, y0, x1, y1]` (fractions of the frame side, clipped to the frame) that
    holds the object wherever it is within the segment, or None while it is blinked off.

    Why per segment: the model samples one frame per segment, at a random instant when training, so
    the box must cover the whole segment's motion (the states at its start, middle and end)."""
    boxes: list[list[float] | None] = []
    for segment in range(NUM_SEGMENTS):
        states = [object_state(obj, segment + t) for t in (1e-6, 0.5, 1 - 1e-6)]
        shown = [state for state in states if state.visible]
        if not shown:
            boxes.append(None)
            continue
        extents = [(state.x, state.y, SHAPE_EXTENT * state.radius) for state in shown]
        box = [min(x - r for x, _, r in extents), min(y - r for _, y, r in extents),
               max(x + r for x, _, r in extents), max(y + r for _, y, r in extents)]  # fmt: skip
        boxes.append([round(min(1.0, max(0.0, value)), 4) for value in box])
    return boxes


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------

MARKER_COLOR = (20, 20, 20)


def render_clip(scene: Scene, size: int, num_frames: int) -> np.ndarray:
    """Render the clip as RGB uint8 frames `(num_frames, size, size, 3)`, objects drawn in list order."""
    from PIL import Image, ImageDraw

    _check_frames(num_frames)
    rng = np.random.default_rng(scene.seed)
    background = _background(scene.background, size, rng)
    corner = (int(rng.integers(0, size - size // 4 + 1)), int(rng.integers(0, size - size // 4 + 1)))
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for index in range(num_frames):
        image = Image.fromarray(_speckle(background, rng, corner))
        draw = ImageDraw.Draw(image)
        t = frame_time(index, num_frames)
        for obj in scene.objects:
            state = object_state(obj, t)
            if state.visible:
                draw_object(draw, obj, state, size)
        frames[index] = np.asarray(image)
    return frames


def _background(background: Background, size: int, rng: np.random.Generator) -> np.ndarray:
    """The static background `(size, size, 3)` uint8: base colour plus a grey-level field (grating(s)
    and fixed noise) snapped to steps of 4 levels.

    Why static and snapped: a clip then has a few dozen colours and only the objects change between
    frames, so GIFs stay small (Pillow writes only the changed box of each frame) and fast to
    palettise; the noise still keeps the background from being flat.
    """
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    theta = math.radians(background.orientation)
    along = xx * math.cos(theta) + yy * math.sin(theta)
    texture = np.sin(2 * math.pi * along / background.period)
    if background.checker:
        across = -xx * math.sin(theta) + yy * math.cos(theta)
        texture = texture * np.sin(2 * math.pi * across / background.period)
    field = background.contrast * texture + rng.normal(0.0, 4.0, size=texture.shape)
    field = 4.0 * np.round(field / 4.0)
    image = np.asarray(background.color, dtype=np.float64) + field[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _speckle(background: np.ndarray, rng: np.random.Generator, corner: tuple[int, int], fraction: float = 0.1) -> np.ndarray:
    """The background with a little noise that changes every frame: in a square a quarter of the frame
    wide at `corner` (fixed for the clip), `fraction` of the pixels one step (4 levels) brighter or darker.

    Why: no two frames are then identical (a GIF writer would merge identical frames, changing the
    frame count), while the change stays in one small box, so GIFs stay small.
    """
    frame = background.copy()
    side = max(2, min(frame.shape[:2]) // 4)
    count = max(1, int(fraction * side * side))
    ys, xs = corner[0] + rng.integers(0, side, count), corner[1] + rng.integers(0, side, count)
    step = rng.choice(np.array([-4, 4], dtype=np.int16), count)[:, None]
    frame[ys, xs] = np.clip(frame[ys, xs].astype(np.int16) + step, 0, 255).astype(np.uint8)
    return frame


def draw_object(draw: Any, obj: SceneObject, state: ObjectState, size: int) -> None:
    """Draw the shape filled with its colour, then the dark marker that shows its orientation."""
    cx, cy, radius = state.x * size, state.y * size, state.radius * size
    color = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
    else:
        draw.polygon(shape_polygon(obj.shape, cx, cy, radius, state.angle), fill=color)
    heading = math.radians(state.angle)
    mx, my = cx + 0.55 * radius * math.cos(heading), cy - 0.55 * radius * math.sin(heading)
    mr = max(1.0, 0.17 * radius)
    draw.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=MARKER_COLOR)


def shape_polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    """The vertices of a polygonal shape of circumradius `radius` turned by `angle` degrees (y down)."""
    if shape == "square":
        polar = [(radius, 45 + 90 * i) for i in range(4)]
    elif shape == "triangle":
        polar = [(radius, 120 * i) for i in range(3)]
    elif shape == "diamond":  # a rhombus, long along the heading, so it never looks like a turned square
        polar = [(radius, 0), (0.55 * radius, 90), (radius, 180), (0.55 * radius, 270)]
    elif shape == "star":
        polar = [(radius if i % 2 == 0 else 0.45 * radius, 36 * i) for i in range(10)]
    elif shape == "cross":
        half = 0.32  # half the arm width, relative to the radius
        corner = math.degrees(math.atan2(half, 1.0))
        inner = math.hypot(half, half)
        polar = []
        for arm in range(4):
            base = 90 * arm
            polar += [(math.hypot(1.0, half) * radius, base - corner), (math.hypot(1.0, half) * radius, base + corner)]
            polar.append((inner * radius, base + 45))
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    return [
        (cx + r * math.cos(math.radians(a + angle)), cy - r * math.sin(math.radians(a + angle))) for r, a in polar
    ]


def _check_frames(num_frames: int) -> None:
    if num_frames < NUM_SEGMENTS or num_frames % NUM_SEGMENTS:
        raise ValueError(f"num_frames must be a positive multiple of {NUM_SEGMENTS} (one per segment), got {num_frames}")


# --------------------------------------------------------------------------------------------------
# Language: references, captions and question templates
# --------------------------------------------------------------------------------------------------

ACTION_TEMPLATE = "What does the {ref} do {times} ?"
TRANSITION_TEMPLATES = {"after": "What does the {ref} do after {anchor} ?", "before": "What does the {ref} do before {anchor} ?"}
COUNT_TEMPLATE = "How many times does the {ref} {action} ?"
FRAMEQA_TEMPLATES = {
    "object": "what shape is the {color} object ?",
    "number": "how many objects are there ?",
    "color": "what color is the {shape} ?",
    "location": "where is the {ref} ?",
}
MSVD_TEMPLATES = {
    "color": "what color is the {shape} ?",
    "first": "what is the {ref} doing first ?",
    "last": "what is the {ref} doing last ?",
    "which": "which shape {third} ?",
    "number": "how many objects are there ?",
    "count": "how many times does the {ref} {action} ?",
    "direction": "where does the {ref} move ?",
    "location": "where is the {ref} ?",
}
_EXTRA_WORDS = ("a", "then", "while", "and", "once", "?", ".", "0", "1", "2", "3", "4", "5")


def benchmark_words() -> list[str]:
    """Every word (lowercased, split on spaces) the generator can write in a question, candidate, answer
    or caption, sorted; a tokenizer trained to cover these covers the whole benchmark."""
    texts: list[str] = [ACTION_TEMPLATE, COUNT_TEMPLATE, *TRANSITION_TEMPLATES.values()]
    texts += [*FRAMEQA_TEMPLATES.values(), *MSVD_TEMPLATES.values(), *_EXTRA_WORDS]
    texts += [*SHAPES, *COLORS, *SIZES, *ACTIONS, *THIRD_PERSON.values(), *GERUND.values(), *DIRECTION.values()]
    texts += [*TIMES_WORDS.values(), *NUMBER_WORDS, *ZONES]
    words = set()
    for text in texts:
        for word in text.lower().split():
            if not word.startswith("{"):
                words.add(word)
    return sorted(words)


def reference(rng: random.Random, obj: SceneObject) -> str:
    """A phrase naming the object uniquely in its clip: "red circle", "circle", "red object" or "big red circle"."""
    return rng.choice((f"{obj.color} {obj.shape}", obj.shape, f"{obj.color} object", f"{obj.size} {obj.color} {obj.shape}"))


def times_phrase(reps: int) -> str:
    """ "once" or "3 times", as in TGIF-QA's "What does the woman do 4 times ?"."""
    return "once" if reps == 1 else f"{reps} times"


def caption(scene: Scene) -> str:
    """A WebVid-style caption: "a big red circle moves left then rotates twice while a small white star blinks"."""
    return join_object_phrases([_object_phrase(obj) for obj in scene.objects])


def join_object_phrases(phrases: Sequence[str]) -> str:
    """One caption from its objects' phrases: the first two joined by "while", any further by "and"."""
    text = phrases[0]
    for position, phrase in enumerate(phrases[1:]):
        text += (" while " if position == 0 else " and ") + phrase
    return text


def object_phrase(size: str, color: str, shape: str, steps: Sequence[tuple[str, str]]) -> str:
    """ "a big red circle moves left then rotates twice": `steps` are (verb, count words; "" for once)."""
    return f"a {size} {color} {shape} " + " then ".join(" ".join(filter(None, step)) for step in steps)


def _object_phrase(obj: SceneObject) -> str:
    steps = obj.core_steps() or obj.steps[:1]
    return object_phrase(obj.size, obj.color, obj.shape, [(THIRD_PERSON[step.action], TIMES_WORDS[step.reps]) for step in steps])


# --------------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A question a clip could ask: balanced on `answer` within `key` (its template)."""

    key: tuple[Any, ...]
    answer: Any
    obj: SceneObject
    detail: Any = None


class AnswerBalancer:
    """Picks, among a clip's possible questions, the one whose answer is rarest so far for its template.

    Why: the scenes are random, so some answers (e.g. "stay still" after the last action, count 0)
    would dominate; balancing per template keeps the text-only prior near uniform.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, ...], Counter] = defaultdict(Counter)

    def pick(self, rng: random.Random, options: Sequence[Option]) -> Option | None:
        if not options:
            return None
        lowest = min(self.counts[o.key][o.answer] for o in options)
        chosen = rng.choice([o for o in options if self.counts[o.key][o.answer] == lowest])
        self.counts[chosen.key][chosen.answer] += 1
        return chosen


def action_options(scene: Scene) -> list[Option]:
    """"What does X do k times ?": every (object, action) whose repetition count names it uniquely."""
    options = []
    for obj in scene.objects:
        steps = obj.core_steps()
        for step in steps:
            if sum(other.reps == step.reps for other in steps) == 1:
                options.append(Option(("action", step.reps), step.action, obj, step.reps))
    return options


def transition_options(scene: Scene) -> list[Option]:
    """"What does X do after/before A ?": consecutive steps whose anchor occurs once in the timeline."""
    options = []
    for obj in scene.objects:
        names = [step.action for step in obj.steps]
        for first, second in zip(names, names[1:]):
            if names.count(first) == 1:
                options.append(Option(("after", first), second, obj, first))
            if names.count(second) == 1:
                options.append(Option(("before", second), first, obj, second))
    return options


def count_options(scene: Scene) -> list[Option]:
    """"How many times does X blink/jump ?" for every object (0 when it never does)."""
    return [Option(("count", action), obj.reps_of(action), obj, action) for obj in scene.objects for action in COUNTED_ACTIONS]


def multiple_choice(
    rng: random.Random, answer: str, excluded: Iterable[str], pool: Sequence[str], preferred: Iterable[str] = ()
) -> tuple[list[str], int]:
    """Five distinct candidates, shuffled: the answer and four others from `pool` not in `excluded`.

    Up to two distractors come from `preferred` (actions seen in the clip), so that recognising "some
    motion of the clip" is not enough: the model must ground the question on the named object.
    """
    excluded = set(excluded) | {answer}
    hard = sorted({a for a in preferred if a not in excluded and a in pool})
    distractors = rng.sample(hard, min(2, len(hard)))
    rest = [a for a in pool if a not in excluded and a not in distractors]
    candidates = [answer, *distractors, *rng.sample(rest, 4 - len(distractors))]
    rng.shuffle(candidates)
    return candidates, candidates.index(answer)


def _clip_actions(scene: Scene, obj: SceneObject, reps: int | None = None) -> list[str]:
    """Actions of the other objects, and the object's own actions done a different number of times."""
    actions = [s.action for other in scene.objects if other is not obj for s in other.steps]
    return actions + [s.action for s in obj.steps if reps is not None and s.reps != reps]


def step_segments(steps: Iterable[ActionStep]) -> list[int]:
    """The segments of the clip that `steps` span, in order."""
    return sorted({segment for step in steps for segment in range(step.start, step.start + step.length)})


def make_action_question(rng: random.Random, scene: Scene, option: Option) -> dict[str, Any]:
    """Candidates are repeatable actions; none but the answer is done by the object k times.
    `segments`: those of the step asked about (the answer, done k times)."""
    obj, reps = option.obj, option.detail
    same_count = [s.action for s in obj.core_steps() if s.reps == reps]
    candidates, answer = multiple_choice(rng, option.answer, same_count, REPEATED_ACTIONS, _clip_actions(scene, obj, reps))
    question = ACTION_TEMPLATE.format(ref=reference(rng, obj), times=times_phrase(reps))
    asked = [step for step in obj.core_steps() if step.action == option.answer and step.reps == reps]
    return {"question": question, "candidates": candidates, "answer": answer, "object": scene.objects.index(obj),
            "segments": step_segments(asked)}


def make_transition_question(rng: random.Random, scene: Scene, option: Option) -> dict[str, Any]:
    """Candidates are actions other than the anchor (which the question names). `segments`: those of
    the step asked about (the one right after or before the anchor, which the object does once)."""
    direction, anchor = option.key
    own = [step.action for step in option.obj.steps]  # the object's other actions: order matters
    candidates, answer = multiple_choice(rng, option.answer, [anchor], ACTIONS, _clip_actions(scene, option.obj) + own)
    question = TRANSITION_TEMPLATES[direction].format(ref=reference(rng, option.obj), anchor=anchor)
    asked = option.obj.steps[own.index(anchor) + (1 if direction == "after" else -1)]
    return {"question": question, "candidates": candidates, "answer": answer, "object": scene.objects.index(option.obj),
            "segments": step_segments([asked])}


def make_count_question(rng: random.Random, scene: Scene, option: Option) -> dict[str, Any]:
    """`segments`: those of the steps of the counted action (none when the answer is 0)."""
    question = COUNT_TEMPLATE.format(ref=reference(rng, option.obj), action=option.detail)
    counted = [step for step in option.obj.steps if step.action == option.detail]
    return {"question": question, "answer": option.answer, "object": scene.objects.index(option.obj),
            "segments": step_segments(counted)}


def frameqa_questions(rng: random.Random, scene: Scene, how_many: int = 3) -> list[dict[str, Any]]:
    """Up to `how_many` single-frame questions of distinct types (object, number, color, location)."""
    static = [obj for obj in scene.objects if obj.zone is not None]
    kinds = [kind for kind in FRAMEQA_TYPES if kind != "location" or static]
    questions = []
    for kind in rng.sample(kinds, min(how_many, len(kinds))):
        obj = rng.choice(static if kind == "location" else scene.objects)
        question, answer = _single_frame_question(rng, kind, obj, scene, FRAMEQA_TEMPLATES)
        named = None if kind == "number" else scene.objects.index(obj)
        questions.append({"question": question, "answer": answer, "type": FRAMEQA_TYPES[kind], "object": named})
    return questions


def _single_frame_question(
    rng: random.Random, kind: str, obj: SceneObject, scene: Scene, templates: dict[str, str]
) -> tuple[str, str]:
    """The question and one-word answer of kind object/color/number/location about `obj`."""
    if kind == "object":
        return templates[kind].format(color=obj.color), obj.shape
    if kind == "color":
        return templates[kind].format(shape=obj.shape), obj.color
    if kind == "number":
        return templates[kind], NUMBER_WORDS[len(scene.objects)]
    return templates[kind].format(ref=reference(rng, obj)), str(obj.zone)


def msvd_questions(rng: random.Random, scene: Scene, how_many: int = 4) -> list[dict[str, Any]]:
    """Up to `how_many` open-ended questions of distinct kinds (what, which, how, where) with one-word
    answers, each with the index of the object it is about (None for "how many objects ?")."""
    pool: dict[str, list[tuple[str, str, int | None]]] = defaultdict(list)
    performers: dict[str, list[int]] = defaultdict(list)
    for index, obj in enumerate(scene.objects):
        core = obj.core_steps()
        pool["color"].append((*_single_frame_question(rng, "color", obj, scene, MSVD_TEMPLATES), index))
        if core:
            pool["first"].append((MSVD_TEMPLATES["first"].format(ref=reference(rng, obj)), GERUND[core[0].action], index))
        if len(core) > 1:
            pool["last"].append((MSVD_TEMPLATES["last"].format(ref=reference(rng, obj)), GERUND[core[-1].action], index))
        for action in COUNTED_ACTIONS:
            question = MSVD_TEMPLATES["count"].format(ref=reference(rng, obj), action=action)
            pool["count"].append((question, NUMBER_WORDS[obj.reps_of(action)], index))
        directions = {DIRECTION[step.action] for step in core if step.action in MOVES}
        if len(directions) == 1:
            pool["direction"].append((MSVD_TEMPLATES["direction"].format(ref=reference(rng, obj)), directions.pop(), index))
        if obj.zone is not None:
            pool["location"].append((*_single_frame_question(rng, "location", obj, scene, MSVD_TEMPLATES), index))
        for step in core:
            performers[step.action].append(index)
    for action, indices in performers.items():
        if len(indices) == 1:
            question = MSVD_TEMPLATES["which"].format(third=THIRD_PERSON[action])
            pool["which"].append((question, scene.objects[indices[0]].shape, indices[0]))
    pool["number"].append((*_single_frame_question(rng, "number", scene.objects[0], scene, MSVD_TEMPLATES), None))
    kinds = rng.sample(sorted(pool), min(how_many, len(pool)))
    return [dict(zip(("question", "answer", "object"), rng.choice(pool[kind]))) for kind in kinds]


@dataclass
class ClipQuestions:
    """All annotations of one clip, before they are written in each dataset's format."""

    scene: Scene
    action: dict[str, Any] | None
    transition: dict[str, Any] | None
    count: dict[str, Any] | None
    frameqa: list[dict[str, Any]]
    msvd: list[dict[str, Any]]
    caption: str


def annotate_split(scenes: Sequence[Scene], seed: int, split: str) -> list[ClipQuestions]:
    """The questions of every clip of a split, balanced per template within the split."""
    rng = random.Random(f"{seed}:questions:{split}")
    balancers = {task: AnswerBalancer() for task in ("action", "transition", "count")}
    annotated = []
    for scene in scenes:
        action = balancers["action"].pick(rng, action_options(scene))
        transition = balancers["transition"].pick(rng, transition_options(scene))
        count = balancers["count"].pick(rng, count_options(scene))
        annotated.append(
            ClipQuestions(
                scene=scene,
                action=make_action_question(rng, scene, action) if action else None,
                transition=make_transition_question(rng, scene, transition) if transition else None,
                count=make_count_question(rng, scene, count) if count else None,
                frameqa=frameqa_questions(rng, scene),
                msvd=msvd_questions(rng, scene),
                caption=caption(scene),
            )
        )
    return annotated


# --------------------------------------------------------------------------------------------------
# Writing the annotation files in the published formats
# --------------------------------------------------------------------------------------------------

TGIF_COLUMNS = {
    "action": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "transition": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "frameqa": ["gif_name", "question", "answer", "type", "vid_id", "key", "description"],
    "count": ["gif_name", "question", "answer", "vid_id", "key"],
}
WEBVID_COLUMNS = ["videoid", "contentUrl", "duration", "page_dir", "name"]


@dataclass(frozen=True)
class ClipNames:
    """The file names one clip has in each dataset."""

    gif_name: str  # tgif/gifs/<gif_name>.gif
    youtube_name: str  # msvd/YouTubeClips/<youtube_name>.avi
    video_id: int  # msvd vid<video_id>
    videoid: str  # webvid/videos/<page_dir>/<videoid>.mp4
    page_dir: str


def clip_names(index: int, duration_s: int) -> ClipNames:
    """Names of clip `index` (global over the splits): syn00012, syn00012_0_4 / vid13, 13 in 000001_000100."""
    page = index // 100
    return ClipNames(
        gif_name=f"syn{index:05d}",
        youtube_name=f"syn{index:05d}_0_{duration_s}",
        video_id=index + 1,
        videoid=str(index + 1),
        page_dir=f"{page * 100 + 1:06d}_{page * 100 + 100:06d}",
    )


def tgif_rows(
    annotated: Iterable[ClipQuestions], keys: Counter, named: dict[str, dict[str, int]] | None = None,
    asked: dict[str, dict[str, list[int]]] | None = None,
) -> dict[str, list[list[Any]]]:
    """The rows of the four TGIF-QA files for the given clips; `keys` numbers the rows per task.
    `named`, when given, gets for each task {row key: index of the object the question names}, and
    `asked` {row key: the segments of the step asked about} for the questions that ask about one."""
    rows: dict[str, list[list[Any]]] = {task: [] for task in TGIF_COLUMNS}
    named = {} if named is None else named
    asked = {} if asked is None else asked

    def add(task: str, item: dict[str, Any], before_key: list[Any], after_key: Sequence[Any] = ()) -> None:
        keys[task] += 1
        rows[task].append([*before_key, keys[task], *after_key])
        if item.get("object") is not None:
            named.setdefault(f"tgif-{task}", {})[str(keys[task])] = item["object"]
        if item.get("segments"):
            asked.setdefault(f"tgif-{task}", {})[str(keys[task])] = item["segments"]

    for clip in annotated:
        name, number = clip.scene.name, clip.scene.index + 1
        for task in ("action", "transition"):
            item = getattr(clip, task)
            if item is not None:
                add(task, item, [name, item["question"], *item["candidates"], item["answer"], f"{task.upper()}{number}"])
        for item in clip.frameqa:
            add("frameqa", item, [name, item["question"], item["answer"], item["type"], f"FRAMEQA{number}"], [f"{clip.caption} ."])
        if clip.count is not None:
            add("count", clip.count, [name, clip.count["question"], clip.count["answer"], f"COUNT{number}"])
    return rows


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A TAB-separated file with a header and standard CSV quoting, as TGIF-QA publishes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_tgif(out: Path, by_split: dict[str, list[ClipQuestions]]) -> None:
    """`{Train,Test}_<task>_question.csv` (Train = train + val clips), `splits.json` and `grounding.json`."""
    keys: Counter = Counter()
    named: dict[str, dict[str, int]] = {}
    asked: dict[str, dict[str, list[int]]] = {}
    for prefix, clips in (("Train", by_split["train"] + by_split["val"]), ("Test", by_split["test"])):
        for task, rows in tgif_rows(clips, keys, named, asked).items():
            write_tsv(out / f"{prefix}_{task}_question.csv", TGIF_COLUMNS[task], rows)
    splits = {split: [clip.scene.name for clip in by_split[split]] for split in SPLITS}
    _write_json(out / "splits.json", splits)
    scenes = [clip.scene for split in SPLITS for clip in by_split[split]]
    write_grounding(out, {f"{scene.name}.gif": scene for scene in scenes}, named, asked)


def write_grounding(out: Path, videos: dict[str, Scene], named: dict[str, dict[str, int]],
                    asked: dict[str, dict[str, list[int]]] | None = None) -> None:
    """`grounding.json`: where each object of each clip is (`segment_boxes`, keyed by the annotation
    records' `video` path), which object each question names ({task: {record id: object index}};
    questions about no single object, "how many objects ?", are left out) and, for the Action,
    Transition and Count questions, the segments of the step they ask about ({task: {record id:
    [segment, ...]}}; a count of 0 has none). Not part of the published datasets:
    `finetune.train_qa --grounding_weight` reads it (`clover.grounding`)."""
    grounding = {
        "format": GROUNDING_FORMAT,
        "num_segments": NUM_SEGMENTS,
        "boxes": {video: [segment_boxes(obj) for obj in scene.objects] for video, scene in videos.items()},
        "questions": named,
        "asked_segments": asked or {},
    }
    (out / GROUNDING_FILE).write_text(json.dumps(grounding, separators=(",", ":")) + "\n", encoding="utf-8")


def write_msvd(out: Path, by_split: dict[str, list[ClipQuestions]], names: dict[int, ClipNames], seed: int) -> None:
    """`{train,val,test}_qa.json`, a `youtube_mapping.txt` in shuffled order (loaders map by vidN) and
    `grounding.json`."""
    next_id = 1
    named: dict[str, int] = {}
    for split in SPLITS:
        entries = []
        for clip in by_split[split]:
            for item in clip.msvd:
                video_id = names[clip.scene.index].video_id
                entries.append({"answer": item["answer"], "id": next_id, "question": item["question"], "video_id": video_id})
                if item["object"] is not None:
                    named[str(next_id)] = item["object"]
                next_id += 1
        _write_json(out / f"{split}_qa.json", entries)
    lines = [f"{n.youtube_name} vid{n.video_id}" for n in names.values()]
    random.Random(f"{seed}:mapping").shuffle(lines)
    (out / "youtube_mapping.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scenes = [clip.scene for split in SPLITS for clip in by_split[split]]
    write_grounding(out, {f"YouTubeClips/{names[scene.index].youtube_name}.avi": scene for scene in scenes}, {"msvd-qa": named})


def write_webvid(out: Path, by_split: dict[str, list[ClipQuestions]], names: dict[int, ClipNames], duration_s: int) -> None:
    """`results.csv` (train captions) and `results_val.csv` (val captions, for retrieval) in WebVid's columns."""
    duration = f"PT00H{duration_s // 60:02d}M{duration_s % 60:02d}S"
    for split, file_name in (("train", "results.csv"), ("val", "results_val.csv")):
        out.mkdir(parents=True, exist_ok=True)
        with (out / file_name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(WEBVID_COLUMNS)
            for clip in by_split[split]:
                n = names[clip.scene.index]
                url = f"https://example.invalid/synthetic/{n.videoid}.mp4"
                writer.writerow([n.videoid, url, duration, n.page_dir, clip.caption])


def corpus_lines(by_split: dict[str, list[ClipQuestions]]) -> list[str]:
    """Every question, candidate, answer and caption, one per line, in split and clip order."""
    lines: list[str] = []
    for split in SPLITS:
        for clip in by_split[split]:
            for item in (clip.action, clip.transition):
                if item is not None:
                    lines += [item["question"], *item["candidates"]]
            if clip.count is not None:
                lines += [clip.count["question"], str(clip.count["answer"])]
            for item in [*clip.frameqa, *clip.msvd]:
                lines += [item["question"], str(item["answer"])]
            lines.append(clip.caption)
    return lines


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Writing the clips
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipJob:
    """One clip to render and the paths to write it to (one per format it is needed in)."""

    scene: Scene
    paths: tuple[str, ...]
    size: int
    num_frames: int
    fps: float


def write_clip(job: ClipJob) -> str:
    """Render the clip once and write it to every path of the job (top-level, so workers can run it)."""
    frames = render_clip(job.scene, job.size, job.num_frames)
    for path in job.paths:
        write_video(path, frames, job.fps)
    return job.scene.name


def clip_jobs(out: Path, scenes: Iterable[Scene], names: dict[int, ClipNames], size: int, num_frames: int, fps: float) -> list[ClipJob]:
    """GIF and AVI for every clip, MP4 for the train and val clips (the ones with WebVid captions)."""
    jobs = []
    for scene in scenes:
        n = names[scene.index]
        paths = [out / "tgif" / "gifs" / f"{n.gif_name}.gif", out / "msvd" / "YouTubeClips" / f"{n.youtube_name}.avi"]
        if scene.split in ("train", "val"):
            paths.append(out / "webvid" / "videos" / n.page_dir / f"{n.videoid}.mp4")
        jobs.append(ClipJob(scene, tuple(str(p) for p in paths), size, num_frames, fps))
    return jobs


def write_clips(jobs: Sequence[ClipJob], workers: int = 1, progress: bool = True) -> None:
    """Write every clip, in `workers` processes when more than one; a tqdm bar shows progress."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="clips", unit="clip", disable=not progress)
    if workers <= 1:
        for job in jobs:
            write_clip(job)
            bar.update()
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(write_clip, jobs, chunksize=4):
                bar.update()
    bar.close()


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def sample_scenes(seed: int, counts: dict[str, int]) -> dict[str, list[Scene]]:
    """The scenes of every split; clip `index` is seeded by (seed, index) alone, so it never depends on order."""
    scenes: dict[str, list[Scene]] = {}
    index = 0
    for split in SPLITS:
        scenes[split] = []
        for _ in range(counts[split]):
            rng = random.Random(f"{seed}:scene:{index}")
            scenes[split].append(sample_scene(rng, clip_names(index, 0).gif_name, index, split))
            index += 1
    return scenes


def generate_benchmark(
    out_dir: str | Path,
    *,
    seed: int = 0,
    train_clips: int = 1200,
    val_clips: int = 200,
    test_clips: int = 300,
    size: int = 112,
    num_frames: int = 32,
    fps: float = 8.0,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the whole benchmark under `out_dir` and return a summary (counts, time).

    Every file is byte for byte the same for the same arguments, whatever `workers` is: clips are
    rendered from per-clip seeds, and encoded reproducibly (`clover.video.write_video`).
    """
    _check_frames(num_frames)
    if size % 2 or size < 16:
        raise ValueError(f"size must be even and at least 16 (the AVI and MP4 encoders need even sizes), got {size}")
    started = time.perf_counter()
    out = Path(out_dir)
    counts = {"train": train_clips, "val": val_clips, "test": test_clips}
    duration_s = clip_duration_s(num_frames, fps)
    by_split, names = annotate_benchmark(seed, counts, duration_s)
    all_scenes = [clip.scene for split in SPLITS for clip in by_split[split]]

    write_question_files(out, by_split, names, seed)
    write_webvid(out / "webvid", by_split, names, duration_s)
    lines = corpus_lines(by_split)
    (out / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write_json(out / "scenes.json", {scene.name: asdict(scene) for scene in all_scenes})
    questions = question_counts(by_split)
    metadata = {
        "seed": seed, "size": size, "num_frames": num_frames, "fps": fps, "num_segments": NUM_SEGMENTS,
        "clips": counts, "questions": questions,
        "vocabulary": sorted({word for line in lines for word in line.lower().split()}),
        "clips_version": CLIPS_VERSION,  # last, where update_clips adds it to an older file
    }
    _write_json(out / "metadata.json", metadata)

    write_clips(clip_jobs(out, all_scenes, names, size, num_frames, fps), workers, progress)
    return {"out_dir": str(out), "clips": counts, "questions": questions, "seconds": round(time.perf_counter() - started, 1)}


def clip_duration_s(num_frames: int, fps: float) -> int:
    """A clip's length in whole seconds, as its MSVD-style file name and WebVid duration give it."""
    return max(1, round(num_frames / fps))


def annotate_benchmark(seed: int, counts: dict[str, int], duration_s: int) -> tuple[dict[str, list[ClipQuestions]], dict[int, ClipNames]]:
    """Every split's scenes with their questions, and each clip's file names: all that the annotation
    files are made from (a function of the seed, the clip counts and the clips' duration)."""
    scenes = sample_scenes(seed, counts)
    names = {scene.index: clip_names(scene.index, duration_s) for split in SPLITS for scene in scenes[split]}
    return {split: annotate_split(scenes[split], seed, split) for split in SPLITS}, names


def write_question_files(out: Path, by_split: dict[str, list[ClipQuestions]], names: dict[int, ClipNames], seed: int) -> None:
    """The TGIF-QA and MSVD-QA files, each folder with its `grounding.json`."""
    write_tgif(out / "tgif", by_split)
    write_msvd(out / "msvd", by_split, names, seed)


def add_grounding(out_dir: str | Path) -> bool:
    """Give a benchmark generated before `grounding.json` existed, or before it held `asked_segments`,
    its two grounding files; False when they are there already. The scenes and questions are a function
    of the seed and clip counts in its `metadata.json`, so they are made again in a temporary folder and
    the grounding files copied only if every question file made there is byte for byte the benchmark's
    own (else a ValueError: regenerate)."""
    out = Path(out_dir)
    targets = [out / folder / GROUNDING_FILE for folder in ("tgif", "msvd")]
    if all(_has_asked_segments(path) for path in targets):
        return False
    metadata = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    duration_s = clip_duration_s(metadata["num_frames"], metadata["fps"])
    by_split, names = annotate_benchmark(metadata["seed"], metadata["clips"], duration_s)
    with tempfile.TemporaryDirectory() as scratch:
        write_question_files(Path(scratch), by_split, names, metadata["seed"])
        for made in sorted(Path(scratch).rglob("*")):
            own = out / made.relative_to(scratch)
            if made.is_file() and made.name != GROUNDING_FILE and not (own.is_file() and made.read_bytes() == own.read_bytes()):
                raise ValueError(
                    f"{own} is not what this version of the generator writes for its metadata.json: "
                    f"generate the benchmark again (python -m clover.data.synthetic {out})"
                )
        for path in targets:
            shutil.copyfile(Path(scratch) / path.parent.name / GROUNDING_FILE, path)
    return True


def update_clips(out_dir: str | Path, workers: int = 2, progress: bool = True) -> int:
    """Write again the MP4s of a benchmark an older generator made (`metadata.json` without
    `clips_version`, or below CLIPS_VERSION): their H.264 streams varied from run to run, and so did
    the caption pre-training they feed. The scenes are a function of the seed and clip counts in
    `metadata.json`. Returns how many clips were written (0: they are this version's already)."""
    out = Path(out_dir)
    path = out / "metadata.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    if metadata.get("clips_version", 1) >= CLIPS_VERSION:
        return 0
    duration_s = clip_duration_s(metadata["num_frames"], metadata["fps"])
    scenes = [scene for split in SPLITS for scene in sample_scenes(metadata["seed"], metadata["clips"])[split]]
    names = {scene.index: clip_names(scene.index, duration_s) for scene in scenes}
    jobs = []
    for job in clip_jobs(out, scenes, names, metadata["size"], metadata["num_frames"], metadata["fps"]):
        mp4s = tuple(path for path in job.paths if path.endswith(".mp4"))
        if mp4s:  # the train and val clips
            jobs.append(replace(job, paths=mp4s))
    write_clips(jobs, workers, progress)
    metadata["clips_version"] = CLIPS_VERSION
    _write_json(path, metadata)
    return len(jobs)


def _has_asked_segments(path: Path) -> bool:
    """Whether `path` is a grounding file of this version (one with `asked_segments`)."""
    try:
        return "asked_segments" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def question_counts(by_split: dict[str, list[ClipQuestions]]) -> dict[str, dict[str, int]]:
    """Number of questions per split and task."""
    result = {}
    for split, clips in by_split.items():
        result[split] = {
            "action": sum(c.action is not None for c in clips),
            "transition": sum(c.transition is not None for c in clips),
            "count": sum(c.count is not None for c in clips),
            "frameqa": sum(len(c.frameqa) for c in clips),
            "msvd": sum(len(c.msvd) for c in clips),
            "captions": len(clips) if split != "test" else 0,
        }
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m clover.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the benchmark to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-clips", type=int, default=1200)
    parser.add_argument("--val-clips", type=int, default=200)
    parser.add_argument("--test-clips", type=int, default=300)
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels (even)")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip, a multiple of 8")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=min(2, multiprocessing.cpu_count()), help="processes writing clips")
    args = parser.parse_args(argv)
    summary = generate_benchmark(
        args.out_dir, seed=args.seed, train_clips=args.train_clips, val_clips=args.val_clips,
        test_clips=args.test_clips, size=args.size, num_frames=args.frames, fps=args.fps, workers=args.workers,
    )
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
