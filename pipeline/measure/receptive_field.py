"""Empirical receptive field of a backbone: which input positions influence one output position.

Backpropagate a random projection of y[:, t] to the input x (1, L, D); input position s influences
output t when the gradient at s is non-zero. A causal backbone is read at its last position
(t = L - 1, which could see all L inputs); a bidirectional one at the middle (t = L // 2).

This is the structural receptive field, not the "effective" one of Luo et al. (2016): a position
counts however small its influence, so attention, SSMs and RWKV cover every position they can see.
Structural zeros are exact (masked attention weights, convolution taps out of reach, segments not
yet read), so the default threshold is "non-zero". The copy runs in float64 because influence
through a contracting recurrence decays geometrically: at random init an LSTM's far inputs reach
y[t] at ~1e-90 of the nearest ones after 1,000 steps, which float32 (min ~1e-45) flushes to zero
but float64 (min ~1e-308) keeps. A tanh RNN or GRU can decay faster still, past float64, and then
measures as finite: `weakest` says how close to that edge the farthest influence is.

Result, as stored in eval.json under `receptive_field`:
    tokens       how many input positions influence output `position`
    span         extent from the first to the last influencing position (= tokens when contiguous;
                 larger when a pattern skips positions, e.g. Longformer's global token + window)
    left, right  influencing extent before / after `position`
    position     the output position t that was read
    measured_at  sequence length L
    full         tokens == L: every position t can see influences it
    weakest      log10 of the smallest influence counted, relative to the largest (gradient norms)
"""
from __future__ import annotations

import copy
import math

import torch

from pipeline.models.base import Backbone


def measure(backbone: Backbone, length: int, seed: int = 0, rel_threshold: float = 0.0) -> dict:
    """Receptive field of output position t at sequence length `length` (see the module docstring).

    A position counts when its gradient norm exceeds `rel_threshold` x the largest one. Raise it
    (e.g. 1e-12) for a backbone whose FFT convolutions leak rounding noise into positions it cannot
    structurally see; none does at the positions read here (causal: the last, so nothing is later).
    Works on a float64 copy in eval mode, so the given backbone (trained or not) is left untouched.
    """
    if not isinstance(backbone, Backbone):
        raise TypeError(f"receptive_field.measure needs a Backbone, got {type(backbone).__name__}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    device = next(backbone.parameters()).device
    model = copy.deepcopy(backbone).double().eval()  # eval: dropout off, so the pattern is deterministic
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(1, length, model.d_model, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    t = length - 1 if model.causal else length // 2
    projection = torch.randn(model.d_model, generator=gen, dtype=torch.float64).to(device)
    with torch.enable_grad():  # evaluate calls this after Lightning's test loop, maybe under no_grad
        (model(x)[0, t] @ projection).backward()
    influence = x.grad[0].norm(dim=-1)  # (L,)
    hit = torch.nonzero(influence > rel_threshold * influence.max()).flatten().tolist()
    if not hit:
        raise RuntimeError(f"{type(backbone).__name__}: output {t} has zero gradient w.r.t. every input; "
                           f"cannot measure a receptive field")
    first, last = hit[0], hit[-1]
    return {"tokens": len(hit), "span": last - first + 1, "left": t - first, "right": last - t,
            "position": t, "measured_at": length, "full": len(hit) == length,
            "weakest": round(math.log10(float(influence[hit].min() / influence.max())), 1)}
