"""Feature-domain augmentation checked against the filterbank of the audio it stands for."""

from __future__ import annotations

import math
from dataclasses import replace as dataclasses_replace

import numpy as np
import pytest
import torch

from ceasr.config import FeatAugmentConfig, FeatureConfig
from ceasr.data.augment import colored_noise
from ceasr.data.feat_augment import (
    LOG_FLOOR,
    PAD_MULTIPLE,
    WHISPER_KNEE_HZ,
    FeatAugment,
    add_noise,
    apply_gain,
    band_limit,
    breath_fluctuation,
    deemphasis_weights,
    mel_centers,
    passband_fraction,
    smoothing_kernel,
    stretch_time,
    warp_matrix,
    whisper,
    whisper_tilt,
)
from ceasr.errors import ConfigError
from ceasr.features import Fbank, kaldi_mel_banks

SR = 16000
FEATS = FeatureConfig()


def fbank(wave: np.ndarray) -> torch.Tensor:
    """(T, F) log-mel of a (S,) wave."""
    w = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    with torch.no_grad():
        return Fbank(FEATS).eval()(w, torch.tensor([w.shape[1]]))[0][0]


def tone(freq: float, seconds: float = 0.5, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)


def speechlike(seed: int = 0, seconds: float = 1.0) -> np.ndarray:
    """Three harmonics with a slow envelope plus a little noise: energy in every bin, nothing floored."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 660.0, 1500.0), start=1))
    return (0.12 * wave * (1.2 + np.sin(2 * np.pi * 3 * t)) + 0.006 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("gain_db", [-30.0, -12.5, 6.0])
def test_gain_equals_the_filterbank_of_the_scaled_wave(gain_db):
    wave = speechlike()
    assert np.abs(wave).max() * 10 ** (gain_db / 20) < 1.0  # no clipping: the shift is exact
    want = fbank(wave * 10 ** (gain_db / 20))
    torch.testing.assert_close(apply_gain(fbank(wave), gain_db), want, atol=2e-3, rtol=0)


def test_noise_mix_hits_the_snr_on_energies_and_matches_the_mixed_wave():
    n = 4 * SR
    speech, noise = fbank(speechlike(seconds=4)), fbank(colored_noise("white", n, np.random.default_rng(1)))
    snr = 7.0
    mixed = add_noise(speech, noise, snr)
    # Closed form: the mixture's energies are speech + a * noise, with a set by the SNR.
    added = (mixed.double().exp() - speech.double().exp()).sum(-1).mean()
    achieved = 10 * math.log10(float(speech.double().exp().sum(-1).mean() / added))
    assert achieved == pytest.approx(snr, abs=0.01)
    # Independent reference: the filterbank of the mixed waveforms (the same noise, amplitude sqrt(a)).
    a = float(speech.double().exp().sum(-1).mean() / noise.double().exp().sum(-1).mean()) / 10 ** (snr / 10)
    wave_noise = colored_noise("white", n, np.random.default_rng(1))
    reference = fbank(speechlike(seconds=4) + math.sqrt(a) * wave_noise)
    # Energies add in expectation (cross terms average out over frames): per-bin means over 4 s within 8 %,
    # the total within 1 %.
    want, got = reference.double().exp(), mixed.double().exp()
    ratio = got.mean(0) / want.mean(0)
    assert torch.all((ratio - 1).abs() < 0.08), ratio
    assert float(got.sum() / want.sum()) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("color, tolerance_db", [("white", 1.0), ("pink", 3.0)])
def test_weighted_noise_mix_hits_the_waveform_snr(color, tolerance_db):
    """With the preemphasis undone, the SNR set on energies is the SNR of the waves (the reference: the power of
    the speech wave over that of the noise wave scaled by sqrt(a)); on the raw energies it is not for white.
    Pink noise has power below the filterbank's 20 Hz edge and in each frame's DC offset, which the wave counts
    and the energies do not: its waveform SNR comes out lower, by 2.5 dB here."""
    n, snr = 4 * SR, 10.0
    wave, wave_noise = speechlike(seconds=4), colored_noise(color, n, np.random.default_rng(1))
    speech, noise = fbank(wave), fbank(wave_noise)
    weights = deemphasis_weights(FEATS)
    mixed = add_noise(speech, noise, snr, weights)
    a = float(((mixed.double().exp() - speech.double().exp()).sum(-1).mean()) / noise.double().exp().sum(-1).mean())
    waveform_snr = 10 * math.log10(float(np.mean(wave.astype(np.float64) ** 2)) / (a * np.mean(wave_noise**2)))
    assert waveform_snr == pytest.approx(snr, abs=tolerance_db)
    if color == "white":  # the unweighted measure puts white noise ~10 dB too weak for this speech
        raw = add_noise(speech, noise, snr)
        a_raw = float(((raw.double().exp() - speech.double().exp()).sum(-1).mean()) / noise.double().exp().sum(-1).mean())
        assert 10 * math.log10(a / a_raw) > 5.0


def test_band_limit_matches_the_filterbank_of_8khz_audio_resampled_to_16khz():
    """Reference: white noise through soxr 16 kHz -> 8 kHz -> 16 kHz (passband to ~3.65 kHz, stopband from 4 kHz,
    so the effective cut-off is ~3.8 kHz), as a narrowband voice or a telephone line reaches the model."""
    import soxr

    wave = 0.1 * colored_noise("white", 2 * SR, np.random.default_rng(0))
    narrow = soxr.resample(soxr.resample(wave, SR, 8000), 8000, SR)[: len(wave)]
    dry = fbank(wave)
    got = band_limit(dry, passband_fraction(FEATS, 3800.0), stop_db=60.0)
    change_db = lambda x: 10 * torch.log10(x.double().exp().mean(0) / dry.double().exp().mean(0))  # noqa: E731
    want, ours = change_db(fbank(narrow)), change_db(got)
    edges = kaldi_mel_banks(FEATS.n_mels, 512, SR, FEATS.low_freq, FEATS.high_freq)
    freqs = torch.arange(edges.shape[0], dtype=torch.float64) * SR / 512
    lowest = torch.stack([freqs[edges[:, m] > 0].min() for m in range(FEATS.n_mels)])
    highest = torch.stack([freqs[edges[:, m] > 0].max() for m in range(FEATS.n_mels)])
    below, above = highest < 3600, lowest > 4100
    straddle = ~below & ~above & (lowest < 3800)
    assert below.sum() > 50 and above.sum() > 15 and straddle.sum() >= 2
    assert float(want[below].abs().max()) < 0.01 and float(ours[below].abs().max()) < 0.01  # passband untouched
    assert float((ours[straddle] - want[straddle]).abs().max()) < 1.5  # the filter's edge, bin by bin
    assert float(want[above].max()) < -55 and float(ours[above].max()) < -55  # the stopband: gone in both
    # The fraction is a closed form: a cut-off above the top frequency passes everything, 0 Hz nothing.
    torch.testing.assert_close(passband_fraction(FEATS, 9000.0), torch.ones(FEATS.n_mels, dtype=torch.float64))
    torch.testing.assert_close(passband_fraction(FEATS, 0.0), torch.zeros(FEATS.n_mels, dtype=torch.float64))


def test_warp_of_unit_factor_is_identity():
    c = mel_centers(FEATS)
    torch.testing.assert_close(warp_matrix(c, 1.0, SR / 2), torch.eye(FEATS.n_mels))


def test_mel_centers_are_the_filter_peaks():
    banks = kaldi_mel_banks(FEATS.n_mels, 512, SR, FEATS.low_freq, SR / 2)  # (K, F)
    peak_hz = banks.argmax(dim=0).double() * SR / 512
    assert torch.all((mel_centers(FEATS) - peak_hz).abs() <= SR / 512)  # within one FFT bin


@pytest.mark.parametrize("alpha", [0.9, 1.12])
def test_warp_moves_a_tone_where_the_warped_tone_is(alpha):
    """VTLP by alpha puts a 1 kHz tone's peak in the bin of a (alpha x 1 kHz) tone."""
    w = warp_matrix(mel_centers(FEATS), alpha, SR / 2)
    warped = (fbank(tone(1000.0)) @ w.T).mean(0)
    target = fbank(tone(1000.0 * alpha)).mean(0)
    assert int(warped.argmax()) == int(target.argmax())
    assert int(warped.argmax()) != int(fbank(tone(1000.0)).mean(0).argmax())  # it did move


