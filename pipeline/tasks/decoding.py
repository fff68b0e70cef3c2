"""Batched greedy and beam-search decoding for every translation model.

One loop serves both model families. Each example has a *forced prefix* (decoder-only: source +
separator; encoder-decoder: the separator alone) fed token by token through the model's O(1)
`step` (RNN state, KV cache, SSM state); generation for an example starts once its prefix is in,
so sources of different lengths share a batch without ever feeding a pad token. Backbones without
a recurrent form re-run `forward` on the growing prefix (correct, O(n^2)).
Beam scores are length-normalised log-probabilities (score / length^alpha, Wu et al. 2016). Against
degenerate loops ("der Kinder der Kinder ..."), a hypothesis may not repeat one of its own n-grams
(`no_repeat_ngram`, the n-gram blocking of Paulus et al. 2018; 0 turns it off).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]  # tokens (N,) -> log-probs (N, V)
ReorderFn = Callable[[Any, torch.Tensor], Any]


def repeat_bans(hyp: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram `hyp` already holds (its last n-1 tokens seen before)."""
    if n <= 0 or len(hyp) < n - 1:
        return []
    if n == 1:
        return list(set(hyp))
    tail = hyp[len(hyp) - n + 1:]
    return [hyp[i + n - 1] for i in range(len(hyp) - n + 1) if hyp[i:i + n - 1] == tail]


@torch.no_grad()
def beam_search(step: StepFn, reorder: ReorderFn, state: Any, prefix: torch.Tensor, prefix_len: torch.Tensor,
                eos: int, beam: int, max_new: torch.Tensor, alpha: float = 0.6, no_repeat_ngram: int = 0) -> list[list[int]]:
    """prefix: (B, P) forced tokens (right-padded), prefix_len: (B,), max_new: (B,) length limits.
    `state` is for B rows; it is expanded to B*beam here. Returns the best hypothesis per example."""
    B, device = prefix.shape[0], prefix.device
    rows = torch.arange(B, device=device).repeat_interleave(beam)
    state = reorder(state, rows)
    scores = torch.full((B, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # identical beams at the start: only the first may expand
    tokens: list[list[list[int]]] = [[[] for _ in range(beam)] for _ in range(B)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    last = torch.zeros(B, beam, dtype=torch.long, device=device)
    horizon = int((prefix_len + max_new).max())
    for t in range(horizon):
        forced = t < prefix_len
        feed = torch.where(forced[:, None], prefix[:, min(t, prefix.shape[1] - 1), None].expand(B, beam), last)
        logp, state = step(feed.reshape(-1), state)
        logp = logp.view(B, beam, -1)
        generating = [b for b in range(B) if t >= int(prefix_len[b]) - 1 and not done[b]]
        if not generating:
            continue
        order = torch.arange(B * beam, device=device).view(B, beam).clone()
        for b in generating:
            n_out = t - int(prefix_len[b]) + 1  # tokens this example has generated before this one
            lp = logp[b]
            bans = [(k, repeat_bans(tokens[b][k], no_repeat_ngram)) for k in range(beam)] if no_repeat_ngram else []
            if any(banned for _, banned in bans):
                lp = lp.clone()
                for k, banned in bans:
                    lp[k, banned] = float("-inf")
            cand = (scores[b, :, None] + lp).view(-1)
            top, idx = cand.topk(min(2 * beam, cand.numel()))
            alive = []
            for score, flat in zip(top.tolist(), idx.tolist()):
                k, token = divmod(flat, logp.shape[-1])
                if score == float("-inf"):
                    break
                if token == eos or n_out + 1 >= int(max_new[b]):
                    hyp = tokens[b][k] + ([] if token == eos else [token])
                    finished[b].append((score / max(len(hyp) + 1, 1) ** alpha, hyp))
                else:
                    alive.append((score, k, token))
                if len(alive) == beam:
                    break
            best_alive = alive[0][0] / (n_out + 2) ** alpha if alive else float("-inf")
            if len(finished[b]) >= beam or not alive or (finished[b] and max(f[0] for f in finished[b]) >= best_alive):
                done[b] = True
                continue
            alive += [(float("-inf"), alive[0][1], alive[0][2])] * (beam - len(alive))
            tokens[b] = [tokens[b][k] + [token] for _, k, token in alive]
            scores[b] = torch.tensor([s for s, _, _ in alive], device=device)
            last[b] = torch.tensor([token for _, _, token in alive], device=device)
            order[b] = b * beam + torch.tensor([k for _, k, _ in alive], device=device)
        state = reorder(state, order.view(-1))
        if all(done):
            break
    out = []
    for b in range(B):
        if finished[b]:
            out.append(max(finished[b], key=lambda f: f[0])[1])
        else:
            out.append(tokens[b][int(scores[b].argmax())])
    return out
