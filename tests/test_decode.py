"""Decoders against references: brute-force CTC sums, torch's CTC loss, exhaustive search, greedy, per-item calls."""

from __future__ import annotations

import itertools
import math
import zlib

import pytest
import torch
import torch.nn.functional as F

from ceasr.config import DecodeConfig
from ceasr.decode import (
    DECODERS,
    CTCPrefixScorer,
    attention_beam_search,
    attention_nbest,
    ctc_greedy,
    ctc_prefix_beam_search,
    ctc_prefix_beam_search_batch,
    decode,
)
from ceasr.decode import PRUNE_LOG_PROB
from ceasr.decode.ctc import greedy_tokens
from ceasr.decode.fusion import Fusion
from ceasr.errors import CeasrError, ConfigError

BLANK, UNK, EOS = 0, 1, 2


def peaked_log_probs(T: int, V: int, seed: int) -> torch.Tensor:
    """(T, V) log-probs whose argmax holds 0.9-0.99 of each frame's mass (blank half of the time)."""
    g = torch.Generator().manual_seed(seed)
    rest = torch.rand(T, V, generator=g, dtype=torch.float64)
    top = torch.where(torch.rand(T, generator=g) < 0.5, 0, torch.randint(1, V, (T,), generator=g))
    rest[torch.arange(T), top] = 0.0
    peak = 0.9 + 0.09 * torch.rand(T, generator=g, dtype=torch.float64)
    probs = rest / rest.sum(-1, keepdim=True) * (1 - peak)[:, None]
    probs[torch.arange(T), top] = peak
    return probs.log()


def random_log_probs(T: int, V: int, seed: int, scale: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(T, V, generator=g, dtype=torch.float64)).log_softmax(-1)


def collapse(path) -> tuple[int, ...]:
    out, prev = [], None
    for p in path:
        if p != prev and p != BLANK:
            out.append(p)
        prev = p
    return tuple(out)


def brute_force_label_probs(lp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """log P(label sequence) for every sequence, by summing over all V^T alignments."""
    T, V = lp.shape
    sums: dict[tuple[int, ...], list[float]] = {}
    rows = lp.tolist()
    for path in itertools.product(range(V), repeat=T):
        sums.setdefault(collapse(path), []).append(sum(rows[t][p] for t, p in enumerate(path)))
    return {k: torch.logsumexp(torch.tensor(v, dtype=torch.float64), 0).item() for k, v in sums.items()}


def test_greedy_matches_hand_collapse():
    # Frames: 3 3 blank 3 4 4 -> "3 3 4"; the first 3's score is the run's peak (-0.1), not its first frame.
    lp = torch.full((6, 5), -9.0)
    for t, (tok, v) in enumerate([(3, -0.5), (3, -0.1), (0, -0.2), (3, -0.3), (4, -0.05), (4, -0.4)]):
        lp[t, tok] = v
    (hyp,) = ctc_greedy(lp[None], torch.tensor([6]))
    assert hyp.tokens == greedy_tokens(lp) == (3, 3, 4)
    assert greedy_tokens(lp[:0]) == () and greedy_tokens(lp[2:3]) == ()  # no frames; a blank alone
    assert hyp.token_scores == pytest.approx((-0.1, -0.3, -0.05))
    assert hyp.score == pytest.approx(-0.5 - 0.1 - 0.2 - 0.3 - 0.05 - 0.4)


def test_greedy_batch_equals_per_utterance_and_ignores_padding():
    lens = [7, 3, 0, 5]
    batch = torch.randn(len(lens), 7, 6).log_softmax(-1)  # padded frames hold real-looking garbage
    hyps = ctc_greedy(batch, torch.tensor(lens))
    for b, n in enumerate(lens):
        (single,) = ctc_greedy(batch[b : b + 1, :n], torch.tensor([n]))
        assert hyps[b].tokens == single.tokens == collapse(batch[b, :n].argmax(-1).tolist())
        assert greedy_tokens(batch[b, :n]) == single.tokens
        assert hyps[b].score == pytest.approx(single.score)
        assert hyps[b].token_scores == pytest.approx(single.token_scores)
    assert hyps[2].tokens == () and hyps[2].score == 0.0


@pytest.mark.parametrize("pruned", [False, True])
def test_prefix_beam_of_one_equals_greedy_on_peaked_frames(pruned):
    # In general beam-1 prefix search and greedy can differ: the prefix search ranks prefixes by the sum
    # over alignments, greedy follows the single best path. When each frame's argmax holds >= 0.9 of its
    # mass, the greedy continuation always gets more than 0.8 of the prefix's probability and any other
    # continuation less than 0.2, so both pick the same prefix frame by frame.
    options = {"top_k": 2, "min_log_prob": math.log(1e-4)} if pruned else {}
    for seed in range(60):
        T = 5 + seed % 30
        lp = peaked_log_probs(T, 7, seed)
        (greedy,) = ctc_greedy(lp[None], torch.tensor([T]))
        best = ctc_prefix_beam_search(lp, beam_size=1, **options)[0]
        assert best.tokens == greedy.tokens, seed
        assert best.token_scores == pytest.approx(greedy.token_scores)


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_scores_are_exact_label_probabilities(seed):
    lp = random_log_probs(5, 4, seed)
    exact = brute_force_label_probs(lp)
    # 364 prefixes of length <= 5 over 3 labels exist, so a beam of 400 never prunes: every sequence is
    # present with its exact probability, and the best is the true argmax.
    nbest = ctc_prefix_beam_search(lp, beam_size=400)
    assert {h.tokens for h in nbest} == set(exact)
    for h in nbest:
        assert h.score == pytest.approx(exact[h.tokens], abs=1e-9)
    assert nbest[0].tokens == max(exact, key=exact.get)
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)


