"""BPE-dropout (Provilkov et al., 2020): the same BPE vocabulary, a random segmentation of each word.

Deterministic BPE splits every word of a small domain into one piece, so a model trained on its targets never
emits the short pieces that spell a word it did not hear (a hotword, a name). With dropout the training targets
use them: each word starts as characters and merges as BPE does (the highest-ranked adjacent pair first), but
at every merge step each candidate pair is dropped with probability ``p``; when all are dropped the word keeps
its current pieces. ``p = 0`` is SentencePiece's own encoding (tested against it), ``p = 1`` spells characters.

SentencePiece has a sampling mode of its own, but its random generator is thread-local and seeded once per
thread, so it cannot be made to repeat a step's draw after a resume; this one draws from a generator the
caller seeds.
"""

from __future__ import annotations

import random

import torch

from ceasr.data.dataset import pad_targets
from ceasr.errors import ConfigError
from ceasr.text.script import ZH, runs
from ceasr.text.tokenizer import SPECIALS, UNK_ID, WORD_START, BilingualTokenizer, BpeTokenizer


class BpeDropout:
    """Random segmentations of text over a :class:`BpeTokenizer`'s pieces.

    Args:
        tokenizer: the BPE tokenizer whose pieces and merge ranks are used.
        p: probability of dropping each merge candidate at each merge step, in [0, 1].
    """

    def __init__(self, tokenizer: BpeTokenizer, p: float):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"train.bpe_dropout: must be in [0, 1], got {p}")
        self.p = p
        sp = tokenizer.sp
        normal = [i for i in range(len(SPECIALS), sp.get_piece_size())
                  if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))]
        self.ids = {sp.id_to_piece(i): i for i in normal}
        # SentencePiece's BPE scores its pieces by merge order (earlier merges score higher)
        self.rank = {sp.id_to_piece(i): sp.get_score(i) for i in normal}

    def word(self, word: str, rng: random.Random) -> list[int]:
        """Ids of one word (without its "▁", which is added here)."""
        symbols = list(WORD_START + word)
        while len(symbols) > 1:
            best, best_rank = -1, float("-inf")
            for i in range(len(symbols) - 1):
                rank = self.rank.get(symbols[i] + symbols[i + 1])
                if rank is None or (self.p > 0.0 and rng.random() < self.p):
                    continue
                if rank > best_rank:  # ties: the leftmost pair, as SentencePiece merges
                    best, best_rank = i, rank
            if best < 0:
                break
            symbols[best: best + 2] = [symbols[best] + symbols[best + 1]]
        ids = [self.ids.get(s, UNK_ID) for s in symbols]
        # a run of unknown characters is one unk, as SentencePiece writes it
        return [i for k, i in enumerate(ids) if not (i == UNK_ID and k > 0 and ids[k - 1] == UNK_ID)]

    def encode(self, text: str, rng: random.Random) -> list[int]:
        """Ids of an already-normalized text, each word segmented at random."""
        return [i for w in text.split() for i in self.word(w, rng)]


class TargetSampler:
    """Training targets under BPE-dropout for a BPE or bilingual tokenizer (Chinese characters stay whole)."""

    def __init__(self, tokenizer, p: float):
        self.bilingual = isinstance(tokenizer, BilingualTokenizer)
        bpe = tokenizer.bpe if self.bilingual else tokenizer
        if not isinstance(bpe, BpeTokenizer):
            raise ConfigError(f"train.bpe_dropout needs a bpe or bilingual tokenizer (with English text), "
                              f"got tokenizer.kind={tokenizer.kind}")
        self.tokenizer, self.dropout = tokenizer, BpeDropout(bpe, p)

    def encode(self, text: str, rng: random.Random) -> list[int]:
        if not self.bilingual:
            return self.dropout.encode(text, rng)
        ids: list[int] = []
        for lang, stretch in runs(text):
            ids += self.tokenizer.encode(stretch) if lang == ZH else self.dropout.encode(stretch, rng)
        return ids

    def batch(self, texts: list[str], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) target ids padded with -1 and their (B,) lengths, drawn from ``generator``."""
        rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
        return pad_targets([self.encode(t, rng) for t in texts])
