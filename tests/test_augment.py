"""Waveform augmentation measured from its outputs: SNR, gain, duration, spectra, RT60, alignment, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from ceasr.config import AugmentConfig, FeatureConfig
from ceasr.data import augment as aug
from ceasr.data.augment import (
    Augmenter, NoiseFolder, apply_gain, babble, colored_noise, mix_at_snr, reverberate, speed_perturb, synthetic_rir,
)
from ceasr.data.dataset import AsrDataset, AugmentedDataset, collate
from ceasr.data.manifest import Utterance
from ceasr.errors import ConfigError

SR = 16000


def db(x: float) -> float:
    return 10 * math.log10(x)


def speech_like(seconds=1.0, seed=0) -> np.ndarray:
    """A 200 Hz harmonic tone with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * 200 * h * t) / h for h in range(1, 6))
    return (0.2 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0, 35.0])
@pytest.mark.parametrize("noise_seconds", [0.3, 2.5])  # looped / cropped
def test_mix_at_snr_hits_the_target(snr, noise_seconds):
    speech = speech_like(1.0)
    noise = colored_noise("pink", int(noise_seconds * SR), np.random.default_rng(1))
    mixed = mix_at_snr(speech, noise, snr)
    part = mixed.astype(np.float64) - speech
    achieved = db(np.mean(speech.astype(np.float64) ** 2) / np.mean(part**2))
    assert abs(achieved - snr) < 0.5
    # The added part is the noise, looped or cropped by hand, times one constant.
    reference = np.tile(noise, int(np.ceil(len(speech) / len(noise))))[: len(speech)].astype(np.float64)
    c = np.dot(part, reference) / np.dot(reference, reference)
    np.testing.assert_allclose(part, c * reference, atol=1e-5 * np.abs(part).max())


