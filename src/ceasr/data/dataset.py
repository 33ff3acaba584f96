"""Training data: utterances as (features, token ids), and the padded :class:`Batch` a model step takes.

By default every utterance's features are computed once up front, batched through :class:`Fbank`, and kept in
memory (an hour of audio is ~100 MB of float32 filterbanks), so epochs cost no audio decoding. An utterance
whose audio cannot be read is reported once on stderr (``skipped: path: reason``), counted in
``bad_items`` and left out; every other utterance is kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ceasr.audio import info as audio_info
from ceasr.audio import load as load_audio
from ceasr.config import FeatureConfig
from ceasr.data.manifest import Utterance
from ceasr.errors import AudioError
from ceasr.features import Fbank
from ceasr.text.normalize import normalize

IGNORE_ID = -1


@dataclass
class Batch:
    """A padded batch. feats (B, T, F) zero-padded, feat_lens (B,), ys (B, L) padded with -1, ys_lens (B,)."""

    feats: Tensor
    feat_lens: Tensor
    ys: Tensor
    ys_lens: Tensor
    ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device) -> "Batch":
        return Batch(
            self.feats.to(device), self.feat_lens.to(device), self.ys.to(device), self.ys_lens.to(device),
            self.ids, self.texts,
        )


@dataclass
class Item:
    """One utterance: feats (T, F), its token ids, normalized text and id."""

    feats: Tensor
    tokens: list[int]
    text: str
    id: str


def pad_targets(seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Token id sequences -> (B, L) ids padded with -1 (IGNORE_ID) and their (B,) lengths."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    ys = torch.full((len(seqs), int(lens.max()) if seqs else 0), IGNORE_ID, dtype=torch.int64)
    for b, s in enumerate(seqs):
        ys[b, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
    return ys, lens


def collate(items: list[Item | None]) -> Batch:
    """Pad items into a :class:`Batch`; ``None`` items (unreadable audio) are dropped, so it may be empty."""
    items = [it for it in items if it is not None]
    n_mels = items[0].feats.shape[1] if items else 0
    feat_lens = torch.tensor([it.feats.shape[0] for it in items], dtype=torch.int64)
    feats = torch.zeros(len(items), int(feat_lens.max()) if items else 0, n_mels)  # (B, T, F)
    for b, it in enumerate(items):
        feats[b, : it.feats.shape[0]] = it.feats
    ys, ys_lens = pad_targets([it.tokens for it in items])
    return Batch(feats, feat_lens, ys, ys_lens, [it.id for it in items], [it.text for it in items])


class AsrDataset(torch.utils.data.Dataset):
    """Utterances with normalized, tokenized text and log-mel features.

    Args:
        rows: the manifest rows.
        tokenizer: anything with ``encode(text) -> list[int]``.
        feature_cfg: the filterbank settings.
        cache_features: compute all features now (batched, ``chunk`` utterances at a time) and keep them;
            otherwise each ``__getitem__`` reads and featurizes its utterance (then a bad file yields None).
        progress: show a progress bar while caching.
        seed: seeds the dither when ``feature_cfg.dither > 0`` (cached features only), so runs repeat.
        keep_waves: with ``cache_features``, also keep every wave (``waves``, float32) for augmentation.

    ``durations`` (seconds per kept item) feed the batch sampler; ``bad_items`` counts what was skipped.
    """

    def __init__(
        self,
        rows: list[Utterance],
        tokenizer,
        feature_cfg: FeatureConfig,
        cache_features: bool = True,
        progress: bool = False,
        seed: int = 0,
        chunk: int = 32,
        keep_waves: bool = False,
    ):
        self.rows = list(rows)
        self.texts = [normalize(u.text, u.lang) for u in self.rows]
        self.tokens = [tokenizer.encode(t) for t in self.texts]
        self.fbank = Fbank(feature_cfg).eval()
        self.sample_rate = feature_cfg.sample_rate
        self.bad_items = 0
        self._reported: set[tuple[str, float]] = set()
        self.feats: list[Tensor] | None = None
        self.waves: list[np.ndarray] | None = [] if keep_waves and cache_features else None
        if cache_features:
            self._cache_all(progress, seed, chunk)
        else:
            self._header_durations()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Item | None:
        if self.feats is not None:
            feats = self.feats[i]
        else:
            wave = self._load(i)
            if wave is None:
                return None
            feats = self._featurize([wave])[0]
        return Item(feats, self.tokens[i], self.texts[i], self.rows[i].id)

    def keep(self, indices: list[int]) -> None:
        """Keep only the items at ``indices`` (in that order), e.g. after dropping too-short ones."""
        self.rows = [self.rows[i] for i in indices]
        self.texts = [self.texts[i] for i in indices]
        self.tokens = [self.tokens[i] for i in indices]
        self.durations = [self.durations[i] for i in indices]
        if self.feats is not None:
            self.feats = [self.feats[i] for i in indices]
        if self.waves is not None:
            self.waves = [self.waves[i] for i in indices]

    def report(self, i: int, error: AudioError) -> None:
        """Report bad item ``i`` once (one line on stderr) and count it."""
        key = (self.rows[i].audio, self.rows[i].offset)
        if key in self._reported:
            return
        self._reported.add(key)
        self.bad_items += 1
        print(f"skipped: {error}", file=sys.stderr)

    def _load(self, i: int) -> np.ndarray | None:
        utt = self.rows[i]
        try:
            return load_audio(utt.audio, offset=utt.offset, duration=utt.duration, sample_rate=self.sample_rate)
        except AudioError as e:
            self.report(i, e)
            return None

    @torch.no_grad()
    def _featurize(self, waves: list[np.ndarray], generator: torch.Generator | None = None) -> list[Tensor]:
        """Features of several waves in one padded Fbank call; each (T_i, F) without padding."""
        lens = torch.tensor([len(w) for w in waves], dtype=torch.int64)
        batch = torch.zeros(len(waves), int(lens.max()))  # (B, S)
        for b, w in enumerate(waves):
            batch[b, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        feats, feat_lens = self.fbank(batch, lens, generator=generator)  # (B, T, F), (B,)
        return [feats[b, : int(n)].clone() for b, n in enumerate(feat_lens)]

    def _cache_all(self, progress: bool, seed: int, chunk: int) -> None:
        generator = None
        if self.fbank.cfg.dither > 0:
            self.fbank.train()  # Fbank dithers in training mode only
            generator = torch.Generator().manual_seed(seed)
        feats: list[Tensor | None] = []
        durations = []
        bar = tqdm(total=len(self.rows), desc="features", unit="utt", disable=not progress, leave=False)
        for start in range(0, len(self.rows), chunk):
            waves = [self._load(i) for i in range(start, min(start + chunk, len(self.rows)))]
            good = [w for w in waves if w is not None]
            out = iter(self._featurize(good, generator) if good else [])
            feats.extend(next(out) if w is not None else None for w in waves)
            durations.extend(len(w) / self.sample_rate if w is not None else None for w in waves)
            if self.waves is not None:
                self.waves.extend(waves)
            bar.update(len(waves))
        bar.close()
        self.fbank.eval()
        self.feats, self.durations = feats, durations
        self.keep([i for i, f in enumerate(feats) if f is not None])

    def _header_durations(self) -> None:
        """Durations from the manifest, else from the audio header; an unreadable header drops the item."""
        durations, kept = [], []
        for i, utt in enumerate(self.rows):
            try:
                d = utt.duration if utt.duration is not None else audio_info(utt.audio).duration - utt.offset
            except AudioError as e:
                self.report(i, e)
                d = None
            durations.append(d)
            if d is not None:
                kept.append(i)
        self.durations = durations
        self.keep(kept)


class AugmentedDataset(torch.utils.data.Dataset):
    """A cached :class:`AsrDataset` (``keep_waves=True``) whose items are augmented waveforms, featurized anew.

    Keys are ``(index, epoch)``: the augmentation of item ``index`` in ``epoch`` draws from a generator
    seeded by ``(seed, epoch, index)``, so it is the same in any DataLoader worker and after a resume. An
    item the augmenter left untouched, or made shorter than ``min_frames`` frames (the model's minimum),
    gets its cached features.
    """

    def __init__(self, base: AsrDataset, augmenter, seed: int = 0, min_frames: int = 1):
        if base.waves is None:
            raise ValueError("AugmentedDataset needs an AsrDataset built with keep_waves=True")
        self.base, self.augmenter, self.seed, self.min_frames = base, augmenter, seed, min_frames

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> Item:
        index, epoch = key
        rng = np.random.default_rng([self.seed, epoch, index])
        wave, changed = self.augmenter(self.base.waves[index], rng)
        b = self.base
        feats = b.feats[index]
        if changed and b.fbank.num_frames(len(wave)) >= self.min_frames:
            feats = b._featurize([wave])[0]
        return Item(feats, b.tokens[index], b.texts[index], b.rows[index].id)
