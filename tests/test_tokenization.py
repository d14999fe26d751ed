"""The clover-tiny tokenizer: stable ids across processes, and every benchmark word a whole token."""

import subprocess
import sys

from clover.data.synthetic import benchmark_words
from clover.tokenization import SPECIAL_TOKENS, tiny_tokenizer, train_wordpiece_tokenizer


def test_ids_are_the_same_in_every_process():
    code = "from clover.tokenization import tiny_tokenizer; print(tiny_tokenizer()('what moves left').input_ids)"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert outputs == {f"{tiny_tokenizer()('what moves left').input_ids}\n"}


def test_benchmark_words_are_single_tokens_and_nothing_printable_is_unknown():
    tokenizer = tiny_tokenizer()
    for word in benchmark_words():
        assert tokenizer.tokenize(word) == [word], word
    pieces = tokenizer.tokenize("Zebras jump 7 times!")
    assert "[UNK]" not in pieces and pieces[-1] == "!"


def test_special_tokens_and_round_trip(tmp_path):
    tokenizer = tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3, 4]
    assert tokenizer.pad_token_id == 0 and tokenizer.mask_token_id == 4
    encoded = tokenizer("what color is the star ?").input_ids
    assert encoded[0] == tokenizer.cls_token_id and encoded[-1] == tokenizer.sep_token_id
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path)("what color is the star ?").input_ids == encoded


def test_training_covers_the_texts():
    tokenizer = train_wordpiece_tokenizer(["a red circle rotates", "a blue square blinks"], vocab_size=200)
    assert tokenizer.tokenize("red square blinks") == ["red", "square", "blinks"]
