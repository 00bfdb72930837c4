// The sound editor: waveform over spectrogram on one time axis, with F0, formant and
// intensity overlays, cry episodes and units as regions laid over both panels, zoom
// (wheel, buttons), pan, click-drag selection and playback of the selection.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { API, messageOf, token } from "../api";
import { ErrorBox } from "../ui";
import { AXIS_HEIGHT, MARGIN_LEFT, MARGIN_RIGHT, type Overlays, type View, drawSpectrogram, drawWaveform, spectrogramImage } from "./plot";
import type { AnalysisResult, Frame, Spectrogram, Waveform } from "./types";

const LANE = 14; // the cry-unit lane above the waveform
const WAVE_H = 150;
const SPEC_H = 250; // the spectrogram's plot area (the time axis comes below it)
const MIN_SPAN = 0.02; // s

const f3 = (t: number) => t.toFixed(3);

export interface Selection {
  start: number;
  end: number;
}

export function Editor({
  fileId,
  duration,
  result,
  wf,
  sp,
  view,
  setView,
}: {
  fileId: number;
  duration: number;
  result: AnalysisResult;
  wf: Waveform;
  sp: Spectrogram;
  view: View;
  setView: (v: View) => void;
}) {
  const data = result.result_data;
  const total = duration || wf.duration;
  const [ov, setOv] = useState<Overlays & { units: boolean }>({ f0: true, formants: true, intensity: true, units: true });
  const [sel, setSel] = useState<Selection | null>(null);
  const [cursor, setCursor] = useState<{ t: number; f: number | null } | null>(null);
  const [width, setWidth] = useState(0);
  const waveRef = useRef<HTMLCanvasElement>(null);
  const specRef = useRef<HTMLCanvasElement>(null);
  const layer = useRef<HTMLDivElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const image = useMemo(() => spectrogramImage(sp), [sp]);
  const playback = usePlayback(fileId, view);
  const frames = useMemo<Frame[]>(
    () =>
      Object.keys(data.acoustic_features)
        .sort((a, b) => Number(a.split("_")[1]) - Number(b.split("_")[1]))
        .flatMap((k) => data.acoustic_features[k]),
    [data],
  );
  const pitchCeiling = Number(data.parameters?.pitch_ceiling) || 1000;
  const fMax = sp.frequencies[sp.frequencies.length - 1] || sp.sample_rate / 2;

  // the view, clamped to the recording and to a shortest span
  const clamp = (start: number, end: number): View => {
    let span = Math.max(MIN_SPAN, Math.min(end - start, total));
    let s = Math.max(0, Math.min(start, total - span));
    return { start: s, end: s + span };
  };
  const zoom = (factor: number, at = (view.start + view.end) / 2) => {
    const span = (view.end - view.start) * factor;
    const k = (at - view.start) / (view.end - view.start);
    setView(clamp(at - k * span, at - k * span + span));
  };
  const pan = (fraction: number) => {
    const d = (view.end - view.start) * fraction;
    setView(clamp(view.start + d, view.end + d));
  };

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    if (!waveRef.current || !specRef.current || !width) return;
    const id = requestAnimationFrame(() => {
      drawWaveform(waveRef.current!, WAVE_H, view, wf, frames, ov);
      drawSpectrogram(specRef.current!, SPEC_H + AXIS_HEIGHT, view, sp, image, frames, ov, pitchCeiling);
    });
    return () => cancelAnimationFrame(id);
  }, [view, wf, sp, image, frames, ov, width, pitchCeiling]);

  // wheel: zoom about the pointer; sideways (or with shift): pan. Not passive: the page
  // must not scroll while the pointer is over the plot.
  const viewRef = useRef(view);
  viewRef.current = view;
  const zoomRef = useRef(zoom);
  zoomRef.current = zoom;
  const panRef = useRef(pan);
  panRef.current = pan;
  useEffect(() => {
    const el = layer.current;
    if (!el) return;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const v = viewRef.current;
      const r = el.getBoundingClientRect();
      const horizontal = e.shiftKey ? e.deltaY : e.deltaX;
      if (Math.abs(horizontal) > Math.abs(e.shiftKey ? 0 : e.deltaY)) panRef.current(horizontal / 1000);
      else zoomRef.current(Math.exp(e.deltaY * 0.002), v.start + ((e.clientX - r.left) / r.width) * (v.end - v.start));
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  }, []);

  const timeAt = (clientX: number) => {
    const r = layer.current!.getBoundingClientRect();
    const k = Math.max(0, Math.min(1, (clientX - r.left) / r.width));
    return view.start + k * (view.end - view.start);
  };
  const onMouseDown = (e: MouseEvent) => {
    if (e.button !== 0) return;
    e.preventDefault();
    const x0 = e.clientX;
    const t0 = timeAt(x0);
    const move = (m: MouseEvent) => {
      if (Math.abs(m.clientX - x0) < 3) return;
      const t1 = timeAt(m.clientX);
      setSel({ start: Math.min(t0, t1), end: Math.max(t0, t1) });
    };
    const up = (m: MouseEvent) => {
      removeEventListener("mousemove", move);
      removeEventListener("mouseup", up);
      if (Math.abs(m.clientX - x0) < 3) setSel(null); // a click: no selection
    };
    addEventListener("mousemove", move);
    addEventListener("mouseup", up);
  };
  const onMouseMove = (e: MouseEvent) => {
    const r = layer.current!.getBoundingClientRect();
    const y = e.clientY - r.top - LANE - WAVE_H;
    setCursor({ t: timeAt(e.clientX), f: y >= 0 && y <= SPEC_H ? (1 - y / SPEC_H) * fMax : null });
  };

  const span = view.end - view.start;
  const place = (a: number, b: number) => {
    const l = Math.max(a, view.start);
    const r = Math.min(b, view.end);
    if (r <= l) return null;
    return { left: `${((l - view.start) / span) * 100}%`, width: `${((r - l) / span) * 100}%` };
  };

  return (
    <div class="rec-editor">
      <div class="toolbar rec-editor-bar">
        <button onClick={() => zoom(0.5)} title="Zoom in (wheel up)">
          Zoom in
        </button>
        <button onClick={() => zoom(2)} title="Zoom out (wheel down)">
          Zoom out
        </button>
        <button disabled={!sel} onClick={() => sel && setView(clamp(sel.start, sel.end))}>
          Zoom to selection
        </button>
        <button onClick={() => setView({ start: 0, end: total })}>Show all</button>
        <button onClick={() => pan(-0.5)} title="Earlier (wheel sideways, or shift + wheel)" aria-label="Pan left">
          ◀
        </button>
        <button onClick={() => pan(0.5)} title="Later" aria-label="Pan right">
          ▶
        </button>
        <span class="muted">
          Visible:{" "}
          <span data-testid="visible-range" data-start={view.start} data-end={view.end}>
            {f3(view.start)} – {f3(view.end)} s
          </span>
        </span>
        <span class="spacer" />
        {(["f0", "formants", "intensity", "units"] as const).map((k) => (
          <label key={k} class={`rec-check rec-key-${k}`}>
            <input type="checkbox" checked={ov[k]} onChange={(e) => setOv({ ...ov, [k]: e.currentTarget.checked })} />
            {k === "f0" ? "F0" : k === "formants" ? "Formants" : k === "intensity" ? "Intensity" : "Cry units"}
          </label>
        ))}
      </div>
      <div class="rec-plot" ref={box}>
        <div class="rec-lane" style={{ height: `${LANE}px` }} />
        <canvas ref={waveRef} data-testid="waveform" class="rec-canvas" />
        <canvas ref={specRef} data-testid="spectrogram" class="rec-canvas" />
        <div
          ref={layer}
          class="rec-layer"
          data-testid="plot-layer"
          style={{ left: `${MARGIN_LEFT}px`, right: `${MARGIN_RIGHT}px`, bottom: `${AXIS_HEIGHT}px` }}
          onMouseDown={onMouseDown}
          onMouseMove={onMouseMove}
          onMouseLeave={() => setCursor(null)}
          onDblClick={() => setView({ start: 0, end: total })}
        >
          {data.cry_episodes.map((ep, k) => {
            const pos = place(ep.start_time, ep.end_time);
            return (
              pos && (
                <div
                  key={k}
                  class="rec-episode"
                  data-testid="episode-region"
                  data-index={k}
                  data-start={ep.start_time}
                  data-end={ep.end_time}
                  style={{ ...pos, top: `${LANE}px` }}
                  title={`Cry episode ${k + 1}: ${f3(ep.start_time)}–${f3(ep.end_time)} s`}
                >
                  <span>E{k + 1}</span>
                </div>
              )
            );
          })}
          {ov.units &&
            Object.entries(data.cry_units).flatMap(([name, eu]) =>
              eu.units.map((u, j) => {
                const pos = place(u.start_time, u.end_time);
                return (
                  pos && (
                    <div
                      key={`${name}-${j}`}
                      class={`rec-unit ${u.is_voiced ? "voiced" : "unvoiced"}`}
                      data-testid="unit-region"
                      data-start={u.start_time}
                      data-end={u.end_time}
                      style={{ ...pos, height: `${LANE - 3}px` }}
                      title={`${u.is_voiced ? "Voiced" : "Unvoiced"} cry unit: ${f3(u.start_time)}–${f3(u.end_time)} s, peak ${u.peak_frequency} Hz`}
                    />
                  )
                );
              }),
            )}
          {sel && place(sel.start, sel.end) && <div class="rec-selection" data-testid="selection" style={place(sel.start, sel.end)!} />}
          <div ref={playback.head} class="rec-playhead" style={{ display: "none" }} />
        </div>
      </div>
      <div class="toolbar rec-editor-foot">
        <span class="muted rec-cursor" data-testid="cursor">
          {cursor ? `${f3(cursor.t)} s${cursor.f != null ? ` · ${Math.round(cursor.f)} Hz` : ""}` : "Drag across the plot to select; wheel to zoom; double-click to show all"}
        </span>
        <span class="spacer" />
        {playback.state === "playing" ? (
          <button onClick={playback.stop} data-testid="stop">
            ■ Stop
          </button>
        ) : (
          <button class="primary" onClick={() => playback.play(sel ?? view)} disabled={playback.state === "loading"} data-testid="play">
            ▶ {sel ? "Play selection" : "Play visible"}
          </button>
        )}
        <span class="muted" data-testid="playback">
          {playback.state === "loading" ? "Loading audio…" : playback.playing ? `Playing ${f3(playback.playing.start)} – ${f3(playback.playing.end)} s` : ""}
        </span>
        <span data-testid="selection-range">
          {sel ? `Selection ${f3(sel.start)} – ${f3(sel.end)} s (${f3(sel.end - sel.start)} s)` : "No selection"}
        </span>
        {sel && <button onClick={() => setSel(null)}>Clear selection</button>}
      </div>
      <ErrorBox error={playback.error} />
    </div>
  );
}