@pytest.mark.parametrize("color,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colours_have_unit_rms_and_their_spectral_slope(color, slope):
    noise = colored_noise(color, 4 * SR, np.random.default_rng(0)).astype(np.float64)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-4)
    # Welch-style PSD: mean periodogram of 1024-sample Hann frames, log-log fit over 100 Hz .. 4 kHz.
    frames = noise[: len(noise) // 1024 * 1024].reshape(-1, 1024) * np.hanning(1024)
    psd = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    f = np.fft.rfftfreq(1024, 1 / SR)
    band = (f >= 100) & (f <= 4000)
    fitted = np.polyfit(np.log10(f[band]), np.log10(psd[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.15)


def test_unknown_colour_is_a_config_error():
    with pytest.raises(ConfigError, match="violet"):
        colored_noise("violet", 10, np.random.default_rng(0))


@pytest.mark.parametrize("gain", [-30.0, -6.0, 0.0, 4.0])
def test_gain_in_db(gain):
    wave = speech_like(0.5)  # peak < 0.5: +4 dB does not clip
    out = apply_gain(wave, gain)
    achieved = 10 * math.log10(np.mean(out.astype(np.float64) ** 2) / np.mean(wave.astype(np.float64) ** 2))
    assert achieved == pytest.approx(gain, abs=1e-3)


def test_gain_clips_like_a_recording():
    wave = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    out = apply_gain(wave, 20.0)  # x10: peaks at 5.0 before clipping
    assert out.max() == 1.0 and out.min() == -1.0
    np.testing.assert_allclose(out, np.clip(wave * 10.0, -1, 1), atol=1e-6)
    assert np.abs(apply_gain(wave, 20.0, clip=False)).max() == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("factor", [0.85, 0.9, 1.1, 1.15])
def test_speed_perturbation_changes_duration_and_pitch(factor):
    t = np.arange(2 * SR) / SR
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = speed_perturb(wave, factor)
    assert len(out) / len(wave) == pytest.approx(1 / factor, abs=1e-3)
    # Played faster, a 440 Hz tone comes out at 440 * factor Hz (FFT peak, 0.5 Hz bins).
    spec = np.abs(np.fft.rfft(out, 2 * SR))
    assert np.argmax(spec) * 0.5 == pytest.approx(440 * factor, abs=1.0)


def schroeder_rt60(rir: np.ndarray, sr: int = SR) -> float:
    """RT60 from the energy decay curve (backward-integrated energy), fitted between -5 and -25 dB (T20 x 3)."""
    energy = np.cumsum((rir.astype(np.float64) ** 2)[::-1])[::-1]
    edc = 10 * np.log10(energy / energy[0])
    idx = np.nonzero((edc <= -5) & (edc >= -25))[0]
    slope = np.polyfit(idx / sr, edc[idx], 1)[0]  # dB per second
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.5, 0.8])
def test_synthetic_rir_decays_at_its_rt60(rt60):
    rir = synthetic_rir(rt60, np.random.default_rng(3), drr_db=0.0)
    assert np.argmax(np.abs(rir)) == 0
    assert schroeder_rt60(rir) == pytest.approx(rt60, rel=0.1)


def test_reverberation_keeps_the_direct_path_at_lag_zero():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(SR).astype(np.float32)
    # A direct path 40 samples in (a pre-delay) and a strong early reflection after it.
    rir = np.concatenate([np.zeros(40), synthetic_rir(0.4, rng, drr_db=-3.0)]).astype(np.float32)
    rir[40 + 200] = 0.6
    y = reverberate(x, rir)
    assert len(y) == len(x)
    lags = np.arange(-300, 301)
    xc = [np.dot(y[max(0, k): len(y) + min(0, k)], x[max(0, -k): len(x) - max(0, k)]) for k in lags]
    assert lags[int(np.argmax(xc))] == 0
    rms = [np.sqrt(np.mean(v.astype(np.float64) ** 2)) for v in (x, y)]
    assert rms[1] == pytest.approx(rms[0], rel=1e-3)


def test_babble_is_unit_rms_and_made_of_the_sources():
    sources = [speech_like(0.6, seed=s) for s in range(5)]
    out = babble(sources, SR, np.random.default_rng(0), talkers=3)
    assert len(out) == SR and np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    silent = babble([np.zeros(100, np.float32)], 50, np.random.default_rng(0), talkers=2)
    assert not silent.any()


def everything(**kw) -> AugmentConfig:
    return AugmentConfig(enabled=True, speed_prob=0.5, reverb_prob=0.5, noise_prob=0.5, gain_prob=0.5, **kw)


def test_augmenter_is_deterministic_from_a_seed():
    wave = speech_like(0.8)
    a = Augmenter(everything(), babble_sources=[speech_like(0.5, s) for s in range(3)])
    outs = [a(wave, np.random.default_rng([7, k]))[0] for k in range(6)]
    again = [a(wave, np.random.default_rng([7, k]))[0] for k in range(6)]
    for x, y in zip(outs, again):
        np.testing.assert_array_equal(x, y)
    assert len({x.tobytes() for x in outs}) > 1  # different seeds, different results


def test_augmenter_rejects_unknown_noise_kind():
    with pytest.raises(ConfigError, match="hum"):
        Augmenter(everything(noise_kinds="white,hum"))


def test_bad_noise_files_are_reported_and_skipped(tmp_path, capsys):
    folder = tmp_path / "musan/noise/free-sound"
    folder.mkdir(parents=True)
    good = 0.3 * colored_noise("white", SR, np.random.default_rng(0))
    sf.write(folder / "good.wav", good, SR, subtype="PCM_16")
    sf.write(folder / "gone.flac", good, SR, subtype="PCM_16")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage that is not audio")
    noises = NoiseFolder(tmp_path / "musan")
    assert "corrupt.wav" in capsys.readouterr().err
    assert [p.name for p in noises.files] == ["gone.flac", "good.wav"]
    (folder / "gone.flac").unlink()  # missing by the time it is used
    rng = np.random.default_rng(0)
    for _ in range(5):
        seg = noises.sample(SR // 2, rng)
        assert seg is not None and len(seg) == SR // 2
    assert "gone.flac: no such file" in capsys.readouterr().err
    assert [p.name for p in noises.files] == ["good.wav"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no audio files"):
        NoiseFolder(tmp_path / "empty")


def test_augmented_items_equal_in_any_worker(tmp_path):
    rows = []
    for i in range(4):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, speech_like(0.5 + 0.1 * i, seed=i), SR, subtype="FLOAT")
        rows.append(Utterance(str(path), "one two", f"u{i}"))

    class Chars:
        def encode(self, text):
            return [ord(c) % 20 for c in text]

    base = AsrDataset(rows, Chars(), FeatureConfig(n_mels=40), keep_waves=True)
    cfg = everything(noise_kinds="white,babble")
    data = AugmentedDataset(base, Augmenter(cfg, base.waves), seed=3)
    keys = [[(i, 1) for i in range(4)], [(i, 2) for i in range(4)]]
    here = [collate([data[k] for k in b]) for b in keys]
    loader = torch.utils.data.DataLoader(data, batch_sampler=keys, collate_fn=collate, num_workers=2)
    for a, b in zip(here, loader):
        torch.testing.assert_close(a.feats, b.feats, rtol=0, atol=0)
    # Augmented features differ from the clean cache at least somewhere; epochs draw differently.
    assert any(not torch.equal(here[0].feats[i, : base.feats[i].shape[0]], base.feats[i]) for i in range(4))
    assert not torch.equal(here[0].feats, here[1].feats)
    # An item left alone (all probabilities 0) is the cached features themselves.
    plain = AugmentedDataset(base, Augmenter(AugmentConfig(enabled=True), base.waves))
    assert plain[(2, 0)].feats is base.feats[2]


def test_fast_fft_lengths():
    ref = sorted({2**a * 3**b * 5**c for a in range(14) for b in range(9) for c in range(6)})
    for n in range(1, 5000, 7):
        assert aug._fast_len(n) == next(m for m in ref if m >= n)
