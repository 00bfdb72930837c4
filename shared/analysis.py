"""Acoustic analysis of infant cry recordings with Praat (through parselmouth) and numpy.

Pipeline, every parameter named in :class:`AnalysisParams` and stored with each result:

1. Intensity (Praat, dB) and pitch (Praat's autocorrelation method with a cry-suited
   150-1000 Hz range — Praat's adult defaults cut cry F0 off) on one frame grid.
2. **Cry units**: runs of frames whose intensity is within ``silence_threshold_db`` of
   the recording's loud level (its 95th percentile); runs separated by less than
   ``min_silence`` are joined, units shorter than ``min_unit`` dropped. A unit is
   voiced when at least ``voiced_unit_fraction`` of its frames have an F0.
3. **Cry episodes**: units closer than ``episode_gap`` form one episode; episodes
   shorter than ``min_episode`` or with less than ``min_episode_voicing`` of their
   sounding frames voiced are dropped. ``confidence`` is that voiced fraction: the
   share of the episode's cry-unit frames in which Praat finds a pitch.
4. Per-frame features inside episodes at ``time_step``: ``f0``; ``f1``-``f3`` (Burg,
   ``max_formant``); ``hnr`` (cross-correlation harmonicity); ``intensity``; and
   ``jitter``/``shimmer`` (local) measured over ``perturbation_window``-long windows
   of the episode's glottal pulses (Praat's PointProcess), each frame taking its
   window's value. Undefined values (unvoiced frames) are ``null``.
5. Per-episode statistics (mean, std, min, max, median of each feature; duration;
   frame count) plus Praat's jitter (local) and shimmer (local) over the whole
   episode, and per-episode cry units with ``cryCE``/``unvoicedCE``.

``cryCE`` has no published definition; here it is the voiced expiratory time (the
summed duration of voiced cry units) divided by the total expiratory time (the summed
duration of all cry units in the episode), and ``unvoicedCE = 1 - cryCE``. No
"normal" ranges are applied to HNR, jitter or shimmer: none are published for infant
cry.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import parselmouth
from parselmouth.praat import call
from pydantic import BaseModel, Field, model_validator

Progress = Callable[[int, str], None]
FEATURES = ("f0", "f1", "f2", "f3", "hnr", "jitter", "shimmer", "intensity")


class AnalysisParams(BaseModel):
    """Every parameter of the pipeline; stored with each result."""

    analysis_sample_rate: int = Field(16_000, ge=8_000, le=96_000)
    time_step: float = Field(0.01, gt=0.001, le=0.1, description="frame hop, seconds")
    pitch_floor: float = Field(150.0, ge=50, le=500, description="Hz; infant cry, not adult speech")
    pitch_ceiling: float = Field(
        1000.0, ge=300, le=2000, description="Hz; up to 2000 for hyperphonation"
    )
    max_formant: float = Field(8000.0, ge=3000, le=12_000, description="Hz, Burg formant ceiling")
    n_formants: float = Field(5.0, ge=3, le=6)
    silence_threshold_db: float = Field(25.0, gt=0, le=60, description="dB below the loud level")
    min_level_db: float = Field(
        20.0, description="absolute floor below which nothing is sound (dB SPL)"
    )
    min_silence: float = Field(0.05, ge=0.01, description="s; shorter gaps do not split a unit")
    min_unit: float = Field(0.1, ge=0.02, description="s; shorter units are dropped")
    voiced_unit_fraction: float = Field(0.5, gt=0, le=1)
    episode_gap: float = Field(2.0, gt=0, description="s; units closer than this share an episode")
    min_episode: float = Field(0.5, ge=0, description="s; shorter episodes are dropped")
    min_episode_voicing: float = Field(0.2, ge=0, le=1)
    perturbation_window: float = Field(
        0.25, ge=0.05, le=2.0, description="s, jitter/shimmer window"
    )
    max_period_factor: float = 1.3
    max_amplitude_factor: float = 1.6

    @model_validator(mode="after")
    def _ranges(self) -> AnalysisParams:
        if self.pitch_ceiling <= self.pitch_floor:
            raise ValueError("pitch_ceiling must be above pitch_floor")
        return self

    @property
    def shortest_period(self) -> float:
        return 0.8 / self.pitch_ceiling  # as Praat's voice report derives it

    @property
    def longest_period(self) -> float:
        return 1.25 / self.pitch_floor


def _round(v: float | None, nd: int = 4) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), nd)


def _on_grid(times: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values of a Praat contour at ``times``: nearest frame, NaN where it is undefined."""
    if len(xs) == 0:
        return np.full(len(times), np.nan)
    idx = np.clip(
        np.rint((times - xs[0]) / (xs[1] - xs[0] if len(xs) > 1 else 1)).astype(int), 0, len(xs) - 1
    )
    out = values[idx].astype(float)
    out[(times < xs[0] - 1e-9) | (times > xs[-1] + 1e-9)] = np.nan
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end-exclusive) index runs where ``mask`` is true."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _perturbation(
    sound: Any, points: Any, t0: float, t1: float, p: AnalysisParams
) -> tuple[float, float]:
    """Praat's jitter (local) and shimmer (local) of the pulses in [t0, t1]; NaN when
    there are too few."""
    args = (t0, t1, p.shortest_period, p.longest_period, p.max_period_factor)
    try:
        jitter = call(points, "Get jitter (local)", *args)
    except parselmouth.PraatError:
        jitter = math.nan
    try:
        shimmer = call([sound, points], "Get shimmer (local)", *args, p.max_amplitude_factor)
    except parselmouth.PraatError:
        shimmer = math.nan
    return jitter, shimmer


