"""The analysis engine against signals whose truth is known (and against Praat's own
voice report on the same signal)."""

import re
import shutil
import subprocess

import numpy as np
import parselmouth
import pytest
from parselmouth.praat import call

from shared.analysis import AnalysisParams, analyze, spectrogram, waveform
from shared.audio import decode
from tests.audio.synth import cry, pulse_train, wav_bytes

SR = 16_000


def frames(result, episode=0):
    return result["acoustic_features"][f"episode_{episode}"]


def test_f0_follows_set_contours_within_2_percent():
    glide = lambda t: 400 + 200 * t  # noqa: E731 - 400 -> 700 Hz over 1.5 s
    units = [(0.5, 2.0, glide), (2.3, 3.3, 900.0)]
    result = analyze(cry(SR, 4.0, units, noise_db=-50), SR)
    truth = {0: (0.5, 2.0, glide), 1: (2.3, 3.3, lambda t: 900.0)}
    errors = []
    for start, end, f in truth.values():
        for fr in frames(result):
            if start + 0.03 <= fr["time"] <= end - 0.03 and fr["f0"] is not None:
                errors.append(abs(fr["f0"] - f(fr["time"] - start)) / f(fr["time"] - start))
    assert len(errors) > 200
    assert max(errors) < 0.02, f"worst F0 error {max(errors):.3%}"


def test_hyperphonation_needs_and_gets_a_higher_ceiling():
    x = cry(SR, 2.0, [(0.5, 1.5, 1500.0)], noise_db=-50)
    default = analyze(x, SR)
    high = analyze(x, SR, AnalysisParams(pitch_ceiling=2000))
    f0 = [fr["f0"] for fr in frames(high) if fr["f0"]]
    assert np.median(f0) == pytest.approx(1500, rel=0.02)
    assert (
        not default["cry_episodes"] or np.median([fr["f0"] or 0 for fr in frames(default)]) < 1450
    )


def test_episode_and_unit_boundaries_within_50_ms():
    units = [(0.40, 1.20, 450.0), (1.45, 2.10, 520.0), (2.40, 3.00, 480.0), (6.00, 7.50, 600.0)]
    result = analyze(cry(SR, 9.0, units, noise_db=-45, seed=3), SR)
    eps = result["cry_episodes"]
    got = [t for e in eps for t in (e["start_time"], e["end_time"])]
    assert got == pytest.approx([0.4, 3.0, 6.0, 7.5], abs=0.05)
    units_found = [u for k in range(2) for u in result["cry_units"][f"episode_{k}"]["units"]]
    got = [t for u in units_found for t in (u["start_time"], u["end_time"])]
    assert got == pytest.approx([t for s, e, _ in units for t in (s, e)], abs=0.05)
    assert all(e["confidence"] > 0.8 for e in eps)


def test_short_gaps_join_and_short_units_drop():
    p = AnalysisParams()
    units = [(0.5, 1.0, 450.0), (1.03, 1.5, 450.0), (2.0, 2.06, 450.0), (2.2, 3.0, 450.0)]
    result = analyze(cry(SR, 4.0, units, noise_db=-50), SR, p)
    got = [
        t
        for u in result["cry_units"]["episode_0"]["units"]
        for t in (u["start_time"], u["end_time"])
    ]
    # the 30 ms gap (< min_silence) joins; the 60 ms unit (< min_unit) is dropped
    assert got == pytest.approx([0.5, 1.5, 2.2, 3.0], abs=0.05)


def test_voiced_and_unvoiced_units_and_cry_ce():
    rng = np.random.default_rng(7)
    x = cry(SR, 5.0, [(0.5, 1.5, 450.0), (2.5, 3.5, 500.0)], noise_db=-50)
    noise = rng.normal(0, 0.2, int(0.6 * SR))  # an unvoiced (breathy, aperiodic) unit
    x[int(1.8 * SR) : int(2.4 * SR)] += noise
    result = analyze(x, SR)
    units = result["cry_units"]["episode_0"]
    assert [u["is_voiced"] for u in units["units"]] == [True, False, True]
    voiced = sum(u["duration"] for u in units["units"] if u["is_voiced"])
    total = sum(u["duration"] for u in units["units"])
    assert units["cryCE"] == pytest.approx(voiced / total, abs=1e-3)
    assert units["cryCE"] == pytest.approx(2.0 / 2.6, abs=0.03)
    assert units["unvoicedCE"] == pytest.approx(1 - units["cryCE"], abs=1e-4)
    assert units["units"][0]["peak_frequency"] == pytest.approx(450, rel=0.02)


