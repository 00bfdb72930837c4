// Canvas drawing for the analysis view, in the manner of Praat's sound editor: a
// waveform panel (with the intensity contour) over a spectrogram panel (with formants
// and F0), one time axis for both. Everything takes the visible time range ``view``;
// the plot area of every panel spans the same pixels (MARGIN_LEFT .. width -
// MARGIN_RIGHT), so the DOM regions laid over it line up with what is drawn.
import type { Frame, Spectrogram, Waveform } from "./types";

export const MARGIN_LEFT = 64;
export const MARGIN_RIGHT = 64;
export const AXIS_HEIGHT = 24;

export interface View {
  start: number;
  end: number;
}

export interface Overlays {
  f0: boolean;
  formants: boolean;
  intensity: boolean;
}

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const COLORS = {
  axis: "#6b7280",
  grid: "#eef0f3",
  wave: "#1d2330",
  intensity: "#16a34a",
  f0: "#2563eb",
  formant: "#dc2626",
};

/** A canvas sized to its CSS box at the device's pixel ratio; the context draws in CSS px. */
export function prepare(canvas: HTMLCanvasElement, cssHeight: number): { ctx: CanvasRenderingContext2D; w: number; h: number } {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, canvas.clientWidth);
  canvas.style.height = `${cssHeight}px`;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(cssHeight * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(cssHeight * dpr);
  }
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, cssHeight);
  ctx.font = FONT;
  return { ctx, w, h: cssHeight };
}

/** Tick spacing of 1, 2 or 5 x 10^k giving about ``target`` ticks over ``span``. */
export function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

function ticks(lo: number, hi: number, target: number): number[] {
  if (!(hi > lo)) return [];
  const step = niceStep(hi - lo, target);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function decimals(step: number): number {
  return Math.max(0, Math.min(4, -Math.floor(Math.log10(step) + 1e-9)));
}

interface Area {
  x: number;
  y: number;
  w: number;
  h: number;
}

const xOf = (a: Area, v: View, t: number) => a.x + ((t - v.start) / (v.end - v.start)) * a.w;

function frame(ctx: CanvasRenderingContext2D, a: Area) {
  ctx.strokeStyle = "#c5cbd5";
  ctx.lineWidth = 1;
  ctx.strokeRect(a.x + 0.5, a.y + 0.5, a.w - 1, a.h - 1);
}

function yAxis(
  ctx: CanvasRenderingContext2D,
  a: Area,
  lo: number,
  hi: number,
  side: "left" | "right",
  label: string,
  color: string,
  grid: boolean,
) {
  const ts = ticks(lo, hi, Math.max(2, Math.floor(a.h / 40)));
  const d = ts.length > 1 ? decimals(ts[1] - ts[0]) : 0;
  ctx.fillStyle = color;
  ctx.textBaseline = "middle";
  ctx.textAlign = side === "left" ? "right" : "left";
  for (const v of ts) {
    const y = a.y + a.h - ((v - lo) / (hi - lo)) * a.h;
    if (grid) {
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(a.x, Math.round(y) + 0.5);
      ctx.lineTo(a.x + a.w, Math.round(y) + 0.5);
      ctx.stroke();
    }
    // labels at the panel's edges stay inside it (the top one would be cut in half)
    const ly = Math.max(a.y + 6, Math.min(a.y + a.h - 6, y));
    ctx.fillText(v.toFixed(d), side === "left" ? a.x - 6 : a.x + a.w + 6, ly);
  }
  ctx.save();
  ctx.translate(side === "left" ? 10 : a.x + a.w + MARGIN_RIGHT - 10, a.y + a.h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(label, 0, 0);
  ctx.restore();
}

/** The waveform panel: the min/max envelope, and the intensity contour on a dB axis. */
export function drawWaveform(canvas: HTMLCanvasElement, height: number, view: View, wf: Waveform, frames: Frame[], ov: Overlays) {
  const { ctx, w, h } = prepare(canvas, height);
  const a: Area = { x: MARGIN_LEFT, y: 4, w: w - MARGIN_LEFT - MARGIN_RIGHT, h: h - 8 };
  let peak = 0;
  for (let i = 0; i < wf.times.length; i++) peak = Math.max(peak, Math.abs(wf.min[i]), Math.abs(wf.max[i]));
  peak = peak || 1;
  yAxis(ctx, a, -peak, peak, "left", "amplitude", COLORS.axis, true);
  ctx.save();
  ctx.beginPath();
  ctx.rect(a.x, a.y, a.w, a.h);
  ctx.clip();
  const yOf = (v: number) => a.y + a.h / 2 - (v / peak) * (a.h / 2);
  // the buckets in view and one either side, as a filled band between min and max
  let i0 = 0;
  while (i0 < wf.times.length - 1 && wf.times[i0 + 1] < view.start) i0++;
  let i1 = wf.times.length - 1;
  while (i1 > 0 && wf.times[i1 - 1] > view.end) i1--;
  ctx.fillStyle = COLORS.wave;
  ctx.strokeStyle = COLORS.wave;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = i0; i <= i1; i++) ctx.lineTo(xOf(a, view, wf.times[i]), Math.min(yOf(wf.max[i]), yOf(0) - 0.5));
  for (let i = i1; i >= i0; i--) ctx.lineTo(xOf(a, view, wf.times[i]), Math.max(yOf(wf.min[i]), yOf(0) + 0.5));
  ctx.closePath();
  ctx.fill();
  ctx.stroke();
  ctx.restore();
  if (ov.intensity) {
    const vals = frames.map((f) => f.intensity).filter((v): v is number => v != null);
    if (vals.length) {
      const lo = Math.floor(Math.min(...vals) / 10) * 10;
      const hi = Math.ceil(Math.max(...vals) / 10) * 10 || lo + 10;
      yAxis(ctx, a, lo, hi === lo ? lo + 10 : hi, "right", "intensity (dB)", COLORS.intensity, false);
      const yI = (v: number) => a.y + a.h - ((v - lo) / ((hi === lo ? lo + 10 : hi) - lo)) * a.h;
      contour(ctx, a, view, frames, "intensity", yI, COLORS.intensity, 2);
    }
  }
  frame(ctx, a);
}

/** A feature's contour as line segments, broken where it is undefined or frames skip. */
function contour(
  ctx: CanvasRenderingContext2D,
  a: Area,
  view: View,
  frames: Frame[],
  key: keyof Frame,
  yOf: (v: number) => number,
  color: string,
  width: number,
) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(a.x, a.y, a.w, a.h);
  ctx.clip();
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  let prev: Frame | null = null;
  for (const f of frames) {
    const v = f[key] as number | null;
    if (v == null || f.time < view.start - 0.05 || f.time > view.end + 0.05) {
      prev = null;
      continue;
    }
    const x = xOf(a, view, f.time);
    if (prev && f.time - prev.time < 0.025) ctx.lineTo(x, yOf(v));
    else ctx.moveTo(x, yOf(v));
    prev = f;
  }
  ctx.stroke();
  ctx.restore();
}