def _episode_features(
    x: np.ndarray,
    sr: int,
    offset: float,
    times: np.ndarray,
    start: float,
    end: float,
    p: AnalysisParams,
    max_formant: float,
) -> dict[str, Any]:
    """Formants, HNR and per-window jitter/shimmer of one episode (runs in a worker)."""
    sound = parselmouth.Sound(x, sampling_frequency=sr, start_time=offset)
    frames: dict[str, np.ndarray] = {}
    formant = sound.to_formant_burg(
        time_step=p.time_step, max_number_of_formants=p.n_formants, maximum_formant=max_formant
    )
    fx = np.array(formant.xs())
    for n in (1, 2, 3):
        values = call(formant, "To Matrix", n).values[0].astype(float)
        values[values <= 0] = np.nan
        frames[f"f{n}"] = _on_grid(times, fx, values)
    hnr = sound.to_harmonicity_cc(time_step=p.time_step, minimum_pitch=p.pitch_floor)
    hv = hnr.values[0].astype(float)
    hv[hv <= -199] = np.nan  # Praat's "undefined"
    frames["hnr"] = _on_grid(times, np.array(hnr.xs()), hv)
    pitch = sound.to_pitch_ac(
        time_step=p.time_step, pitch_floor=p.pitch_floor, pitch_ceiling=p.pitch_ceiling
    )
    points = call([sound, pitch], "To PointProcess (cc)")
    frames["jitter"] = np.full(len(times), np.nan)
    frames["shimmer"] = np.full(len(times), np.nan)
    for w0 in np.arange(start, end, p.perturbation_window):
        w1 = min(w0 + p.perturbation_window, end)
        sel = (times >= w0) & (times < w1)
        if sel.any():
            frames["jitter"][sel], frames["shimmer"][sel] = _perturbation(sound, points, w0, w1, p)
    jitter, shimmer = _perturbation(sound, points, start, end, p)
    return {"frames": frames, "jitter_local": jitter, "shimmer_local": shimmer}