def test_prefix_beam_small_beam_finds_argmax_on_peaked_input():
    for seed in range(5):
        lp = peaked_log_probs(5, 4, 100 + seed)
        exact = brute_force_label_probs(lp)
        best = ctc_prefix_beam_search(lp, beam_size=4)[0]
        assert best.tokens == max(exact, key=exact.get)
        # A small beam drops some alignments' mass, so its score can only fall short of the exact sum.
        assert exact[best.tokens] - 0.05 < best.score <= exact[best.tokens] + 1e-12


def test_prefix_beam_batch_equals_per_utterance():
    lens = [20, 9, 0, 14]
    batch = torch.randn(len(lens), 20, 6).log_softmax(-1)
    options = {"top_k": 3, "min_log_prob": math.log(1e-4)}
    nbests = ctc_prefix_beam_search_batch(batch, torch.tensor(lens), 3, **options)
    for b, n in enumerate(lens):
        assert nbests[b] == ctc_prefix_beam_search(batch[b, :n], 3, **options)
    assert nbests[2][0].tokens == () and nbests[2][0].score == 0.0


def test_prefix_beam_blank_skip_keeps_repeats_apart():
    # "3 blank 3" must stay two tokens even when the blank frame is skipped as blank-only.
    lp = torch.full((3, 4), math.log(1e-5), dtype=torch.float64)
    lp[0, 3] = lp[2, 3] = lp[1, 0] = math.log(1 - 3e-5)
    best = ctc_prefix_beam_search(lp, beam_size=2, blank_skip=math.log(0.999))[0]
    assert best.tokens == (3, 3)


def ctc_loss_score(lp: torch.Tensor, tokens: list[int]) -> float:
    loss = F.ctc_loss(
        lp[:, None], torch.tensor([tokens], dtype=torch.long).reshape(1, -1), torch.tensor([lp.shape[0]]),
        torch.tensor([len(tokens)]), blank=BLANK, reduction="sum",
    )
    return -loss.item()


def test_prefix_scorer_full_sequence_equals_ctc_loss():
    lp = random_log_probs(15, 7, seed=3)
    scorer = CTCPrefixScorer(lp)
    for tokens in [[3, 4, 4, 5], [3], [], [4, 4, 4], [1, 3, 4, 5, 3, 4, 6, 6], [5] * 8]:
        assert scorer.sequence_score(tokens) == pytest.approx(ctc_loss_score(lp, tokens), abs=1e-9)
    # 9 repeats need 17 frames: impossible in 15, as for the CTC loss.
    assert scorer.sequence_score([5] * 9) == ctc_loss_score(lp, [5] * 9) == float("-inf")


