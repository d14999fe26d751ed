"""Clover's semantic masking: whole-word masking of semantic words, block masking of video cells.

Text (``mask_text``): about 30% of the *semantic* words of each caption (nouns, proper nouns, verb
phrases), at least one, are masked as whole words with BERT's 80/10/10 rule. Words are recovered from
the WordPiece tokens themselves ("##" continuations), so no re-tokenisation of the raw text is needed.
Which words are semantic is decided by spaCy when it is installed with an English model, otherwise
(the default; spaCy is not a dependency) by a built-in stop-word list, which keeps every content word
(nouns, verbs, but also adjectives and adverbs that are not on the list).

Video (``mask_video_cells``): block masking of about 10 of the 49 spatial cells of a 7x7 token grid, in
connected blocks of at least 4 cells; the same cells are masked in every frame.

All randomness comes from the ``torch.Generator`` passed in, so masks are reproducible.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

IGNORE_INDEX = -100

#: Fraction of the 7x7 = 49 cells masked in the published setting (10 of 49).
VIDEO_MASK_FRACTION = 10 / 49

# Function words that are never semantic: determiners, pronouns, prepositions, conjunctions,
# auxiliaries and modals, frequent adverbs/particles, and numbers written as words (spaCy tags those
# NUM, so they are not nouns either).
STOP_WORDS: frozenset[str] = frozenset(
    """
    a an the this that these those some any each every no all both either neither another such
    what which who whom whose whatever whoever
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves one ones
    someone somebody something anyone anybody anything everyone everybody everything nobody nothing
    about above across after against along among around at before behind below beneath beside
    besides between beyond by down during except for from in inside into like near of off on onto
    out outside over past since through throughout till to toward towards under underneath until
    up upon via with within without
    and but or nor so yet if then than because while although though unless whether as
    be am is are was were been being have has had having do does did doing done
    will would shall should can could may might must ought
    not no nor very too also just only even still already again ever never always often
    here there where when why how now then once more most much many few less least
    other others own same s t don doesn didn isn aren wasn weren won wouldn shouldn couldn
    zero two three four five six seven eight nine ten eleven twelve twenty hundred thousand
    first second third
    """.split()
)

_SEMANTIC_POS = frozenset({"NOUN", "PROPN", "VERB"})


# --------------------------------------------------------------------------------------------------
# Semantic words
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _load_spacy() -> Any | None:
    """spaCy's small English pipeline, or None when spaCy or the model is not installed."""
    try:
        import spacy

        return spacy.load("en_core_web_sm", disable=["ner", "lemmatizer"])
    except (ImportError, OSError):
        return None


def _is_word(word: str) -> bool:
    """True for a word with at least one letter (excludes punctuation and digit strings)."""
    return any(character.isalpha() for character in word)


def _spacy_candidates(nlp: Any, words: list[str]) -> list[int]:
    """Nouns, proper nouns, verbs and the particles of phrasal verbs ("pick *up*"), tagged by spaCy
    on the given words (a ``Doc`` built from them keeps one token per word)."""
    from spacy.tokens import Doc

    doc = Doc(nlp.vocab, words=words)
    for _, component in nlp.pipeline:
        doc = component(doc)
    return [
        token.i
        for token in doc
        if _is_word(token.text)
        and (token.pos_ in _SEMANTIC_POS or (token.dep_ == "prt" and token.head.pos_ == "VERB"))
        and not (token.pos_ == "VERB" and token.lower_ in {"be", "have", "do"})
    ]


def semantic_word_candidates(words: list[str]) -> list[int]:
    """Indices of the semantic words of a caption given as a list of words.

    With spaCy and ``en_core_web_sm`` installed: nouns, proper nouns, verbs and verb particles (verb
    phrases). Otherwise: every word with a letter that is not in :data:`STOP_WORDS` (content words;
    adjectives and adverbs are kept too, since telling them apart needs a tagger).
    """
    if not words:
        return []
    nlp = _load_spacy()
    if nlp is not None:
        return _spacy_candidates(nlp, words)
    return [i for i, word in enumerate(words) if _is_word(word) and word.lower() not in STOP_WORDS]


# --------------------------------------------------------------------------------------------------
# Text masking
# --------------------------------------------------------------------------------------------------