def _map(fn: Callable, jobs: list[tuple], workers: int, sr: int) -> list[Any]:
    """``fn`` over ``jobs``, in worker processes when it pays (over ~30 s of audio) and
    the platform allows it (Lambda has no /dev/shm: there it runs inline)."""
    audio_s = sum(len(j[0]) for j in jobs) / sr
    if workers > 1 and len(jobs) > 1 and audio_s > 30:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        try:
            ctx = multiprocessing.get_context("spawn")  # safe from a threaded server
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                # biggest first, so the last job to finish is a short one
                order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0]))
                futures = {i: pool.submit(fn, *jobs[i]) for i in order}
                return [futures[i].result() for i in range(len(jobs))]
        except (OSError, PermissionError, NotImplementedError):
            pass
    return [fn(*j) for j in jobs]


class Analyzer:
    """Runs the pipeline over one mono signal."""

    def __init__(self, samples: np.ndarray, sample_rate: int, params: AnalysisParams) -> None:
        self.x = np.ascontiguousarray(samples, dtype=np.float64)
        self.sr = sample_rate
        self.p = params
        self.sound = parselmouth.Sound(self.x, sampling_frequency=sample_rate)
        self.max_formant = min(params.max_formant, sample_rate / 2 - 50)

    # --- contours on one grid -------------------------------------------------
    def contours(self) -> dict[str, np.ndarray]:
        p = self.p
        pitch = self.sound.to_pitch_ac(
            time_step=p.time_step, pitch_floor=p.pitch_floor, pitch_ceiling=p.pitch_ceiling
        )
        t = pitch.xs()
        f0 = pitch.selected_array["frequency"].astype(float)
        f0[f0 <= 0] = np.nan
        intensity = self.sound.to_intensity(minimum_pitch=p.pitch_floor, time_step=p.time_step)
        level = _on_grid(t, intensity.xs(), intensity.values[0])
        return {"time": t, "f0": f0, "intensity": level}

    # --- units and episodes -----------------------------------------------------
    def segment(self, c: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        p, t, level = self.p, c["time"], c["intensity"]
        finite = level[np.isfinite(level)]
        if finite.size == 0:
            return []
        loud = float(np.percentile(finite, 95))
        threshold = max(loud - p.silence_threshold_db, p.min_level_db)
        active = np.nan_to_num(level, nan=-np.inf) >= threshold
        dt = p.time_step
        runs = _runs(active)
        merged: list[list[int]] = []
        for s, e in runs:  # join runs split by gaps shorter than min_silence
            if merged and (s - merged[-1][1]) * dt < p.min_silence:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        voiced = np.isfinite(c["f0"])
        units = []
        for s, e in merged:
            start, end = t[s] - dt / 2, t[e - 1] + dt / 2
            if end - start < p.min_unit:
                continue
            units.append(
                {"i0": s, "i1": e, "start": start, "end": end, "voiced": float(voiced[s:e].mean())}
            )
        episodes: list[dict[str, Any]] = []
        for u in units:
            if episodes and u["start"] - episodes[-1]["units"][-1]["end"] < p.episode_gap:
                episodes[-1]["units"].append(u)
            else:
                episodes.append({"units": [u]})
        kept = []
        for ep in episodes:
            i0, i1 = ep["units"][0]["i0"], ep["units"][-1]["i1"]
            ep.update(i0=i0, i1=i1, start=ep["units"][0]["start"], end=ep["units"][-1]["end"])
            in_units = np.concatenate([voiced[u["i0"] : u["i1"]] for u in ep["units"]])
            ep["voicing"] = float(in_units.mean())  # of the sounding (expiratory) frames
            if ep["end"] - ep["start"] >= p.min_episode and ep["voicing"] >= p.min_episode_voicing:
                kept.append(ep)
        return kept

    # --- features ---------------------------------------------------------------
    def features(
        self,
        c: dict[str, np.ndarray],
        episodes: list[dict[str, Any]],
        progress: Progress,
        workers: int,
    ) -> None:
        """Formants, HNR and perturbation for each episode — independent, so spread over
        ``workers`` processes when there is enough audio to repay starting them."""
        t = c["time"]
        for name in ("f1", "f2", "f3", "hnr", "jitter", "shimmer"):
            c[name] = np.full(len(t), np.nan)
        if not episodes:
            return
        margin = 0.1  # context for Praat's analysis windows at the edges
        jobs = []
        for ep in episodes:
            a = max(0, int((ep["start"] - margin) * self.sr))
            b = min(len(self.x), int((ep["end"] + margin) * self.sr))
            jobs.append(
                (
                    self.x[a:b],
                    self.sr,
                    a / self.sr,
                    t[ep["i0"] : ep["i1"]],
                    ep["start"],
                    ep["end"],
                    self.p,
                    self.max_formant,
                )
            )
        for k, (ep, out) in enumerate(
            zip(episodes, _map(_episode_features, jobs, workers, self.sr), strict=True)
        ):
            for name, values in out["frames"].items():
                c[name][ep["i0"] : ep["i1"]] = values
            ep["jitter_local"], ep["shimmer_local"] = out["jitter_local"], out["shimmer_local"]
            progress(
                45 + int(40 * (k + 1) / len(episodes)),
                f"Features of episode {k + 1}/{len(episodes)}",
            )
        # jitter/shimmer are only defined on voiced frames
        unvoiced = ~np.isfinite(c["f0"])
        c["jitter"][unvoiced] = np.nan
        c["shimmer"][unvoiced] = np.nan

    # --- results -----------------------------------------------------------------
    def unit_record(self, u: dict[str, Any]) -> dict[str, Any]:
        a, b = int(u["start"] * self.sr), int(u["end"] * self.sr)
        seg = self.x[max(0, a) : b]
        spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) if len(seg) > 1 else np.zeros(1)
        freqs = np.fft.rfftfreq(len(seg), 1 / self.sr) if len(seg) > 1 else np.zeros(1)
        return {
            "start_time": _round(u["start"]),
            "end_time": _round(u["end"]),
            "duration": _round(u["end"] - u["start"]),
            "is_voiced": u["voiced"] >= self.p.voiced_unit_fraction,
            "voiced_fraction": _round(u["voiced"]),
            "mean_energy": _round(float(np.mean(seg**2)) if len(seg) else 0.0, 6),
            "peak_frequency": _round(float(freqs[int(np.argmax(spectrum))]), 2),
        }


