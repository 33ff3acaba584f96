"""ceasr.audio: good files load at 16 kHz as the analytic sine they hold; each kind of bad file is an AudioError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from ceasr import audio
from ceasr.errors import AudioError

# Lossy codecs change the waveform a little; the bound is on |loaded - analytic sine| away from the edges.
_TOLERANCE = {"wav": 1e-3, "flac": 1e-3, "ogg": 0.06, "mp3": 0.08}  # a 1-sample shift errs 0.14


def wav_bytes(sr=16000, channels=1, bits=16, fmt_tag=1, data=b"", data_len=None) -> bytes:
    """A canonical RIFF/WAVE file built by hand: 'fmt ' chunk then 'data' chunk (data_len may lie)."""
    block = channels * bits // 8
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, fmt_tag, channels, sr, sr * block, block, bits)
    size = len(data) if data_len is None else data_len
    body = b"WAVE" + fmt + struct.pack("<4sI", b"data", size) + data
    return struct.pack("<4sI", b"RIFF", len(body)) + body


def _pcm16(n=1600) -> bytes:
    return (np.sin(np.arange(n) / 5) * 10000).astype("<i2").tobytes()


def _peak_hz(wave, sr):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spectrum) * sr / len(wave)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_load_resamples_to_16k_and_keeps_the_sine(tmp_path, tone, fmt, sr):
    path = tmp_path / f"tone.{fmt}"
    seconds, freq = 0.3137, 700.0
    native = tone(path, seconds, sr, freq=freq, amp=0.5)
    wave = audio.load(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - len(native) * 16000 / sr) <= 1
    assert abs(_peak_hz(wave, 16000) - freq) <= 16000 / len(wave)  # within one FFT bin
    analytic = 0.5 * np.sin(2 * np.pi * freq * np.arange(len(wave)) / 16000)
    edge = 800  # 50 ms: resampler and codec edge effects
    assert np.abs(wave - analytic)[edge:-edge].max() < _TOLERANCE[fmt]
    assert np.abs(wave).max() <= 1.0


def test_load_to_other_rate(tmp_path, tone):
    tone(tmp_path / "a.wav", 0.25, 16000, freq=500.0)
    wave = audio.load(tmp_path / "a.wav", sample_rate=8000)
    assert len(wave) == 2000
    assert abs(_peak_hz(wave, 8000) - 500.0) <= 8000 / len(wave)


def test_stereo_is_mixed_to_the_channel_mean(tmp_path, tone):
    path = tmp_path / "st.wav"
    tone(path, 0.2, 16000, channels=2)
    ref, _ = sf.read(path, dtype="float32")  # (T, 2), no resampling at 16 kHz
    np.testing.assert_allclose(audio.load(path), ref.mean(axis=1), atol=1e-6)
    # channel 1 is channel 0 halved, so the mix is 0.75 of channel 0
    np.testing.assert_allclose(audio.load(path), 0.75 * ref[:, 0], atol=1e-4)


@pytest.mark.parametrize(
    "fmt,sr", [("wav", 16000), ("wav", 44100), ("flac", 22050), ("ogg", 48000), ("mp3", 8000), ("mp3", 44100)]
)
def test_segment_equals_slice_of_full_load(tmp_path, tone, fmt, sr):
    path = tmp_path / f"seg.{fmt}"
    tone(path, 1.5, sr, channels=2, freq=330.0)
    full = audio.load(path)
    for offset, duration in [(0.0, 0.1), (0.37, 0.5), (1.2, 0.25), (0.9, None)]:
        seg = audio.load(path, offset=offset, duration=duration)
        start = round(offset * 16000)
        ref = full[start:] if duration is None else full[start : start + round(duration * 16000)]
        assert len(seg) == len(ref)
        np.testing.assert_allclose(seg, ref, atol=1e-5)


def test_segment_reads_only_its_part(tmp_path, tone, monkeypatch):
    path = tmp_path / "long.wav"
    tone(path, 10.0, 48000)
    asked = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        asked.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    wave = audio.load(path, offset=5.0, duration=0.5)
    assert len(wave) == 8000
    assert asked and all(0 < n <= 0.6 * 48000 for n in asked)  # half a second plus a little context


def test_duration_past_the_end_is_cut(tmp_path, tone):
    tone(tmp_path / "a.flac", 1.0, 22050)
    assert len(audio.load(tmp_path / "a.flac", offset=0.8, duration=5.0)) == 16000 - round(0.8 * 16000)


def test_offset_beyond_the_end(tmp_path, tone):
    path = tmp_path / "a.wav"
    tone(path, 1.0, 16000)
    with pytest.raises(AudioError, match="beyond the end") as err:
        audio.load(path, offset=1.5)
    assert err.value.path == str(path)
    with pytest.raises(AudioError, match="bad offset"):
        audio.load(path, offset=-0.1)
    with pytest.raises(AudioError, match="bad duration"):
        audio.load(path, duration=0.0)


def test_info_reads_the_header(tmp_path, tone):
    tone(tmp_path / "a.flac", 0.75, 44100, channels=2)
    got = audio.info(tmp_path / "a.flac")
    assert got == audio.AudioInfo(sample_rate=44100, frames=33075, channels=2, duration=0.75)
    with pytest.raises(AttributeError):
        got.frames = 1  # frozen


def _float_wav(values) -> bytes:
    return wav_bytes(bits=32, fmt_tag=3, data=np.asarray(values, "<f4").tobytes())


BAD_FILES = {
    "text.wav": (b"this is a transcript, not audio\n", "not a readable audio file"),
    "notes.txt": (b"hello\n", "not a readable audio file"),
    "random.wav": (np.random.default_rng(0).bytes(2000), "not a readable audio file"),
    "cut_in_fmt.wav": (wav_bytes(data=_pcm16())[:20], "not a readable audio file"),
    "cut_before_data.wav": (wav_bytes(data=_pcm16())[:36], "not a readable audio file"),
    "riff_only.wav": (b"RIFF", "not a readable audio file"),
    "empty.wav": (b"", "not a readable audio file"),
    "zero_data.wav": (wav_bytes(data=b""), "no audio samples"),
    "rate_1hz.wav": (wav_bytes(sr=1, data=_pcm16()), "absurd sample rate 1 Hz"),
    "rate_2ghz.wav": (wav_bytes(sr=2_000_000_000, data=_pcm16()), "absurd sample rate"),
    "rate_0.wav": (wav_bytes(sr=0, data=_pcm16()), "not a readable audio file"),
    "no_channels.wav": (wav_bytes(channels=0, data=_pcm16()), "not a readable audio file"),
    "nan.wav": (_float_wav([0.1, np.nan, 0.2] * 100), "non-finite samples"),
    "inf.wav": (_float_wav([0.1, -np.inf, 0.2] * 100), "non-finite samples"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_an_audio_error_naming_it(tmp_path, name):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as err:
        audio.load(path)
    assert err.value.path == str(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["random.wav", "cut_in_fmt.wav", "zero_data.wav", "rate_1hz.wav"])
def test_info_rejects_bad_headers_too(tmp_path, name):
    content, reason = BAD_FILES[name]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        audio.info(tmp_path / name)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(AudioError, match="no such file") as err:
        audio.load(tmp_path / "nope.wav")
    assert err.value.path == str(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="no such file"):
        audio.info(tmp_path / "nope.flac")
    with pytest.raises(AudioError, match="directory"):
        audio.load(tmp_path)


def test_hand_built_wav_is_read_exactly(tmp_path):
    # The builder above is the reference for the bad cases, so check it makes a good file when asked to.
    samples = (np.arange(-800, 800) * 20).astype("<i2")
    (tmp_path / "ok.wav").write_bytes(wav_bytes(data=samples.tobytes()))
    np.testing.assert_array_equal(audio.load(tmp_path / "ok.wav"), samples / 32768.0)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_round_trip(tmp_path, suffix):
    wave = (0.6 * np.sin(np.arange(4000) / 7)).astype(np.float32)
    path = tmp_path / "sub" / f"out{suffix}"
    audio.save(path, wave, 16000)
    back, sr = sf.read(path, dtype="float32")
    assert sr == 16000 and sf.info(path).subtype == "PCM_16"
    np.testing.assert_allclose(back, wave, atol=1 / 32768)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_save_clips_and_keeps_channels(tmp_path):
    wave = np.stack([np.full(100, 1.7), np.full(100, -0.25)], axis=1)  # (T, 2)
    audio.save(tmp_path / "c.wav", wave, 8000)
    back, _ = sf.read(tmp_path / "c.wav")
    assert back.shape == (100, 2)
    np.testing.assert_allclose(back[:, 0], 32767 / 32768)
    np.testing.assert_allclose(back[:, 1], -0.25)


def test_save_rejects_bad_input_and_leaves_nothing(tmp_path):
    with pytest.raises(AudioError, match="cannot write '.xyz'"):
        audio.save(tmp_path / "a.xyz", np.zeros(10))
    with pytest.raises(AudioError, match="non-finite"):
        audio.save(tmp_path / "a.wav", np.array([0.0, np.nan]))
    with pytest.raises(AudioError, match="shape"):
        audio.save(tmp_path / "a.wav", np.zeros((2, 2, 2)))
    with pytest.raises(AudioError, match="cannot write audio"):
        audio.save(tmp_path / "a.mp3", np.zeros(1000), 1234)  # MPEG has no 1234 Hz
    assert list(tmp_path.iterdir()) == []


def test_save_then_load_mp3_and_ogg(tmp_path):
    wave = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    for suffix in (".ogg", ".mp3"):
        audio.save(tmp_path / f"x{suffix}", wave)
        back = audio.load(tmp_path / f"x{suffix}")
        assert abs(len(back) - 8000) <= 1
        assert abs(_peak_hz(back, 16000) - 440) <= 2


def test_level_spread_of_noise_bursts_tones_and_nothing():
    rng = np.random.default_rng(0)
    white = rng.standard_normal(48000)
    # a 25 ms frame's 100-4000 Hz energy sums ~190 chi-square(2) bins, averaged over 3 frames: sd ~5 %, 0.2 dB
    assert audio.level_spread_db(white) < 1.5
    two_levels = np.concatenate([white[:24000], 0.1 * white[24000:]])  # 20 dB apart, half the frames each
    assert audio.level_spread_db(two_levels) == pytest.approx(20.0, abs=1.0)
    t = np.arange(16000) / 16000
    assert audio.level_spread_db(np.sin(2 * np.pi * 1000 * t)) == pytest.approx(0.0, abs=0.01)  # steady tone
    rumble = np.sin(2 * np.pi * 20 * t) * (1 + np.sin(2 * np.pi * 2 * t))  # swings, but below the band
    assert audio.level_spread_db(rumble + 0.3 * white[:16000]) < 2.0
    assert audio.level_spread_db(rumble + 0.3 * white[:16000], band=(0.0, 8000.0)) > 10.0
    assert audio.level_spread_db(np.zeros(100)) == 0.0  # shorter than a frame


@pytest.mark.parametrize("n", [1, 2, 3, 150])
def test_percentile_of_sorted_values_is_numpys_linear_rule(n):
    values = sorted(np.random.default_rng(n).standard_normal(n).tolist())
    for p in (0.0, 5.0, 50.0, 95.0, 100.0):
        assert audio._percentile(values, p) == pytest.approx(np.percentile(values, p), abs=1e-12)