def test_prefix_scorer_prefix_scores_vs_brute_force():
    lp = random_log_probs(5, 4, seed=7)
    exact = brute_force_label_probs(lp)

    def prefix_prob(h):  # log of the total probability of every label sequence starting with h
        vals = [v for k, v in exact.items() if k[: len(h)] == h]
        return torch.logsumexp(torch.tensor(vals, dtype=torch.float64), 0).item() if vals else float("-inf")

    scorer = CTCPrefixScorer(lp)
    cands = torch.tensor([[1, 2, 3]])  # every non-blank token at once (K=3)
    for h in [(), (3,), (3, 3), (1, 3), (3, 1, 3)]:
        state = scorer.initial_state()
        for tok in h:
            psi, r = scorer.score(state, torch.tensor([[tok]]))
            state = scorer.select(psi, r, torch.tensor([0]), torch.tensor([0]), torch.tensor([tok]))
        assert state.psi.item() == pytest.approx(prefix_prob(h), abs=1e-9)
        psi, _ = scorer.score(state, cands)
        for k, c in enumerate(cands[0].tolist()):
            assert psi[0, k].item() == pytest.approx(prefix_prob(h + (c,)), abs=1e-9)
        assert scorer.eos_score(state).item() == pytest.approx(exact.get(h, float("-inf")), abs=1e-9)


class TableDecoder:
    """A causal stand-in decoder: next-token logits are a fixed random function of the whole prefix, plus the
    mean of the utterance's valid encoder frames (so batching and padding mistakes show)."""

    def __init__(self, vocab: int, seed: int = 0):
        self.vocab, self.seed = vocab, seed

    def prefix_logits(self, prefix: tuple[int, ...]) -> torch.Tensor:
        key = zlib.crc32(repr((self.seed, prefix)).encode())
        return 2.0 * torch.randn(self.vocab, generator=torch.Generator().manual_seed(key), dtype=torch.float64)

    def __call__(self, enc, enc_lens, ys_in, ys_in_lens):
        N, L = ys_in.shape
        mask = (torch.arange(enc.shape[1])[None, :] < enc_lens[:, None]).unsqueeze(-1)  # (N, T, 1)
        bias = (enc * mask).sum(1) / enc_lens.clamp_min(1)[:, None]  # (N, V)
        out = torch.zeros(N, L, self.vocab, dtype=torch.float64)
        for n in range(N):
            for i in range(L):  # a memory of batch 1 is shared by every row, as TransformerDecoder does
                out[n, i] = self.prefix_logits(tuple(ys_in[n, : i + 1].tolist())) + bias[n if len(bias) > 1 else 0]
        return out


class StandInModel:
    """encode() is the identity, so feats are CTC logits (F = D = V); ctc_log_probs() is a log-softmax."""

    sos_id = eos_id = EOS
    blank_id = BLANK

    def __init__(self, vocab: int = 6, decoder: bool = True, seed: int = 0):
        self.decoder = TableDecoder(vocab, seed) if decoder else None
        self.saw_inference_mode = None

    def encode(self, feats, feat_lens):
        self.saw_inference_mode = torch.is_inference_mode_enabled()
        return feats, feat_lens

    def ctc_log_probs(self, enc):
        return enc.log_softmax(-1)


def exhaustive(model, enc, ctc_weight: float, max_len: int, length_penalty: float = 0.0, tokens=(1, 3, 4, 5)):
    """Every output of up to max_len tokens, scored as the search defines it; sorted best first."""
    T = enc.shape[1]
    bias = enc[0].mean(0) if T else torch.zeros(enc.shape[-1], dtype=enc.dtype)
    lp = enc[0].log_softmax(-1)
    scored = []
    for n in range(max_len + 1):
        for seq in itertools.product(tokens, repeat=n):
            att = 0.0
            for i, tok in enumerate(seq + (EOS,)):
                logits = model.decoder.prefix_logits((EOS,) + seq[:i]) + bias
                att += logits.log_softmax(-1)[tok].item()
            ctc = ctc_loss_score(lp, list(seq)) if ctc_weight > 0 else 0.0
            score = (1 - ctc_weight) * att + ctc_weight * ctc + length_penalty * n
            scored.append((score, seq))
    return sorted(scored, reverse=True)