def _stats(values: np.ndarray) -> dict[str, float | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "median": None}
    return {
        "mean": _round(v.mean()),
        "std": _round(v.std()),
        "min": _round(v.min()),
        "max": _round(v.max()),
        "median": _round(float(np.median(v))),
    }


def analyze(
    samples: np.ndarray,
    sample_rate: int,
    params: AnalysisParams | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Seed 001's ``result_data``: episodes, per-frame features, statistics and cry units.
    ``workers``: processes for the per-episode features (default: every core)."""
    params = params or AnalysisParams()
    report = progress or (lambda _pct, _msg: None)
    if samples.size < int(sample_rate * 0.064):  # Praat needs a few pitch periods
        raise ValueError(
            f"The recording is too short to analyse ({samples.size / sample_rate:.3f} s)"
        )
    az = Analyzer(samples, sample_rate, params)
    c = az.contours()
    report(35, "Pitch and intensity measured")
    episodes = az.segment(c)
    report(45, f"{len(episodes)} cry episode(s) detected")
    az.features(c, episodes, report, workers or os.cpu_count() or 1)

    result: dict[str, Any] = {
        "cry_episodes": [],
        "acoustic_features": {},
        "statistics": {},
        "cry_units": {},
    }
    for k, ep in enumerate(episodes):
        name = f"episode_{k}"
        sl = slice(ep["i0"], ep["i1"])
        result["cry_episodes"].append(
            {
                "start_time": _round(ep["start"]),
                "end_time": _round(ep["end"]),
                "duration": _round(ep["end"] - ep["start"]),
                "confidence": _round(ep["voicing"], 3),
            }
        )
        rows = np.column_stack([c["time"][sl]] + [c[f][sl] for f in FEATURES])
        result["acoustic_features"][name] = [
            {"time": _round(r[0]), **{f: _round(v) for f, v in zip(FEATURES, r[1:], strict=True)}}
            for r in rows
        ]
        stats: dict[str, Any] = {f: _stats(c[f][sl]) for f in FEATURES}
        stats.update(
            duration=_round(ep["end"] - ep["start"]),
            num_frames=int(ep["i1"] - ep["i0"]),
            voiced_fraction=_round(ep["voicing"]),
            jitter_local=_round(ep["jitter_local"], 6),
            shimmer_local=_round(ep["shimmer_local"], 6),
        )
        result["statistics"][name] = stats
        units = [az.unit_record(u) for u in ep["units"]]
        total = sum(u["duration"] for u in units)
        voiced = sum(u["duration"] for u in units if u["is_voiced"])
        cry_ce = voiced / total if total else 0.0
        result["cry_units"][name] = {
            "units": units,
            "unit_count": len(units),
            "cryCE": _round(cry_ce),
            "unvoicedCE": _round(1 - cry_ce),
        }
    result["parameters"] = {**params.model_dump(), "effective_max_formant": az.max_formant}
    return result


# --- visualisation data (bounded in size whatever the recording's length) -------------


def waveform(samples: np.ndarray, sample_rate: int, points: int = 2000) -> dict[str, Any]:
    """A min/max envelope of at most ``points`` buckets; ``amplitudes`` holds each
    bucket's extreme sample (signed), as seed 001's single-trace clients expect."""
    n = samples.size
    buckets = max(1, min(points, n))
    edges = np.linspace(0, n, buckets + 1).astype(int)
    lo = np.minimum.reduceat(samples, edges[:-1]) if n else np.zeros(1)
    hi = np.maximum.reduceat(samples, edges[:-1]) if n else np.zeros(1)
    extreme = np.where(np.abs(hi) >= np.abs(lo), hi, lo)
    centres = (edges[:-1] + edges[1:]) / 2 / sample_rate
    return {
        "times": np.round(centres, 4).tolist(),
        "amplitudes": np.round(extreme, 5).tolist(),
        "min": np.round(lo, 5).tolist(),
        "max": np.round(hi, 5).tolist(),
        "sample_rate": sample_rate,
        "duration": round(n / sample_rate, 4),
        "points": int(buckets),
    }


def spectrogram(
    samples: np.ndarray,
    sample_rate: int,
    *,
    n_fft: int = 512,
    hop_s: float = 0.01,
    max_frames: int = 400,
    frames_per_column: int = 16,
) -> dict[str, Any]:
    """Power spectrogram in dB (0 dB = the loudest cell) of ``n_fft``-point frames every
    ``hop_s``, in at most ``max_frames`` columns; a column averages up to
    ``frames_per_column`` frames spread over its span, so size and cost stay bounded."""
    hop = max(1, int(hop_s * sample_rate))
    x = samples if samples.size >= n_fft else np.pad(samples, (0, n_fft - samples.size))
    view = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    frames = len(view)
    bounds = np.linspace(0, frames, min(max_frames, frames) + 1).astype(int)
    window = np.hanning(n_fft)
    columns, times = [], []
    for a, b in itertools.pairwise(bounds):
        idx = np.unique(np.linspace(a, b - 1, min(frames_per_column, b - a)).astype(int))
        columns.append((np.abs(np.fft.rfft(view[idx] * window, axis=1)) ** 2).mean(axis=0))
        times.append(((a + b) / 2 * hop + n_fft / 2) / sample_rate)
    spec = np.array(columns)
    db = np.maximum(10 * np.log10(np.maximum(spec, 1e-20) / max(spec.max(), 1e-20)), -120.0)
    return {
        "spectrogram": np.round(
            db.T, 1
        ).tolist(),  # [frequency][time], as plotting libraries take it
        "times": np.round(times, 4).tolist(),
        "frequencies": np.round(np.fft.rfftfreq(n_fft, 1 / sample_rate), 2).tolist(),
        "sample_rate": sample_rate,
        "db_reference": "max",
    }