def group_word_pieces(tokens: list[str], eligible: list[bool]) -> list[list[int]]:
    """Group WordPiece tokens into words: positions of each word's pieces ("##" continues a word).

    ``eligible[i]`` is False for special and padding positions, which belong to no word and end the
    current word.
    """
    words: list[list[int]] = []
    for position, (token, ok) in enumerate(zip(tokens, eligible)):
        if not ok:
            continue
        continues = token.startswith("##") and words and words[-1][-1] == position - 1
        if continues:
            words[-1].append(position)
        else:
            words.append([position])
    return words


def _word_text(tokens: list[str], positions: list[int]) -> str:
    """The word spelled by its pieces, e.g. ["jump", "##ing"] -> "jumping"."""
    return "".join(tokens[p].removeprefix("##") for p in positions)


def _choose_words(
    words: list[list[int]], tokens: list[str], ratio: float, generator: torch.Generator
) -> list[list[int]]:
    """About ``ratio`` of the semantic words (at least one); any word if none is semantic."""
    texts = [_word_text(tokens, positions) for positions in words]
    candidates = semantic_word_candidates(texts) or list(range(len(words)))
    if not candidates:
        return []
    count = max(1, math.floor(ratio * len(candidates) + 0.5))  # round half up
    order = torch.randperm(len(candidates), generator=generator)[:count]
    return [words[candidates[i]] for i in order.tolist()]


def _replaceable_ids(tokenizer: Any) -> torch.Tensor:
    """Vocabulary ids that the "random token" branch may use: every id except special tokens."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])  # (V',)


def mask_text(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    tokenizer: Any,
    *,
    ratio: float = 0.3,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic whole-word masking of a tokenised batch.

    Args:
        input_ids: (B, L) ids from a WordPiece (BERT) tokenizer.
        attention_mask: (B, L), 0 at padding.
        tokenizer: the tokenizer that made ``input_ids`` (a ``BertTokenizerFast``); used for
            ``convert_ids_to_tokens``, ``mask_token_id``, ``all_special_ids`` and its size.
        ratio: fraction of each caption's semantic words to mask (at least one word is masked when
            the caption has any word).
        generator: source of all randomness (CPU generator).

    Returns:
        ``(masked_input_ids, labels)``, both (B, L). Each chosen word is, as a whole (every piece):
        replaced by [MASK] with probability 0.8, by random non-special tokens with 0.1, kept with 0.1.
        ``labels`` holds the original ids at every piece of a chosen word and -100 elsewhere.
        Special tokens and padding are never chosen.
    """
    if input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ"
        )
    special = torch.tensor(sorted(tokenizer.all_special_ids))
    eligible = (attention_mask.cpu() != 0) & ~torch.isin(input_ids.cpu(), special)  # (B, L)
    replaceable = _replaceable_ids(tokenizer)  # (V',)
    masked = input_ids.clone()  # (B, L)
    labels = torch.full_like(input_ids, IGNORE_INDEX)  # (B, L)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        tokens = tokenizer.convert_ids_to_tokens(ids)
        words = group_word_pieces(tokens, eligible[row].tolist())
        for positions in _choose_words(words, tokens, ratio, generator):
            index = torch.tensor(positions, device=input_ids.device)  # (pieces,)
            labels[row, index] = input_ids[row, index]
            draw = torch.rand((), generator=generator).item()
            if draw < 0.8:
                masked[row, index] = tokenizer.mask_token_id
            elif draw < 0.9:
                pick = torch.randint(len(replaceable), (len(positions),), generator=generator)
                masked[row, index] = replaceable[pick].to(input_ids.device)
    return masked, labels


# --------------------------------------------------------------------------------------------------
# Video masking
# --------------------------------------------------------------------------------------------------


def default_num_masked(grid_hw: tuple[int, int]) -> int:
    """Clover's 10 of 49 cells scaled to the grid: ``round(10/49 * H*W)``, at least 1."""
    height, width = grid_hw
    return max(1, round(VIDEO_MASK_FRACTION * height * width))


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (), generator=generator))


def _neighbours(cell: int, height: int, width: int) -> list[int]:
    """4-connected neighbours of a flat cell index."""
    row, col = divmod(cell, width)
    result = []
    if row > 0:
        result.append(cell - width)
    if row < height - 1:
        result.append(cell + width)
    if col > 0:
        result.append(cell - 1)
    if col < width - 1:
        result.append(cell + 1)
    return result


