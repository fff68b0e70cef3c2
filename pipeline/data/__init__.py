"""Corpora, tokenizers, the on-disk split format and the data module."""
