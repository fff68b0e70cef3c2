"""Build, save and load Hugging Face `tokenizers` for the three kinds a task can choose.

Every kind shares the same special tokens at the same ids, so batching code can rely on
`<pad>` = 0 whatever the task:

    <pad>=0  <unk>=1  <eos>=2  <sep>=3  <cls>=4

* `word`: whitespace-split words, vocabulary from the training split only, most frequent first
  (ties alphabetical, so it is deterministic). `vocab_size` caps the number of *words*; the
  specials come on top (PTB's 10,000 words, which already include `<unk>`, give 10,004 ids).
* `bpe`: BPE trained on the training split only. NFKC (+ lowercase) normalisation; spaces become
  `▁` (Metaspace) and punctuation is split off, so decoding restores the spacing exactly.
  `vocab_size` is the total size including specials (the `tokenizers` convention).
* `byte`: the 256 bytes of the UTF-8 text, ids 5..260; no training, nothing is unknown.

Tokenizers add no special tokens by themselves: the tokenize stage appends `<eos>` where it wants.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>", "<sep>", "<cls>")
PAD, UNK, EOS, SEP, CLS = SPECIAL_TOKENS
KINDS = ("word", "bpe", "byte")


def _normalizer(lowercase: bool, nfkc: bool) -> normalizers.Normalizer | None:
    steps = ([normalizers.NFKC()] if nfkc else []) + ([normalizers.Lowercase()] if lowercase else [])
    return normalizers.Sequence(steps) if steps else None


def train_tokenizer(kind: str, texts: Iterable[str], *, vocab_size: int, min_frequency: int = 1,
                    lowercase: bool = False) -> Tokenizer:
    """Train a tokenizer of `kind` on `texts` (the training split only)."""
    if kind == "word":
        return _train_word(texts, vocab_size, min_frequency, lowercase)
    if kind == "bpe":
        return _train_bpe(texts, vocab_size, min_frequency, lowercase)
    if kind == "byte":
        return byte_tokenizer(lowercase)
    raise ValueError(f"unknown tokenizer '{kind}'; choose one of: {', '.join(KINDS)}")


def _train_word(texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.WordLevel({UNK: 1}, unk_token=UNK))
    norm = _normalizer(lowercase, nfkc=False)
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Count with the tokenizer's own normaliser and pre-tokeniser so training and encoding agree.
    counts: Counter[str] = Counter()
    for text in texts:
        text = norm.normalize_str(text) if norm is not None else text
        counts.update(word for word, _ in tok.pre_tokenizer.pre_tokenize_str(text))
    words = sorted((w for w, n in counts.items() if n >= min_frequency and w not in SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))[:vocab_size]
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    tok.model = models.WordLevel(vocab, unk_token=UNK)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    # No decoder: Tokenizer.decode joins the words with single spaces, which is the word-level text.
    return tok


def _train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = _normalizer(lowercase, nfkc=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (what the ByteLevel pre-tokenizer emits)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokenizer(lowercase: bool = False) -> Tokenizer:
    """Byte-level: specials 0..4, then byte b has id 5 + b. A BPE model without merges splits
    each pre-token into its bytes."""
    byte_chars = _bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({byte_chars[b]: len(SPECIAL_TOKENS) + b for b in range(256)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    norm = _normalizer(lowercase, nfkc=False)
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


# ----------------------------------------------------------------------------- use


def special_ids(tok: Tokenizer) -> dict[str, int]:
    ids = {name.strip("<>"): tok.token_to_id(name) for name in SPECIAL_TOKENS}
    if ids["pad"] != 0 or None in ids.values():
        raise ValueError(f"tokenizer special ids are {ids}; <pad> must be 0 and all specials present")
    return ids


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def encode_batch(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]


def decode(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Text of `ids`, dropping padding but keeping `<unk>`/`<eos>` visible."""
    return tok.decode([int(i) for i in ids if int(i) != 0], skip_special_tokens=False)


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    tok.save(str(path))


def load_tokenizer(path: Path) -> Tokenizer:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no tokenizer; run `python -m pipeline tokenize task=...` (or `dvc repro`)")
    return Tokenizer.from_file(str(path))
