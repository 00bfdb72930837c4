"""Cry analysis on a 10-minute, 44.1 kHz cry-like recording: the full pipeline (decode,
resample, segment, every feature, statistics, units, waveform and spectrogram, JSON)
against the bare parselmouth calls it builds on (pitch, formants, harmonicity,
intensity, point process) over the same audio the pipeline analyses, in one run, each
in a fresh process. Prints both times, the ratio (target <= 1.3x), the real-time
factor (target <= 0.01 on 2 cores) and peak memory.

    .venv/bin/python bench/analysis.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_recording(path: Path, minutes: float, sr: int = 44_100) -> None:
    """Cry bouts of 10-30 s (units of 0.5-1.5 s with rising-falling F0 of 350-650 Hz,
    pauses of 0.15-0.6 s) separated by 2-6 s of quiet, in low-level noise."""
    import numpy as np

    from tests.audio.synth import cry, wav_bytes

    rng = np.random.default_rng(42)
    total = minutes * 60
    units, t = [], 1.0
    while t < total - 3:
        bout_end = min(t + rng.uniform(10, 30), total - 2)
        while t < bout_end:
            d = rng.uniform(0.5, 1.5)
            base, rise = rng.uniform(350, 550), rng.uniform(50, 100)
            units.append((t, t + d, lambda x, b=base, r=rise, d=d: b + r * np.sin(np.pi * x / d)))
            t += d + rng.uniform(0.15, 0.6)
        t += rng.uniform(2, 6)
    path.write_bytes(wav_bytes(cry(sr, total, units, noise_db=-50), sr))


def run_pipeline(wav: Path) -> dict:
    from shared.analysis import AnalysisParams, analyze, spectrogram, waveform
    from shared.audio import decode

    params = AnalysisParams()
    t0 = time.perf_counter()
    samples, sr, _ = decode(wav, params.analysis_sample_rate)
    result = analyze(samples, sr, params)
    viz = {"waveform": waveform(samples, sr), "spectrogram": spectrogram(samples, sr)}
    size = len(json.dumps(result)) + len(json.dumps(viz))
    return {
        "seconds": time.perf_counter() - t0,
        "episodes": len(result["cry_episodes"]),
        "frames": sum(len(v) for v in result["acoustic_features"].values()),
        "json_mb": round(size / 1e6, 1),
    }


def run_bare(wav: Path, rate: int | None) -> dict:
    import parselmouth
    from parselmouth.praat import call

    from shared.analysis import AnalysisParams
    from shared.audio import decode

    p = AnalysisParams()
    samples, sr, _ = decode(wav, rate)  # decoding is not timed: Praat's calls alone
    t0 = time.perf_counter()
    sound = parselmouth.Sound(samples, sampling_frequency=sr)
    pitch = sound.to_pitch_ac(
        time_step=p.time_step, pitch_floor=p.pitch_floor, pitch_ceiling=p.pitch_ceiling
    )
    sound.to_formant_burg(
        time_step=p.time_step,
        max_number_of_formants=p.n_formants,
        maximum_formant=min(p.max_formant, sr / 2 - 50),
    )
    sound.to_harmonicity_cc(time_step=p.time_step, minimum_pitch=p.pitch_floor)
    sound.to_intensity(minimum_pitch=p.pitch_floor, time_step=p.time_step)
    call([sound, pitch], "To PointProcess (cc)")
    return {"seconds": time.perf_counter() - t0}


def measure(kind: str, wav: Path, rate: int | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(wav), str(rate or 0)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(kind: str, wav: str, rate: str) -> None:
    res = run_pipeline(Path(wav)) if kind == "pipeline" else run_bare(Path(wav), int(rate) or None)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res["peak_mb"] = round(max(own, kids) / 1024, 1)
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    from shared.analysis import AnalysisParams

    rate = AnalysisParams().analysis_sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "cry.wav"
        make_recording(wav, args.minutes)
        audio_s = args.minutes * 60
        pipeline = measure("pipeline", wav)
        bare = measure("bare", wav, rate)
        bare_native = measure("bare", wav, None)
    print(
        f"{args.minutes:g}-minute 44.1 kHz cry-like recording "
        f"({pipeline['episodes']} episodes, {pipeline['frames']} analysed frames, "
        f"{pipeline['json_mb']} MB of result JSON)"
    )
    print(
        f"  full pipeline (decode -> results, viz):   {pipeline['seconds']:6.2f} s  peak {pipeline['peak_mb']} MB"
    )
    print(
        f"  bare parselmouth calls at {rate} Hz:    {bare['seconds']:6.2f} s  peak {bare['peak_mb']} MB"
    )
    print(f"  (bare calls at the native 44.1 kHz:       {bare_native['seconds']:6.2f} s)")
    print(
        f"  ratio pipeline / bare: {pipeline['seconds'] / bare['seconds']:.2f}x  (target <= 1.3x)"
    )
    print(f"  real-time factor: {pipeline['seconds'] / audio_s:.4f}  (target <= 0.01)")


if __name__ == "__main__":
    main()
