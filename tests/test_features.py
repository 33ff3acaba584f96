"""Features: Fbank against kaldi-native-fbank, batched vs per item; CMVN against numpy; SpecAugment masks."""

from __future__ import annotations

import math

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from ceasr.config import FeatureConfig
from ceasr.errors import ConfigError
from ceasr.features import INT16_SCALE, CmvnStats, Fbank, GlobalCMVN, SpecAugment, compute_cmvn

SR = 16000
# Tolerance against knf, both float32: bins within 60 dB of their frame's loudest bin agree to 1e-3 in
# log energy; weaker bins are dominated by float32 rounding in both implementations, so every bin is
# only required to agree to 1e-4 of the frame's loudest energy in the linear domain.
LOG_ATOL, RANGE_DB, LINEAR_RTOL = 1e-3, 60.0, 1e-4


def knf_fbank(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """kaldi-native-fbank on int16-scaled samples (Kaldi's convention): (T, n_mels)."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.frame_opts.window_type = cfg.window
    opts.frame_opts.snip_edges = cfg.snip_edges
    opts.mel_opts.num_bins = cfg.n_mels
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(SR, (wave * INT16_SCALE).astype(np.float32))
    fb.input_finished()
    frames = [fb.get_frame(i) for i in range(fb.num_frames_ready)]
    return np.stack(frames) if frames else np.zeros((0, cfg.n_mels), np.float32)


def signal(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    if kind == "noise":
        return (0.1 * rng.standard_normal(n)).astype(np.float32)
    if kind == "chirp":  # 100 Hz sweeping up through the whole band
        return (0.5 * np.sin(2 * np.pi * (100 * t + 2500 * t**2))).astype(np.float32)
    return np.zeros(n, np.float32)


def ceasr_fbank(wave: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    feats, lens = Fbank(cfg)(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    assert feats.shape[1] == int(lens[0])
    return feats[0].numpy()


def assert_close_to_knf(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    if ref.size == 0:
        return
    ours, ref = ours.astype(np.float64), ref.astype(np.float64)
    top = ref.max(axis=1, keepdims=True)  # (T, 1) loudest bin per frame
    strong = ref > top - RANGE_DB / 10 * np.log(10)
    assert np.abs(ours - ref)[strong].max() < LOG_ATOL
    assert (np.abs(np.exp(ours) - np.exp(ref)) / np.exp(top)).max() < LINEAR_RTOL


@pytest.mark.parametrize("kind", ["noise", "chirp", "silence"])
@pytest.mark.parametrize("n", [400, 401, 1234, 16037, 32000])
def test_fbank_matches_kaldi_native_fbank(kind, n):
    assert_close_to_knf(ceasr_fbank(signal(kind, n)), knf_fbank(signal(kind, n), FeatureConfig()))


@pytest.mark.parametrize("window", ["povey", "hann", "hanning", "hamming", "rectangular"])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_fbank_options_match_kaldi_native_fbank(window, snip_edges):
    cfg = FeatureConfig(window=window, snip_edges=snip_edges)
    for kind, n in [("noise", 8123), ("chirp", 8123), ("noise", 90)]:  # 90: edges reflected more than once
        wave = signal(kind, n, seed=1)
        assert_close_to_knf(ceasr_fbank(wave, cfg), knf_fbank(wave, cfg))


@pytest.mark.parametrize("snip_edges", [True, False])
def test_num_frames_matches_kaldi_native_fbank(snip_edges):
    cfg = FeatureConfig(snip_edges=snip_edges)
    fbank = Fbank(cfg)
    lengths = [0, 1, 79, 80, 399, 400, 401, 559, 560, 561, 16000, 16001]
    expected = [len(knf_fbank(np.zeros(n, np.float32), cfg)) for n in lengths]
    assert [fbank.num_frames(n) for n in lengths] == expected
    assert fbank.num_frames(torch.tensor(lengths)).tolist() == expected


@pytest.mark.parametrize("snip_edges", [True, False])
def test_batched_equals_per_item(snip_edges):
    fbank = Fbank(FeatureConfig(snip_edges=snip_edges))
    lengths = [16000, 5003, 399, 12345]
    waves = [signal("noise", n, seed=i) for i, n in enumerate(lengths)]
    batch = torch.full((len(waves), max(lengths)), 0.7)  # junk padding must not leak into any frame
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    feats, lens = fbank(batch, torch.tensor(lengths))
    assert feats.shape == (4, fbank.num_frames(max(lengths)), 80)
    for i, w in enumerate(waves):
        single, single_lens = fbank(torch.from_numpy(w)[None], torch.tensor([len(w)]))
        assert int(lens[i]) == int(single_lens[0])
        torch.testing.assert_close(feats[i, : lens[i]], single[0], atol=1e-4, rtol=0)
        assert torch.all(feats[i, lens[i]:] == 0)
    fbank.chunk_rows = 0  # one pass instead of cache-sized chunks: same numbers
    torch.testing.assert_close(fbank(batch, torch.tensor(lengths))[0], feats, atol=1e-5, rtol=0)


def test_exported_equals_eager():
    # One pass (chunk_rows = 0) exports with dynamic batch and length; the program matches eager on new shapes.
    fbank = Fbank().eval()
    fbank.chunk_rows = 0
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", min=800, max=10**6)
    example = (torch.zeros(2, 4000), torch.tensor([4000, 3000]))
    program = torch.export.export(fbank, example, dynamic_shapes=({0: batch, 1: length}, {0: batch}))
    wave = torch.from_numpy(np.stack([signal("noise", 9000, seed=s) for s in range(3)]))
    lens = torch.tensor([9000, 5000, 450])
    for got, want in zip(program.module()(wave, lens), fbank(wave, lens), strict=True):
        torch.testing.assert_close(got, want)


def test_dc_offset_is_removed():
    # Kaldi removes each frame's mean before preemphasis, so a constant offset changes nothing.
    wave = signal("noise", 8000)
    np.testing.assert_allclose(ceasr_fbank(wave + np.float32(0.25)), ceasr_fbank(wave), atol=2e-3)


def test_dither_only_in_training_and_seeded():
    cfg = FeatureConfig(dither=1.0)
    fbank = Fbank(cfg)
    wave, lens = torch.zeros(1, 4000), torch.tensor([4000])
    floor = float(np.log(np.finfo(np.float32).eps))
    eval_feats, _ = fbank.eval()(wave, lens)
    assert torch.all(eval_feats == floor)  # silence without dither hits Kaldi's energy floor
    fbank.train()
    a, _ = fbank(wave, lens, generator=torch.Generator().manual_seed(3))
    b, _ = fbank(wave, lens, generator=torch.Generator().manual_seed(3))
    c, _ = fbank(wave, lens, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(a > floor + 5)  # unit-variance int16 noise lifts every bin well above the floor


def test_short_input_and_bad_config():
    feats, lens = Fbank()(torch.zeros(2, 100), torch.tensor([100, 50]))
    assert feats.shape == (2, 0, 80) and lens.tolist() == [0, 0]
    with pytest.raises(ConfigError, match="window"):
        Fbank(FeatureConfig(window="kaiser"))
    with pytest.raises(ConfigError, match="low_freq"):
        Fbank(FeatureConfig(low_freq=9000.0))
    assert not Fbank().state_dict()  # filters are rebuilt from the config, never saved


def test_cmvn_matches_numpy():
    rng = np.random.default_rng(0)
    utts = [rng.normal(3.0, 2.0, size=(t, 5)).astype(np.float32) for t in (10, 37, 1)]
    utts[0][:, 4] = utts[1][:, 4] = utts[2][:, 4] = 1.5  # a constant bin: std is floored, not zero
    stats = CmvnStats(std_floor=1e-3)
    for u in utts:
        stats.update(torch.from_numpy(u))
    frames = np.concatenate(utts).astype(np.float64)
    np.testing.assert_allclose(stats.mean.numpy(), frames.mean(0), rtol=1e-10)
    np.testing.assert_allclose(stats.std.numpy(), np.maximum(frames.std(0), 1e-3), rtol=1e-6)

    cmvn = compute_cmvn(torch.from_numpy(u) for u in utts)
    out = cmvn(torch.from_numpy(frames.astype(np.float32))[None])[0].numpy()
    np.testing.assert_allclose(out[:, :4].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, :4].std(0), 1, atol=1e-5)
    assert set(cmvn.state_dict()) == {"mean", "istd"}


def test_cmvn_defaults_and_padding():
    x = torch.randn(2, 6, 3)
    assert torch.equal(GlobalCMVN(3)(x), x)  # mean 0, istd 1
    cmvn = GlobalCMVN(3)
    cmvn.mean.fill_(1.0)
    out = cmvn(x, torch.tensor([6, 2]))
    torch.testing.assert_close(out[0], x[0] - 1)
    assert torch.all(out[1, 2:] == 0)


@pytest.mark.parametrize("mode", ["level", "mean"])
def test_utterance_norm_matches_numpy_and_ignores_padding(mode):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(2.0, 3.0, size=(2, 9, 4)).astype(np.float32))
    lens = torch.tensor([9, 5])
    x[1, 5:] = 0.0  # padding
    cmvn = GlobalCMVN(4, mode)
    cmvn.mean.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    cmvn.istd.copy_(torch.tensor([1.0, 0.5, 2.0, 0.25]))
    out = cmvn(x, lens)
    for b, n in enumerate(lens.tolist()):
        item = x[b, :n].double().numpy()
        offset = item.mean(0) if mode == "mean" else item.mean()
        want = (item - offset - cmvn.mean.double().numpy()) * cmvn.istd.double().numpy()
        np.testing.assert_allclose(out[b, :n].numpy(), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[b, :n], cmvn(x[b : b + 1, :n])[0])  # alone, no lengths
    assert torch.all(out[1, 5:] == 0)


def test_level_norm_makes_fbank_gain_invariant_and_mean_norm_removes_a_channel_tilt():
    wave = torch.from_numpy(np.random.default_rng(2).normal(0, 0.05, 8000).astype(np.float32))
    fbank = Fbank(FeatureConfig(n_mels=23))
    n = torch.tensor([len(wave)])
    quiet, loud = (fbank(wave[None] * 10 ** (g / 20), n)[0][0] for g in (-30, 6))
    # A gain of g dB shifts every log-mel cell by g ln(10) / 10 (dither 0, energies far above the floor).
    torch.testing.assert_close(loud - quiet, torch.full_like(quiet, 36 * math.log(10) / 10), rtol=0, atol=1e-3)
    torch.testing.assert_close(GlobalCMVN(23, "level")(quiet[None]), GlobalCMVN(23, "level")(loud[None]),
                               rtol=0, atol=1e-3)
    tilt = torch.linspace(-2.0, 3.0, 23)  # a fixed per-bin offset, e.g. a channel's log response
    torch.testing.assert_close(GlobalCMVN(23, "mean")(quiet[None] + tilt), GlobalCMVN(23, "mean")(quiet[None]),
                               rtol=0, atol=1e-4)


def test_cmvn_stats_after_utterance_mean_norm():
    rng = np.random.default_rng(3)
    utts = [rng.normal(rng.normal(0, 5, 3), 1.0, size=(t, 3)) for t in (4, 11, 7)]
    cmvn = compute_cmvn((torch.from_numpy(u) for u in utts), utterance="mean")
    centered = np.concatenate([u - u.mean(0) for u in utts])
    np.testing.assert_allclose(cmvn.mean.numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(1 / cmvn.istd.numpy(), centered.std(0), rtol=1e-5)
    assert cmvn.utterance == "mean"
    with pytest.raises(ConfigError, match="model.utterance_norm"):
        GlobalCMVN(3, "median")


def masked_cells(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return (out == 0) & (x != 0)


def test_spec_augment_masks_whole_rows_and_columns_inside_lengths():
    B, T, F = 8, 120, 40
    x = torch.rand(B, T, F) + 1.0  # never 0, so a 0 is a mask
    lens = torch.tensor([120, 100, 60, 7, 120, 33, 90, 1])
    x[torch.arange(T)[None, :] >= lens[:, None]] = 7.0  # padding sentinel
    aug = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width_ratio=0.1, max_time_width=8)
    for seed in range(20):
        out = aug(x, lens, generator=torch.Generator().manual_seed(seed))
        masked = masked_cells(x, out)
        assert torch.equal(out[~masked], x[~masked])  # unchanged outside masks, padding included
        for b in range(B):
            n = int(lens[b])
            m = masked[b, :n]  # (n, F)
            rows, cols = m.all(dim=1), m.all(dim=0)  # whole masked frames / whole masked bins
            assert torch.equal(m, rows[:, None] | cols[None, :])
            assert int(cols.sum()) <= 2 * 10
            assert int(rows.sum()) <= 2 * min(8, int(0.1 * n))


def test_spec_augment_is_seeded_and_masks_something():
    x, lens = torch.rand(4, 200, 80) + 1.0, torch.tensor([200, 150, 100, 50])
    aug = SpecAugment()
    a = aug(x, lens, generator=torch.Generator().manual_seed(0))
    b = aug(x, lens, generator=torch.Generator().manual_seed(0))
    c = aug(x, lens, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert masked_cells(x, a).any()


def test_spec_augment_width_bounds_are_reached():
    # Widths are uniform over [0, width]: over many draws both ends show up and nothing exceeds them.
    x, lens = torch.ones(1, 50, 20), torch.tensor([50])
    aug = SpecAugment(freq_masks=1, freq_width=3, time_masks=0)
    widths = {int(masked_cells(x, aug(x, lens, torch.Generator().manual_seed(s))).all(1).sum())
              for s in range(100)}
    assert widths == {0, 1, 2, 3}