def _voice_report(x, sr, t0, t1, p: AnalysisParams) -> tuple[float, float]:
    sound = parselmouth.Sound(x, sampling_frequency=sr)
    pitch = sound.to_pitch_ac(
        time_step=p.time_step, pitch_floor=p.pitch_floor, pitch_ceiling=p.pitch_ceiling
    )
    points = call([sound, pitch], "To PointProcess (cc)")
    report = call(
        [sound, pitch, points],
        "Voice report",
        t0,
        t1,
        p.pitch_floor,
        p.pitch_ceiling,
        p.max_period_factor,
        p.max_amplitude_factor,
        0.03,
        0.45,
    )
    jitter = float(re.search(r"Jitter \(local\): ([\d.]+)%", report).group(1)) / 100
    shimmer = float(re.search(r"Shimmer \(local\): ([\d.]+)%", report).group(1)) / 100
    return jitter, shimmer


@pytest.mark.parametrize(("jitter", "shimmer"), [(0.005, 0.03), (0.015, 0.08), (0.03, 0.15)])
def test_jitter_and_shimmer_match_praats_voice_report(jitter, shimmer):
    x = np.zeros(int(3.0 * SR))
    x[int(0.5 * SR) : int(2.5 * SR)] = pulse_train(SR, 2.0, 420.0, jitter=jitter, shimmer=shimmer)
    p = AnalysisParams()
    result = analyze(x, SR, p)
    ep = result["cry_episodes"][0]
    stats = result["statistics"]["episode_0"]
    ref_j, ref_s = _voice_report(x, SR, ep["start_time"], ep["end_time"], p)
    assert stats["jitter_local"] == pytest.approx(ref_j, rel=0.10)
    assert stats["shimmer_local"] == pytest.approx(ref_s, rel=0.10)
    # and the set perturbation is what is measured (local jitter of N(0, j) periods ~ j * 2/sqrt(pi))
    assert stats["jitter_local"] == pytest.approx(jitter * 2 / np.sqrt(np.pi), rel=0.35)
    framed = [fr["jitter"] for fr in frames(result) if fr["jitter"] is not None]
    assert len(framed) > 100 and np.median(framed) == pytest.approx(stats["jitter_local"], rel=0.35)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make test installs espeak-ng")
def test_espeak_speech(tmp_path):
    wav = tmp_path / "speech.wav"
    env = {
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "hello world, this is a test of the cry analyser"],
        check=True,
        env=env,
        capture_output=True,
    )
    speech, sr, _ = decode(wav, SR)
    x = np.concatenate([np.zeros(SR), speech, np.zeros(SR)])
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    onset, offset = loud[0] / sr, loud[-1] / sr
    adult = AnalysisParams(pitch_floor=75, pitch_ceiling=400, max_formant=5500)
    result = analyze(x, sr, adult)
    assert len(result["cry_episodes"]) == 1
    ep = result["cry_episodes"][0]
    assert ep["start_time"] == pytest.approx(onset, abs=0.05)
    assert ep["end_time"] == pytest.approx(offset, abs=0.05)
    # F0 on voiced frames agrees with Praat's cross-correlation method within 2% (90% of frames)
    pitch_cc = parselmouth.Sound(x, sampling_frequency=sr).to_pitch_cc(
        time_step=0.01, pitch_floor=75, pitch_ceiling=400
    )
    ours = [(fr["time"], fr["f0"]) for fr in frames(result) if fr["f0"]]
    pairs = [(f, pitch_cc.get_value_at_time(t)) for t, f in ours]
    pairs = [(a, b) for a, b in pairs if b == b]  # both voiced
    close = np.mean([abs(a - b) / b < 0.02 for a, b in pairs])
    assert len(pairs) > 50 and close > 0.9
    assert 70 < result["statistics"]["episode_0"]["f0"]["median"] < 250
    units = result["cry_units"]["episode_0"]
    assert units["unit_count"] >= 2 and 0 < units["cryCE"] <= 1


def test_visualisation_sizes_are_bounded():
    x = np.random.default_rng(0).normal(0, 0.1, SR * 60 * 30)  # 30 minutes
    w = waveform(x, SR)
    s = spectrogram(x, SR)
    assert len(w["times"]) == 2000 and w["duration"] == pytest.approx(1800)
    assert len(s["times"]) == 400 and len(s["frequencies"]) == 257
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    s = spectrogram(tone, SR)
    peak = np.argmax(np.array(s["spectrogram"])[:, 10])
    assert s["frequencies"][peak] == pytest.approx(1000, abs=32)


def test_silence_has_no_episodes_and_too_short_is_refused():
    assert analyze(np.zeros(SR * 2), SR)["cry_episodes"] == []
    with pytest.raises(ValueError, match="too short"):
        analyze(np.zeros(100), SR)


def test_decoding_averages_channels_and_reports_clipping(tmp_path):
    x = cry(SR, 1.0, [(0.2, 0.8, 450.0)])
    path = tmp_path / "s.wav"
    path.write_bytes(wav_bytes(np.clip(x * 3, -1, 1), SR, channels=2))
    mono, sr, clipped = decode(path)
    assert sr == SR and mono.shape == (SR,) and clipped > 0.05
    assert np.abs(mono).max() == pytest.approx(1.0, abs=1e-3)
