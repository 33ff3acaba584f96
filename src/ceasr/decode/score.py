"""Exact scores of given token sequences for one utterance, batched over N sequences: the CTC log-likelihood
(minus the CTC loss: log P(y | x) summed over every alignment) and the attention log-probability (y
teacher-forced, followed by eos). Used by attention rescoring (:mod:`ceasr.decode`) and by command
recognition (:mod:`ceasr.commands.score`), and their joint score ``(1 - w) * attention + w * CTC``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_sequences(seqs: list[tuple[int, ...]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences -> (N, L) long padded with ``pad`` and lengths (N,). L is at least 1."""
    width = max([1, *(len(s) for s in seqs)])
    rows = [[*s, *[pad] * (width - len(s))] for s in seqs]  # one tensor call: this runs per utterance
    out = torch.tensor(rows, dtype=torch.long) if rows else torch.full((0, 1), pad, dtype=torch.long)
    return out, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def ctc_scores(log_probs: torch.Tensor, seqs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """log P(seq_i | x) for each of N sequences: ``log_probs`` (T, V) of one utterance, ``seqs`` (N, L) padded,
    ``lens`` (N,) -> (N,) float64; -inf for a sequence the T frames cannot hold."""
    T, N = log_probs.shape[0], seqs.shape[0]
    lp = log_probs.detach().to(torch.float64)[:, None, :].expand(T, N, -1)  # (T, N, V)
    targets = seqs.clamp_min(0)  # padding is never read (lens), but must be a valid index
    loss = F.ctc_loss(lp, targets, torch.full((N,), T, dtype=torch.long), lens, blank=blank,
                      reduction="none", zero_infinity=False)
    return -loss


def teacher_forcing(seqs: torch.Tensor, lens: torch.Tensor, sos: int, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded sequences (N, L) with lengths (N,) -> the decoder's inputs ``sos + seq`` and targets ``seq + eos``,
    both (N, L + 1); padding becomes valid ids (never scored)."""
    N = seqs.shape[0]
    ys_in = torch.cat([torch.full((N, 1), sos, dtype=torch.long), seqs.clamp_min(0)], dim=1)  # (N, L + 1)
    ys_out = torch.cat([seqs.clamp_min(0), torch.full((N, 1), eos, dtype=torch.long)], dim=1)
    ys_out[torch.arange(N), lens] = eos  # each sequence's own end
    return ys_in, ys_out


def attention_scores(
    decoder, memory: torch.Tensor, seqs: torch.Tensor, lens: torch.Tensor, sos: int, eos: int,
    text: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """log p_att(seq_i + eos | x) for N sequences: ``memory`` (1, T', D) of one utterance, ``seqs`` (N, L)
    padded, ``lens`` (N,) -> (N,) float64. ``text``: the decoder's ``text_states`` of these sequences'
    inputs (:func:`teacher_forcing`), when a fixed set of texts has them computed once.

    One decoder call on all N teacher-forced inputs, the memory shared (its keys and values projected once):
    on a busy CPU that is ~3x faster than stepping the cached decoder L times, whose many small ops wait on
    descheduled threads.
    """
    L = seqs.shape[1]
    ys_in, ys_out = teacher_forcing(seqs, lens, sos, eos)
    ys_in, ys_out = ys_in.to(memory.device), ys_out.to(memory.device)
    mem_lens = torch.full((1,), memory.shape[1], dtype=torch.long, device=memory.device)
    if text is None:
        logits = decoder(memory[:1], mem_lens, ys_in, lens + 1)  # (N, L + 1, V)
    else:
        logits = decoder.forward_text(memory[:1], mem_lens, *text)
    logp = logits.to(torch.float64).log_softmax(dim=-1)
    picked = logp.gather(-1, ys_out.unsqueeze(-1)).squeeze(-1)  # (N, L + 1)
    valid = torch.arange(L + 1, device=logp.device)[None, :] <= lens.to(logp.device)[:, None]  # (N, L + 1)
    return torch.where(valid, picked, 0.0).sum(dim=1).cpu()


def joint_scores(
    model, memory: torch.Tensor, log_probs: torch.Tensor, seqs: list[tuple[int, ...]], ctc_weight: float
) -> torch.Tensor:
    """(N,) float64 ``(1 - w) * attention + w * CTC`` scores of ``seqs`` for one utterance (memory (1, T', D),
    log_probs (T', V)). With ``w == 1`` (or no decoder) the attention decoder is not run."""
    padded, lens = pad_sequences(seqs, model.eos_id)
    score = ctc_weight * ctc_scores(log_probs, padded, lens, model.blank_id) if ctc_weight > 0 else 0.0
    if ctc_weight < 1:
        att = attention_scores(model.decoder, memory, padded, lens, model.sos_id, model.eos_id)
        score = score + (1 - ctc_weight) * att
    return torch.as_tensor(score, dtype=torch.float64).expand(len(seqs)).clone()