def _block_size(remaining: int, min_block: int, generator: torch.Generator) -> int:
    """Size of the next block: uniform over sizes that leave 0 or at least ``min_block`` cells."""
    if remaining < 2 * min_block:
        return remaining
    sizes = [s for s in range(min_block, remaining + 1) if remaining - s == 0 or remaining - s >= min_block]
    return sizes[_randint(len(sizes), generator)]


def _target_rectangle(
    size: int, height: int, width: int, generator: torch.Generator
) -> set[int]:
    """A rectangle of about ``size`` cells (at least ``size`` when the grid allows), aspect ratio
    log-uniform in [0.3, 1/0.3] as in BEiT's block-wise masking, at a random place."""
    log_ratio = math.log(0.3) + float(torch.rand((), generator=generator)) * 2 * math.log(1 / 0.3)
    rows = min(height, max(1, round(math.sqrt(size * math.exp(log_ratio)))))
    cols = min(width, max(1, math.ceil(size / rows)))
    rows = min(height, max(rows, math.ceil(size / cols)))
    top, left = _randint(height - rows + 1, generator), _randint(width - cols + 1, generator)
    return {(top + r) * width + left + c for r in range(rows) for c in range(cols)}


def _grow_block(
    mask: list[bool], size: int, seeds: list[int], rectangle: set[int], height: int, width: int,
    generator: torch.Generator,
) -> int:
    """Mask up to ``size`` new cells as one 4-connected region grown from a random seed, preferring
    cells inside ``rectangle``. Returns the number of cells masked (fewer than ``size`` only when the
    region is enclosed by masked cells, and then it touches an existing block)."""
    inside = [cell for cell in seeds if cell in rectangle]
    pool = inside or seeds
    region = [pool[_randint(len(pool), generator)]]
    mask[region[0]] = True
    while len(region) < size:
        frontier = sorted({n for c in region for n in _neighbours(c, height, width) if not mask[n]})
        if not frontier:
            break
        preferred = [cell for cell in frontier if cell in rectangle] or frontier
        cell = preferred[_randint(len(preferred), generator)]
        mask[cell] = True
        region.append(cell)
    return len(region)


def _mask_one(
    height: int, width: int, num_masked: int, min_block: int, generator: torch.Generator
) -> list[bool]:
    """One sample's spatial mask with exactly ``num_masked`` cells, see :func:`mask_video_cells`."""
    mask = [False] * (height * width)
    remaining = num_masked
    while remaining > 0:
        size = _block_size(remaining, min_block, generator)
        if size < min_block and remaining < num_masked:
            # A leftover smaller than a block grows from the border of the existing mask.
            seeds = sorted(
                {n for c, m in enumerate(mask) if m for n in _neighbours(c, height, width) if not mask[n]}
            )
        else:
            seeds = [c for c, m in enumerate(mask) if not m]
        rectangle = _target_rectangle(size, height, width, generator)
        remaining -= _grow_block(mask, size, seeds, rectangle, height, width, generator)
    return mask


def mask_video_cells(
    batch_size: int,
    grid_hw: tuple[int, int] = (7, 7),
    num_masked: int | None = None,
    *,
    min_block: int = 4,
    generator: torch.Generator,
) -> torch.Tensor:
    """Block masking of the spatial cells of the video token grid.

    Each sample gets *exactly* ``num_masked`` masked cells (default :func:`default_num_masked`: 10 of
    49 at 7x7). Cells are masked in blocks: each block is grown as a 4-connected region from a random
    seed, preferring the cells of a random rectangle of the block's size (BEiT-style aspect ratios), so
    blocks are mostly rectangles. Guarantee: every 4-connected component of the mask has at least
    ``min_block`` cells (a block that cannot grow to full size, or a leftover, is attached to an
    existing block); when ``num_masked < min_block`` the mask is one connected block of
    ``num_masked`` cells.

    The mask is spatial only: the model applies the same cells to every frame.

    Returns:
        Bool tensor (batch_size, H*W), True = masked, row-major over the grid (CPU).
    """
    height, width = grid_hw
    num_masked = default_num_masked(grid_hw) if num_masked is None else num_masked
    if not 0 < num_masked <= height * width:
        raise ValueError(f"num_masked must be in [1, {height * width}] for grid {grid_hw}, got {num_masked}")
    if min_block < 1:
        raise ValueError(f"min_block must be >= 1, got {min_block}")
    rows = [_mask_one(height, width, num_masked, min_block, generator) for _ in range(batch_size)]
    return torch.tensor(rows, dtype=torch.bool).reshape(batch_size, height * width)  # (B, H*W)
