"""Synthetic signals whose truth is known: harmonic cry-like phonations with set F0
contours and boundaries, glottal pulse trains with set jitter and shimmer, noise."""

from __future__ import annotations

import io
import wave

import numpy as np


def phonation(f0, duration: float, sr: int, *, harmonics: int = 8, amp: float = 0.5) -> np.ndarray:
    """A harmonic complex following ``f0`` (Hz, constant or a function of time in s)."""
    t = np.arange(int(duration * sr)) / sr
    freq = f0(t) if callable(f0) else np.full_like(t, float(f0))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    x = sum(
        (0.7**k) * np.sin((k + 1) * phase)
        for k in range(harmonics)
        if (k + 1) * freq.max() < sr / 2
    )
    ramp = min(len(t) // 2, int(0.005 * sr))
    env = np.ones_like(t)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[len(t) - ramp :] = np.linspace(1, 0, ramp)
    return amp * x / np.max(np.abs(x)) * env


def cry(
    sr: int,
    total: float,
    units: list[tuple[float, float, object]],
    *,
    noise_db: float = -60,
    seed: int = 0,
) -> np.ndarray:
    """Voiced units (start, end, f0) placed in low-level noise ``noise_db`` below full scale."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 10 ** (noise_db / 20), int(total * sr))
    for start, end, f0 in units:
        seg = phonation(f0, end - start, sr)
        i = int(start * sr)
        x[i : i + len(seg)] += seg
    return x


def pulse_train(
    sr: int, duration: float, f0: float, *, jitter: float, shimmer: float, seed: int = 1
) -> np.ndarray:
    """Glottal pulses (damped resonances, placed with sub-sample precision) whose periods
    and amplitudes vary at random by the given relative amounts."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(duration * sr))
    span = int(0.02 * sr)
    t = 0.01
    while t < duration - 0.03:
        i = int(np.ceil(t * sr))
        local = (i + np.arange(span)) / sr - t  # exact time since this pulse
        a = 1 + shimmer * rng.standard_normal()
        n = min(span, len(x) - i)
        x[i : i + n] += a * (np.exp(-local * 900) * np.sin(2 * np.pi * 1200 * local))[:n]
        t += (1 / f0) * (1 + jitter * rng.standard_normal())
    return 0.5 * x / np.max(np.abs(x))


def wav_bytes(x: np.ndarray, sr: int, channels: int = 1) -> bytes:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def encode(x: np.ndarray, sr: int, fmt: str) -> bytes:
    """Encode mono audio with PyAV's FFmpeg: mp3, flac, m4a (AAC) or ogg (Opus, 48 kHz only)."""
    import av

    container_fmt, codec = {
        "mp3": ("mp3", "libmp3lame"),
        "flac": ("flac", "flac"),
        "m4a": ("ipod", "aac"),
        "ogg": ("ogg", "libopus"),
    }[fmt]
    out = io.BytesIO()
    with av.open(out, "w", format=container_fmt) as c:
        stream = c.add_stream(codec, rate=sr, layout="mono")
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()