@pytest.mark.parametrize(
    "ctc_weight,length_penalty,seed", [(0.0, 0.0, 0), (0.0, 0.0, 1), (0.0, 1.5, 2), (0.4, 0.0, 3), (0.7, 0.5, 4)]
)
def test_attention_large_beam_equals_exhaustive_search(ctc_weight, length_penalty, seed):
    model = StandInModel(seed=seed)
    enc = torch.randn(1, 4, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = exhaustive(model, enc, ctc_weight, max_len=4, length_penalty=length_penalty)
    # 4^4 = 256 live hypotheses at most, 5 finite candidates each: a beam of 400 never prunes.
    nbest = attention_nbest(
        model, enc, torch.tensor([4]), beam_size=400, ctc_weight=ctc_weight, length_penalty=length_penalty
    )[0]
    assert nbest[0].tokens == ref[0][1]
    assert nbest[0].score == pytest.approx(ref[0][0], abs=1e-9)
    assert [h.tokens for h in nbest[:5]] == [seq for _, seq in ref[:5]]


def test_attention_small_beam_scores_are_consistent():
    model = StandInModel(seed=5)
    enc = torch.randn(1, 6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = dict((seq, s) for s, seq in exhaustive(model, enc, 0.3, max_len=3))
    nbest = attention_nbest(model, enc, torch.tensor([6]), beam_size=3, ctc_weight=0.3, max_len_ratio=0.5)[0]
    assert 1 <= len(nbest) <= 3
    for h in nbest:
        assert len(h.tokens) <= 3
        assert h.score == pytest.approx(ref[h.tokens], abs=1e-9)
        assert len(h.token_scores) == len(h.tokens)
        assert sum(h.token_scores) >= h.score - 1e-9  # the eos step only lowers the total


def test_attention_ctc_weight_one_follows_ctc():
    # Peaked frames spelling "3 4 4 5" (a blank separates the repeat); the decoder's table disagrees.
    path = [3, 3, 0, 4, 0, 4, 5, 5, 0]
    lp = torch.full((len(path), 6), math.log(0.01), dtype=torch.float64)
    lp[torch.arange(len(path)), path] = math.log(0.95)
    enc = lp[None]
    model = StandInModel(seed=9)
    (hyp,) = attention_beam_search(model, enc, torch.tensor([len(path)]), beam_size=4, ctc_weight=1.0)
    assert hyp.tokens == (3, 4, 4, 5) == ctc_greedy(enc, torch.tensor([len(path)]))[0].tokens
    assert hyp.score == pytest.approx(ctc_loss_score(enc[0].log_softmax(-1), [3, 4, 4, 5]), abs=1e-9)
    (att_only,) = attention_beam_search(model, enc, torch.tensor([len(path)]), beam_size=4, ctc_weight=0.0)
    assert att_only.tokens != hyp.tokens


def test_attention_ctc_weight_one_large_beam_is_ctc_argmax():
    lp = random_log_probs(5, 4, seed=11)
    exact = brute_force_label_probs(lp)
    best = max((k for k in exact if EOS not in k), key=exact.get)  # eos is never an output label
    model = StandInModel(vocab=4, seed=11)
    (hyp,) = attention_beam_search(model, lp[None], torch.tensor([5]), beam_size=100, ctc_weight=1.0)
    assert hyp.tokens == best
    assert hyp.score == pytest.approx(exact[best], abs=1e-9)


def test_attention_batch_equals_per_utterance():
    model = StandInModel(seed=2)
    lens = [7, 3, 0, 5]
    enc = torch.randn(4, 7, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    batched = attention_nbest(model, enc, torch.tensor(lens), beam_size=3, ctc_weight=0.5)
    for b, n in enumerate(lens):
        assert batched[b] == attention_nbest(model, enc[b : b + 1, :n], torch.tensor([n]), 3, 0.5)[0]
    assert batched[2][0].tokens == ()


def test_attention_needs_a_decoder():
    model = StandInModel(decoder=False)
    with pytest.raises(CeasrError, match="attention decoder"):
        attention_beam_search(model, torch.zeros(1, 3, 6), torch.tensor([3]))


def padded_batch(lens, V=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = 3 * torch.randn(len(lens), max(lens), V, generator=g, dtype=torch.float64)
    return feats, torch.tensor(lens)


@pytest.mark.parametrize("method", ["ctc_greedy", "ctc_prefix_beam", "attention", "attention_rescoring"])
def test_decode_batch_equals_per_utterance(method):
    model = StandInModel(seed=1)
    feats, lens = padded_batch([9, 4, 6])
    cfg = DecodeConfig(method=method, beam_size=3, ctc_weight=0.3)
    hyps = decode(model, feats, lens, cfg)
    assert model.saw_inference_mode is True
    assert len(hyps) == 3
    for b, n in enumerate(lens.tolist()):
        (single,) = decode(model, feats[b : b + 1, :n], lens[b : b + 1], cfg)
        assert hyps[b].tokens == single.tokens
        assert hyps[b].score == pytest.approx(single.score)


@pytest.mark.parametrize("ctc_weight,length_penalty,seed", [
    (0.3, 0.0, 0), (0.5, 0.0, 1), (0.0, 0.0, 2), (1.0, 0.0, 3), (0.6, 0.5, 4), (0.6, 2.0, 5),
])
def test_attention_rescoring_ranks_the_prefix_beam_nbest_by_the_joint_score(ctc_weight, length_penalty, seed):
    """Each n-best hypothesis of the prefix beam, rescored by hand: brute-force CTC likelihood and the
    decoder's log-probabilities of its tokens and eos, plus the length bonus per token."""
    model = StandInModel(seed=seed)
    feats, lens = padded_batch([7, 5], seed=seed)
    cfg = DecodeConfig(method="attention_rescoring", beam_size=5, ctc_weight=ctc_weight,
                       length_penalty=length_penalty)
    got = decode(model, feats, lens, cfg)
    if ctc_weight == 1.0:  # nothing to rescore: the prefix beam's answer
        assert got == decode(model, feats, lens, DecodeConfig(method="ctc_prefix_beam", beam_size=5))
        return
    for b, n in enumerate(lens.tolist()):
        enc = feats[b, :n]
        lp, bias = enc.log_softmax(-1), enc.mean(0)
        # the n-best of a prefix beam whose prefixes carry the length bonus too (tested on its own elsewhere)
        nbest = ctc_prefix_beam_search_batch(feats[b : b + 1, :n].log_softmax(-1), lens[b : b + 1], 5, top_k=5,
                                             min_log_prob=PRUNE_LOG_PROB,
                                             fusion=Fusion((), length_bonus=length_penalty))[0]
        want = []
        for h in nbest:
            seq = tuple(h.tokens)
            att = sum(float((model.decoder.prefix_logits((EOS,) + seq[:i]) + bias).log_softmax(-1)[tok])
                      for i, tok in enumerate(seq + (EOS,)))
            want.append(((1 - ctc_weight) * att + ctc_weight * ctc_loss_score(lp, list(seq))
                         + length_penalty * len(seq), seq))
        best_score, best_seq = max(want)
        assert got[b].tokens == best_seq
        assert got[b].score == pytest.approx(best_score, abs=1e-6)


def test_decode_dispatches_through_the_registry():
    assert set(DECODERS) == {"ctc_greedy", "ctc_prefix_beam", "attention", "attention_rescoring"}
    model = StandInModel(seed=4)
    feats, lens = padded_batch([8, 5], seed=4)
    lp = feats.log_softmax(-1)
    greedy = decode(model, feats, lens, DecodeConfig(method="ctc_greedy"))
    assert [h.tokens for h in greedy] == [h.tokens for h in ctc_greedy(lp, lens)]
    prefix = decode(model, feats, lens, DecodeConfig(method="ctc_prefix_beam", beam_size=4))
    assert [h.tokens for h in prefix] == [n[0].tokens for n in ctc_prefix_beam_search_batch(lp, lens, 4)]
    att = decode(model, feats, lens, DecodeConfig(method="attention", beam_size=4, ctc_weight=0.5))
    assert att == attention_beam_search(model, feats, lens, beam_size=4, ctc_weight=0.5)


def test_decode_rejects_bad_config():
    model = StandInModel()
    feats, lens = padded_batch([3])
    with pytest.raises(ConfigError, match="known: ctc_greedy, ctc_prefix_beam, attention, attention_rescoring"):
        decode(model, feats, lens, DecodeConfig(method="viterbi"))
    with pytest.raises(ConfigError, match="beam_size"):
        decode(model, feats, lens, DecodeConfig(method="ctc_prefix_beam", beam_size=0))
    with pytest.raises(ConfigError, match="ctc_weight"):
        decode(model, feats, lens, DecodeConfig(method="attention", ctc_weight=1.5))
    for method in ("attention", "attention_rescoring"):
        with pytest.raises(CeasrError, match="CTC-only"):
            decode(StandInModel(decoder=False), feats, lens, DecodeConfig(method=method))