/** Playback of a time range of the recording as uploaded (fetched once, with the
 * token, and decoded by Web Audio: it starts and stops on the sample); ``head`` is the
 * playhead element, moved across the plot while it plays. */
function usePlayback(fileId: number, view: View) {
  const audio = useRef<{ ctx: AudioContext; buf: AudioBuffer } | null>(null);
  const source = useRef<AudioBufferSourceNode | null>(null);
  const head = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<"idle" | "loading" | "playing">("idle");
  const [playing, setPlaying] = useState<Selection | null>(null);
  const [error, setError] = useState<unknown>(null);
  const viewRef = useRef(view);
  viewRef.current = view;

  useEffect(
    () => () => {
      source.current?.stop();
      audio.current?.ctx.close();
    },
    [],
  );

  const load = async () => {
    if (audio.current) return audio.current;
    const res = await fetch(`${API}/audio-files/${fileId}/stream`, { headers: { Authorization: `Bearer ${token() ?? ""}` } });
    if (!res.ok) throw messageOf(await res.json().catch(() => ({})), res.status);
    const bytes = await res.arrayBuffer();
    const ctx = new AudioContext();
    const buf = await ctx.decodeAudioData(bytes);
    audio.current = { ctx, buf };
    return audio.current;
  };

  const stop = () => {
    const src = source.current;
    source.current = null;
    src?.stop();
  };

  const play = async (range: Selection) => {
    setError(null);
    stop();
    try {
      setState("loading");
      const { ctx, buf } = await load();
      await ctx.resume();
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(ctx.destination);
      const from = Math.min(range.start, buf.duration);
      const length = Math.max(0, Math.min(range.end, buf.duration) - from);
      const began = ctx.currentTime;
      src.onended = () => {
        if (source.current === src || source.current === null) {
          source.current = null;
          setState("idle");
          setPlaying(null);
        }
      };
      src.start(0, from, length);
      source.current = src;
      setState("playing");
      setPlaying(range);
      const tick = () => {
        if (!head.current) return;
        if (source.current !== src) {
          head.current.style.display = "none";
          return;
        }
        const t = from + (ctx.currentTime - began);
        const v = viewRef.current;
        const k = (t - v.start) / (v.end - v.start);
        head.current.style.display = k >= 0 && k <= 1 ? "block" : "none";
        head.current.style.left = `${k * 100}%`;
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    } catch (e) {
      setState("idle");
      setError(e);
    }
  };

  return { head, state, playing, error, play, stop };
}
