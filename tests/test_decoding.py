"""Beam search's guard against degenerate repetition (n-gram blocking) on a model that loves loops."""
import torch

from pipeline.tasks.decoding import beam_search, repeat_bans

V, EOS = 6, 5


def looping_model(tokens: torch.Tensor, state):
    """Prefers token (t + 1) % 3 after t (0 1 2 0 1 2 ...), then the tokens 3 and 4, EOS last of all."""
    logits = torch.full((tokens.shape[0], V), -8.0)
    logits[torch.arange(len(tokens)), (tokens % 3 + 1) % 3] = 0.0
    logits[:, 3], logits[:, 4], logits[:, EOS] = -2.0, -3.0, -6.0
    return torch.log_softmax(logits, -1), state


def decode(beam: int, no_repeat_ngram: int) -> list[int]:
    prefix = torch.tensor([[0]])
    return beam_search(looping_model, lambda st, index: st, None, prefix, torch.tensor([1]), EOS, beam,
                       torch.tensor([12]), no_repeat_ngram=no_repeat_ngram)[0]


def ngrams(hyp: list[int], n: int) -> list[tuple]:
    return [tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1)]


def test_repeat_bans_name_the_tokens_that_would_repeat_an_ngram():
    assert repeat_bans([1, 2, 3, 1, 2], 3) == [3]
    assert repeat_bans([1, 2, 3, 1, 2], 2) == [3]  # after 2 came 3 before
    assert repeat_bans([1, 2, 3], 3) == [] and repeat_bans([], 2) == [] and repeat_bans([1, 2], 0) == []


def test_without_the_guard_the_model_loops_and_with_it_no_ngram_repeats():
    for beam in (1, 3):
        looped = decode(beam, 0)
        assert len(looped) == 12 and len(set(ngrams(looped, 2))) < len(ngrams(looped, 2))  # 1 2 0 1 2 0 ...
        guarded = decode(beam, 2)
        assert len(set(ngrams(guarded, 2))) == len(ngrams(guarded, 2)), guarded
        assert guarded[:3] == [1, 2, 0]  # the guard leaves the first, unrepeated steps alone