/** The spectrogram as an image, one pixel per (time column, frequency bin), grey as in
 * Praat: white at ``range`` dB below the loudest cell and below, black at it. */
export function spectrogramImage(sp: Spectrogram, range = 70): HTMLCanvasElement {
  const nf = sp.frequencies.length;
  const nt = sp.times.length;
  const c = document.createElement("canvas");
  c.width = Math.max(1, nt);
  c.height = Math.max(1, nf);
  const ctx = c.getContext("2d")!;
  const img = ctx.createImageData(c.width, c.height);
  for (let j = 0; j < nf; j++) {
    const row = sp.spectrogram[j];
    const y = nf - 1 - j; // low frequencies at the bottom
    for (let i = 0; i < nt; i++) {
      const v = Math.max(0, Math.min(1, (row[i] + range) / range));
      const g = Math.round(255 * (1 - v));
      const o = (y * c.width + i) * 4;
      img.data[o] = g;
      img.data[o + 1] = g;
      img.data[o + 2] = g;
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/** The spectrogram panel with the time axis below it: formants (red dots, the panel's
 * frequency axis) and F0 (blue, its own axis on the right). */
export function drawSpectrogram(
  canvas: HTMLCanvasElement,
  height: number,
  view: View,
  sp: Spectrogram,
  image: HTMLCanvasElement,
  frames: Frame[],
  ov: Overlays,
  pitchCeiling: number,
) {
  const { ctx, w, h } = prepare(canvas, height);
  const a: Area = { x: MARGIN_LEFT, y: 0, w: w - MARGIN_LEFT - MARGIN_RIGHT, h: h - AXIS_HEIGHT };
  const fMax = sp.frequencies[sp.frequencies.length - 1] || sp.sample_rate / 2;
  // columns are centred at ``times``; the image spans from half a column before the first
  const nt = sp.times.length;
  const dt = nt > 1 ? (sp.times[nt - 1] - sp.times[0]) / (nt - 1) : 0.01;
  const t0 = sp.times[0] - dt / 2;
  const t1 = sp.times[nt - 1] + dt / 2;
  ctx.imageSmoothingEnabled = true;
  const sx = ((view.start - t0) / (t1 - t0)) * image.width;
  const sw = ((view.end - view.start) / (t1 - t0)) * image.width;
  ctx.save();
  ctx.beginPath();
  ctx.rect(a.x, a.y, a.w, a.h);
  ctx.clip();
  ctx.fillStyle = "#fff";
  ctx.fillRect(a.x, a.y, a.w, a.h);
  ctx.drawImage(image, sx, 0, sw, image.height, a.x, a.y, a.w, a.h);
  ctx.restore();
  yAxis(ctx, a, 0, fMax, "left", "frequency (Hz)", COLORS.axis, false);
  const dot = (x: number, y: number, r: number) => {
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fill();
  };
  ctx.save();
  ctx.beginPath();
  ctx.rect(a.x, a.y, a.w, a.h);
  ctx.clip();
  if (ov.formants) {
    ctx.fillStyle = COLORS.formant;
    for (const f of frames) {
      if (f.time < view.start || f.time > view.end) continue;
      const x = xOf(a, view, f.time);
      for (const k of ["f1", "f2", "f3"] as const) {
        const v = f[k];
        if (v != null && v <= fMax) dot(x, a.y + a.h - (v / fMax) * a.h, 1.6);
      }
    }
  }
  ctx.restore();
  if (ov.f0) {
    yAxis(ctx, a, 0, pitchCeiling, "right", "F0 (Hz)", COLORS.f0, false);
    contour(ctx, a, view, frames, "f0", (v) => a.y + a.h - (v / pitchCeiling) * a.h, COLORS.f0, 2.5);
  }
  frame(ctx, a);
  // the time axis, shared by both panels
  const ts = ticks(view.start, view.end, Math.max(2, Math.floor(a.w / 90)));
  const d = ts.length > 1 ? decimals(ts[1] - ts[0]) : 2;
  ctx.fillStyle = COLORS.axis;
  ctx.strokeStyle = COLORS.axis;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of ts) {
    const x = Math.round(xOf(a, view, t)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, a.y + a.h);
    ctx.lineTo(x, a.y + a.h + 4);
    ctx.stroke();
    ctx.fillText(t.toFixed(d), x, a.y + a.h + 6);
  }
  ctx.textAlign = "left";
  ctx.fillText("s", a.x + a.w + 30, a.y + a.h + 6); // clear of the last tick's label
}
