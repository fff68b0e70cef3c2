"""Padding ragged sequences into a batch: the one helper every collate function shares."""
from __future__ import annotations

import torch


def pad_right(seqs: list[torch.Tensor], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(x) for x in seqs))
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for row, x in enumerate(seqs):
        out[row, : len(x)] = x
        mask[row, : len(x)] = True
    return out, mask
