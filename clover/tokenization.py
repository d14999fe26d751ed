"""The clover-tiny tokenizer: a small BERT-style WordPiece vocabulary trained with `tokenizers`.

`clover-base` uses bert-base-uncased's tokenizer. Nothing can be downloaded where the tests and the demo
checkpoint are made, so `clover-tiny` gets a vocabulary of its own, trained on the project's text: the
words of the synthetic benchmark and a list of common English words (`assets/tiny_corpus.txt`). It is
an ordinary `BertTokenizer` (lower-casing, WordPiece, [CLS] ... [SEP]), saved with the model directory.

WordPiece training breaks ties by hash order, which changes between Python processes, so the trained
vocabulary is packaged (`assets/clover-tiny-vocab.txt`) and `tiny_tokenizer()` reads it: the same ids
everywhere. Rebuild corpus and vocabulary with `python -m clover.tokenization --rebuild`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from transformers import BertTokenizer

CORPUS_PATH = Path(__file__).parent / "assets" / "tiny_corpus.txt"
VOCAB_PATH = Path(__file__).parent / "assets" / "clover-tiny-vocab.txt"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_VOCAB_SIZE = 1024


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int = TINY_VOCAB_SIZE) -> BertTokenizer:
    """Train a lower-casing BERT WordPiece tokenizer on `texts` (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    vocab = dict(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]))
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)


def tiny_tokenizer() -> BertTokenizer:
    """The clover-tiny tokenizer, from the packaged vocabulary."""
    return BertTokenizer(vocab=str(VOCAB_PATH), do_lower_case=True, model_max_length=512)


def write_tiny_vocabulary() -> None:
    """Retrain the clover-tiny vocabulary on the packaged corpus and write it to `VOCAB_PATH`."""
    lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    tokenizer = train_wordpiece_tokenizer(line for line in lines if line.strip())
    tokens = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    VOCAB_PATH.write_text("\n".join(tokens) + "\n", encoding="utf-8")


def build_corpus() -> list[str]:
    """The packaged corpus: every sentence the synthetic benchmark can write, and common words."""
    from clover.data.synthetic import benchmark_words

    words = sorted(set(benchmark_words()))
    return [" ".join(words), *_COMMON_TEXT]


# Everyday question words and a short text so that real questions tokenise into pieces, not [UNK].
_COMMON_TEXT = [
    "what who whom whose which where when why how many much does do did is are was were be been being has have had",
    "the a an this that these those it its he she they them his her their there here and or but not no yes",
    "of in on at to from with by for about into over under after before during while then than as up down left right",
    "man woman person people boy girl child dog cat car ball hand head face hair water food table door room street",
    "walk run jump sit stand dance sing play hold eat drink look turn move smile laugh talk ride throw catch open close",
    "one two three four five six seven eight nine ten first second last time times color colour shape size object",
    "black white red green blue yellow purple orange brown pink gray grey big small large little long short fast slow",
    "circle square triangle diamond star cross rectangle line dot shape shapes background video clip frame scene",
    # Every digit, letter and common punctuation mark, so that no printable ASCII text becomes [UNK].
    " ".join("0123456789abcdefghijklmnopqrstuvwxyz") + " ? . , ! ' \" : ; - ( ) / & + = % # @ * _",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="regenerate the corpus from the synthetic benchmark and retrain the vocabulary")
    args = parser.parse_args()
    if args.rebuild:
        CORPUS_PATH.write_text("\n".join(build_corpus()) + "\n", encoding="utf-8")
        write_tiny_vocabulary()
    tokenizer = tiny_tokenizer()
    sample = "What does the big red circle do 3 times ?"
    print(f"vocabulary: {len(tokenizer)} tokens; {sample!r} -> {tokenizer.tokenize(sample)}")


if __name__ == "__main__":
    main()