def batch_of(*waves: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    feats = [fbank(w) for w in waves]
    lens = torch.tensor([len(f) for f in feats])
    out = torch.zeros(len(feats), int(lens.max()), FEATS.n_mels)
    for b, f in enumerate(feats):
        out[b, : len(f)] = f
    return out, lens


def everything(**kw) -> FeatAugmentConfig:
    return FeatAugmentConfig(enabled=True, warp_prob=1.0, noise_prob=1.0, gain_prob=1.0, bandlimit_prob=1.0, **kw)


def test_augment_is_seeded_and_leaves_padding_alone():
    x, lens = batch_of(speechlike(0), speechlike(1)[: SR // 2], speechlike(2)[: SR // 3])
    aug = FeatAugment(everything(), FEATS)
    one = aug(x, lens, torch.Generator().manual_seed(5))
    two = aug(x, lens, torch.Generator().manual_seed(5))
    other = aug(x, lens, torch.Generator().manual_seed(6))
    torch.testing.assert_close(one, two)
    assert not torch.allclose(one, other)
    for b, n in enumerate(lens.tolist()):
        assert torch.all(one[b, n:] == 0)
        assert not torch.allclose(one[b, :n], x[b, :n])


def test_gain_only_is_a_constant_shift_in_range():
    x, lens = batch_of(speechlike(0), speechlike(1))
    out = FeatAugment(FeatAugmentConfig(enabled=True, gain_prob=1.0, gain_db=(-20.0, -10.0)), FEATS)(
        x, lens, torch.Generator().manual_seed(0))
    shift_db = (out - x) * 10 / math.log(10)  # per cell, in dB
    for b in range(2):
        assert float(shift_db[b].max() - shift_db[b].min()) < 1e-3
        assert -20.0 <= float(shift_db[b].mean()) <= -10.0


def test_zero_probabilities_change_nothing_and_lonely_babble_is_skipped():
    x, lens = batch_of(speechlike(0))
    torch.testing.assert_close(FeatAugment(FeatAugmentConfig(enabled=True), FEATS)(x, lens), x)
    babble = FeatAugment(FeatAugmentConfig(enabled=True, noise_prob=1.0, noise_kinds="babble"), FEATS)
    torch.testing.assert_close(babble(x, lens), x)  # no other utterance in the batch to babble with


def test_stretch_time_resamples_a_ramp_to_the_ramp_of_the_new_length():
    t, f = 11, 4
    ramp = torch.linspace(-3.0, 7.0, t)[:, None] * torch.arange(1.0, f + 1)  # frame i: (-3 + i) * (1..F)
    for n in (6, 11, 15):
        out = stretch_time(ramp, n)
        expected = torch.linspace(-3.0, 7.0, n)[:, None] * torch.arange(1.0, f + 1)
        torch.testing.assert_close(out, expected)
    torch.testing.assert_close(stretch_time(ramp[:1], 3), ramp[:1].expand(3, -1))


def test_tempo_changes_lengths_by_the_rate_and_pads_with_zeros():
    x, lens = batch_of(speechlike(0), speechlike(1)[: SR // 2], speechlike(2)[: SR // 10])
    cfg = FeatAugmentConfig(enabled=True, tempo_prob=1.0, tempo=(1.25, 1.25))  # 25 % faster: 4/5 of the frames
    out, new = FeatAugment(cfg, FEATS, min_frames=8).tempo(x, lens, torch.Generator().manual_seed(0))
    n = lens.tolist()
    assert new.tolist() == [round(n[0] / 1.25), round(n[1] / 1.25), 8] and n[2] / 1.25 < 8 == n[2]
    assert out.shape[1] == -(-max(new.tolist()) // PAD_MULTIPLE) * PAD_MULTIPLE  # a few batch lengths only
    for b in range(3):
        torch.testing.assert_close(out[b, : new[b]], stretch_time(x[b, : n[b]], int(new[b])))
        assert torch.all(out[b, new[b]:] == 0)
    slow, slow_lens = FeatAugment(dataclasses_replace(cfg, tempo=(0.8, 0.8)), FEATS).tempo(x, lens)
    assert slow_lens.tolist() == [round(k / 0.8) for k in n] and slow.shape[1] % PAD_MULTIPLE == 0
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    same, same_lens = FeatAugment(FeatAugmentConfig(enabled=True), FEATS).tempo(x, lens, generator)
    assert same is x and same_lens is lens and torch.equal(generator.get_state(), state)  # off: no draws


def test_babble_adds_the_other_utterances_energy():
    x, lens = batch_of(speechlike(0), speechlike(1))
    cfg = FeatAugmentConfig(enabled=True, noise_prob=1.0, noise_kinds="babble", snr_db=(0.0, 0.0))
    out = FeatAugment(cfg, FEATS)(x, lens, torch.Generator().manual_seed(0))
    added = out[0].double().exp() - x[0].double().exp()
    assert float(added.min()) >= -1e-3 * float(x[0].double().exp().max())  # energy only ever added
    w = deemphasis_weights(FEATS)  # the SNR is measured with the preemphasis undone
    snr = 10 * math.log10(float((x[0].double().exp() * w).sum(-1).mean() / (added * w).sum(-1).mean()))
    assert snr == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("bad, match", [
    (dict(noise_kinds="white,rain"), "rain"),
    (dict(warp=(1.1, 0.9)), "warp"),
    (dict(snr_db=(20.0, 5.0)), "snr_db"),
    (dict(bandlimit_hz=(7000.0, 3400.0)), "bandlimit_hz"),
    (dict(tempo=(0.0, 1.1)), "tempo"),
    (dict(whisper_tilt_db=(8.0, 2.0)), "whisper_tilt_db"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        FeatAugment(FeatAugmentConfig(enabled=True, **bad), FEATS)


def test_reverb_matches_the_filterbank_of_the_reverberated_wave():
    """A noise burst in a room: the feature-domain tail follows the filterbank of the convolved wave. (Broadband,
    so the RIR's random spectral gains average out; on a few harmonics one RIR's |H(f)|^2 would decide.)"""
    from ceasr.data.augment import reverberate as reverberate_wave
    from ceasr.data.augment import synthetic_rir
    from ceasr.data.feat_augment import reverberate

    burst = np.concatenate([0.1 * colored_noise("pink", int(0.6 * SR), np.random.default_rng(2)),
                            np.zeros(SR // 2, np.float32)])
    burst += 1e-4 * np.random.default_rng(3).standard_normal(len(burst)).astype(np.float32)  # a noise floor
    rt60, drr = 0.5, 3.0
    want = fbank(reverberate_wave(burst, synthetic_rir(rt60, np.random.default_rng(4), drr_db=drr)))
    dry = fbank(burst)
    got = reverberate(dry, rt60, drr)
    total = lambda x: 10 * torch.log10(x.double().exp().sum(-1))  # noqa: E731  frame energy in dB
    after = slice(62, 85)  # 20-250 ms after the burst ends at frame ~58
    assert float((total(dry)[after] - total(want)[after]).mean()) < -15  # the room's tail is real and loud
    assert float((total(got)[after] - total(want)[after]).abs().mean()) < 3.0  # and the features reproduce it
    assert float((total(got)[5:55] - total(want)[5:55]).abs().mean()) < 1.0  # during the burst too


def test_reverb_is_the_causal_convolution_of_the_energies_written_out():
    """The FFT convolution against the sum written out: E'[t, f] = sum_{k <= t} h[k] E[t - k, f], rescaled."""
    import math

    from ceasr.data.feat_augment import reverberate

    x = torch.randn(37, 5, generator=torch.Generator().manual_seed(0)) * 3
    rt60, drr, hop = 0.12, 4.0, 0.01
    d = 10 ** (-6 * hop / rt60)
    h = [10 ** (-drr / 10) * (1 - d) * d**k + (k == 0) for k in range(math.ceil(rt60 / hop))]  # 12 taps
    e = x.double().exp()
    want = torch.zeros_like(e)
    for t in range(e.shape[0]):
        for k in range(min(len(h), t + 1)):
            want[t] += h[k] * e[t - k]
    want = (want * (e.sum() / want.sum())).log().float()
    torch.testing.assert_close(reverberate(x, rt60, drr, hop), want, rtol=0, atol=1e-5)


def formant_filter(source: np.ndarray, formants=((500.0, 80.0), (1500.0, 100.0), (2500.0, 120.0))) -> np.ndarray:
    """``source`` through a cascade of two-pole resonators (frequency, bandwidth in Hz): a vowel's vocal tract."""
    h = np.zeros(2048)
    h[0] = 1.0
    for freq, bw in formants:  # the cascade's impulse response, resonator by resonator
        r = math.exp(-math.pi * bw / SR)
        a1, a2 = 2 * r * math.cos(2 * math.pi * freq / SR), -r * r
        y = np.zeros_like(h)
        for n in range(len(h)):
            y[n] = h[n] + a1 * (y[n - 1] if n >= 1 else 0.0) + a2 * (y[n - 2] if n >= 2 else 0.0)
        h = y * (1 - r)
    return np.convolve(source, h)[: len(source)].astype(np.float32)


def test_whisper_of_a_voiced_vowel_matches_the_filterbank_of_the_whispered_vowel():
    """Reference: the same vocal tract excited by 250 Hz pulses (a high voice: its harmonics stand out in the
    low mel bins) and by white noise of the pulses' power (whispered). Averaged over frames, the whispered
    energies per bin are the voiced ones with the harmonics smoothed out; frame by frame they fluctuate as
    the noise does."""
    period, n = 64, 2 * SR
    pulses = np.zeros(n)
    pulses[::period] = 1.0
    noise = np.random.default_rng(0).standard_normal(n) / math.sqrt(period)  # the same power per sample
    voiced, whispered = (fbank(10 * formant_filter(s))[10:-10] for s in (pulses, noise))
    white = fbank(colored_noise("white", n, np.random.default_rng(1)))[10:-10]
    got = whisper(voiced, smoothing_kernel(mel_centers(FEATS)), torch.zeros(FEATS.n_mels),
                  breath_fluctuation(white, 1.0))
    mean_db = lambda x: 10 * torch.log10(x.double().exp().mean(0))  # noqa: E731  per bin, over frames
    band = (mel_centers(FEATS) > 150) & (mel_centers(FEATS) < 4000)
    before = (mean_db(voiced) - mean_db(whispered))[band].abs()
    after = (mean_db(got) - mean_db(whispered))[band].abs()
    assert float(before.mean()) > 5 and float(before.max()) > 20  # the voice's harmonics and the gaps between
    assert float(after.mean()) < 2.5 and float(after.max()) < 8  # smoothed: the formants (blurred a little)
    # Frame-to-frame spread per bin: the whisper's, not the steady voice's.
    spread = lambda x: x.std(0)[band]  # noqa: E731
    assert float(spread(voiced).mean()) < 0.1 * float(spread(whispered).mean())
    assert float((spread(got) / spread(whispered)).log().abs().mean()) < math.log(1.15)


def test_breath_fluctuation_has_unit_mean_energy_and_scales_its_spread():
    white = fbank(colored_noise("white", SR, np.random.default_rng(2)))
    for power in (0.0, 0.3, 1.0):
        b = breath_fluctuation(white, power)
        torch.testing.assert_close(b.double().exp().mean(0), torch.ones(FEATS.n_mels, dtype=torch.float64))
        torch.testing.assert_close(b.std(0), power * white.std(0), rtol=1e-4, atol=1e-5)


def test_smoothing_kernel_averages_and_keeps_a_flat_spectrum():
    c = mel_centers(FEATS)
    k = smoothing_kernel(c, 150.0)
    torch.testing.assert_close(k.sum(1), torch.ones(FEATS.n_mels))
    assert bool(((k > 0) == ((c[:, None] - c[None, :]).abs() < 150.0)).all())  # within the width, nothing else
    assert float(k.diagonal()[-1]) == 1.0  # the top bins are more than 150 Hz apart: left alone
    flat = torch.full((3, FEATS.n_mels), 2.0).exp()
    torch.testing.assert_close(flat @ k.T, flat)


def test_whisper_leaves_silence_and_padding_alone_and_is_seeded():
    x, lens = batch_of(speechlike(0), speechlike(1)[: SR // 2])
    x[0, :5] = LOG_FLOOR  # digital silence
    aug = FeatAugment(FeatAugmentConfig(enabled=True, whisper_prob=1.0), FEATS)
    one = aug(x, lens, torch.Generator().manual_seed(3))
    torch.testing.assert_close(one, aug(x, lens, torch.Generator().manual_seed(3)))
    assert bool((one[0, :5] == LOG_FLOOR).all()) and not torch.allclose(one[0, 5:], x[0, 5:])
    assert bool((one[1, int(lens[1]):] == 0).all())


def test_whisper_tilt_is_so_many_db_per_octave_below_the_knee():
    c = mel_centers(FEATS)
    flat = torch.full((4, FEATS.n_mels), 1.5)
    calm = breath_fluctuation(torch.randn(4, FEATS.n_mels), 0.0)  # power 0: no fluctuation at all
    got = whisper(flat, smoothing_kernel(c), 6.0 * whisper_tilt(c), calm)
    change_db = (got - flat)[0].double() * 10 / math.log(10)
    want = torch.where(c < WHISPER_KNEE_HZ, -6.0 * torch.log2(WHISPER_KNEE_HZ / c), torch.zeros_like(c))
    torch.testing.assert_close(change_db, want, atol=1e-4, rtol=0)
    assert float(change_db[0]) < -6.0 * 3  # the lowest bin, more than three octaves down
