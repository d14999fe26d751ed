"""Semantic text masking and block video masking, with a tiny WordPiece tokenizer made in tmp_path."""

from __future__ import annotations


import pytest
import torch
from transformers import BertTokenizerFast

import clover.masking as masking
from clover.masking import (
    STOP_WORDS,
    default_num_masked,
    group_word_pieces,
    mask_text,
    mask_video_cells,
    semantic_word_candidates,
)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a the is are up and over of in with on two his her , . "
    "man woman dog cat pick ##ing ##s ##ed red ball run jump fence ride bike street play guitar park "
    "child throw frisbee car drive road kick grass chase bird sing song cook food eat apple"
).split()
LONG_CAPTION = (
    "a man rides his bike on the street and a woman is playing the guitar in the park , "
    "two dogs chase a red ball over the fence and a child throws the frisbee ."
)


@pytest.fixture(autouse=True)
def no_spacy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests pin the stop-word path, whether or not spaCy happens to be installed."""
    monkeypatch.setattr(masking, "_load_spacy", lambda: None)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizerFast:
    vocab = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    return BertTokenizerFast(vocab=str(vocab))


def encode(tokenizer: BertTokenizerFast, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer(captions, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]  # (B, L) each


def masked_words(tokenizer: BertTokenizerFast, ids: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
    """Words of one caption (positions) whose pieces carry labels."""
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    eligible = [token not in SPECIAL for token in tokens]
    return [w for w in group_word_pieces(tokens, eligible) if (labels[w] != -100).any()]


# --------------------------------------------------------------------------------------------------
# Semantic words
# --------------------------------------------------------------------------------------------------


def test_semantic_candidates_skip_stop_words_punctuation_and_numbers() -> None:
    words = "a man is picking up the red ball , two dogs run 3 .".split()
    assert semantic_word_candidates(words) == [1, 3, 6, 7, 10, 11]
    assert semantic_word_candidates([]) == []
    assert semantic_word_candidates(["The", "OF", "and"]) == []  # case-insensitive


def test_group_word_pieces() -> None:
    tokens = ["[CLS]", "pick", "##ing", "up", "dog", "##s", "[SEP]", "[PAD]"]
    eligible = [False, True, True, True, True, True, False, False]
    assert group_word_pieces(tokens, eligible) == [[1, 2], [3], [4, 5]]


# --------------------------------------------------------------------------------------------------
# Text masking
# --------------------------------------------------------------------------------------------------


def test_about_ratio_of_semantic_words_whole_words_only(tokenizer: BertTokenizerFast) -> None:
    ids, attention = encode(tokenizer, [LONG_CAPTION])
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    words = group_word_pieces(tokens, [t not in SPECIAL for t in tokens])
    texts = ["".join(tokens[p].removeprefix("##") for p in w) for w in words]
    candidates = semantic_word_candidates(texts)
    assert len(candidates) == 16  # man rides bike street woman playing guitar park dogs chase ...
    for seed in range(20):
        masked, labels = mask_text(ids, attention, tokenizer, generator=torch.Generator().manual_seed(seed))
        chosen = masked_words(tokenizer, ids[0], labels[0])
        assert len(chosen) == round(0.3 * 16)  # 5
        for word in chosen:
            assert texts[words.index(word)].lower() not in STOP_WORDS
            assert torch.equal(labels[0, word], ids[0, word])  # every piece labelled with its id
        labelled = {p for w in chosen for p in w}
        untouched = [p for p in range(ids.shape[1]) if p not in labelled]
        assert torch.all(labels[0, untouched] == -100)
        assert torch.equal(masked[0, untouched], ids[0, untouched])


def test_multi_piece_words_are_masked_whole(tokenizer: BertTokenizerFast) -> None:
    ids, attention = encode(tokenizer, ["the dogs jumped"])  # dog ##s, jump ##ed
    for seed in range(10):
        masked, labels = mask_text(ids, attention, tokenizer, generator=torch.Generator().manual_seed(seed))
        chosen = masked_words(tokenizer, ids[0], labels[0])
        assert len(chosen) == 1 and len(chosen[0]) == 2  # round(0.3 * 2) = 1 word, both pieces
        assert torch.all(labels[0, chosen[0]] != -100)


def test_at_least_one_word_and_fallback_without_semantic_words(tokenizer: BertTokenizerFast) -> None:
    ids, attention = encode(tokenizer, ["a dog", "the is of and"])
    _, labels = mask_text(ids, attention, tokenizer, generator=torch.Generator().manual_seed(0))
    assert masked_words(tokenizer, ids[0], labels[0]) == [[2]]  # "dog", the only candidate
    assert len(masked_words(tokenizer, ids[1], labels[1])) == 1  # fallback: any word


def test_special_tokens_and_padding_never_masked(tokenizer: BertTokenizerFast) -> None:
    ids, attention = encode(tokenizer, ["dog", LONG_CAPTION, "[MASK] cat"])
    special = torch.tensor(tokenizer.all_special_ids)
    for seed in range(10):
        masked, labels = mask_text(ids, attention, tokenizer, ratio=1.0, generator=torch.Generator().manual_seed(seed))
        protected = torch.isin(ids, special) | (attention == 0)  # (B, L)
        assert torch.all(labels[protected] == -100)
        assert torch.equal(masked[protected], ids[protected])


def test_replacement_rule_80_10_10(tokenizer: BertTokenizerFast) -> None:
    ids, attention = encode(tokenizer, [LONG_CAPTION] * 200)
    masked, labels = mask_text(ids, attention, tokenizer, generator=torch.Generator().manual_seed(0))
    special = set(tokenizer.all_special_ids)
    counts = {"mask": 0, "random": 0, "kept": 0}
    for row in range(ids.shape[0]):
        for word in masked_words(tokenizer, ids[row], labels[row]):
            new, old = masked[row, word], ids[row, word]
            if torch.all(new == tokenizer.mask_token_id):
                counts["mask"] += 1
            elif torch.equal(new, old):
                counts["kept"] += 1  # includes random draws that hit the original id (~1/40)
            else:
                counts["random"] += 1
                assert not set(new.tolist()) & special
    total = sum(counts.values())
    assert total == 200 * 5
    assert counts["mask"] / total == pytest.approx(0.8, abs=0.05)
    assert counts["random"] / total == pytest.approx(0.1, abs=0.04)
    assert counts["kept"] / total == pytest.approx(0.1, abs=0.04)


def test_text_masking_is_deterministic(tokenizer: BertTokenizerFast) -> None:
    ids, attention = encode(tokenizer, [LONG_CAPTION, "a dog"])
    first = mask_text(ids, attention, tokenizer, generator=torch.Generator().manual_seed(7))
    second = mask_text(ids, attention, tokenizer, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


# --------------------------------------------------------------------------------------------------
# Video masking
# --------------------------------------------------------------------------------------------------


def components(cells: torch.Tensor, height: int, width: int) -> list[int]:
    """Sizes of the 4-connected components of a flat bool mask."""
    grid = cells.view(height, width).tolist()
    seen, sizes = set(), []
    for start in ((r, c) for r in range(height) for c in range(width) if grid[r][c]):
        if start in seen:
            continue
        stack, size = [start], 0
        seen.add(start)
        while stack:
            r, c = stack.pop()
            size += 1
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < height and 0 <= nc < width and grid[nr][nc] and (nr, nc) not in seen:
                    seen.add((nr, nc))
                    stack.append((nr, nc))
        sizes.append(size)
    return sizes


def test_default_count_scales_with_grid() -> None:
    assert default_num_masked((7, 7)) == 10
    assert default_num_masked((14, 14)) == 40
    assert default_num_masked((2, 2)) == 1


@pytest.mark.parametrize(
    ("grid", "num_masked", "min_block"),
    [((7, 7), None, 4), ((7, 7), 5, 4), ((7, 7), 30, 4), ((4, 6), 9, 3), ((14, 14), None, 4)],
)
def test_video_mask_exact_count_in_blocks(grid: tuple[int, int], num_masked: int | None, min_block: int) -> None:
    height, width = grid
    mask = mask_video_cells(100, grid, num_masked, min_block=min_block, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (100, height * width) and mask.dtype == torch.bool
    expected = default_num_masked(grid) if num_masked is None else num_masked
    assert torch.all(mask.sum(dim=1) == expected)
    for row in mask:
        assert min(components(row, height, width)) >= min_block
    assert len({tuple(row.tolist()) for row in mask}) > 50  # masks vary across the batch


def test_fewer_cells_than_a_block_form_one_block() -> None:
    mask = mask_video_cells(50, (7, 7), 3, min_block=4, generator=torch.Generator().manual_seed(0))
    for row in mask:
        assert components(row, 7, 7) == [3]


def test_video_mask_deterministic_and_validated() -> None:
    first = mask_video_cells(8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, mask_video_cells(8, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="num_masked"):
        mask_video_cells(1, (2, 2), 5, generator=torch.Generator())
