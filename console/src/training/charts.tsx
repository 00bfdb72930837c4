// Training curves: uPlot line charts of (x, y) series that grow as events arrive, with
// raw and EMA-smoothed lines, a log scale, drag-to-zoom on x (double-click resets), and
// the confusion-matrix heatmap on a canvas.
//
// Each chart's container carries what a test (or a curious person) can read without
// pixels: data-points (the points of its raw series, all together), data-series (their
// labels) and, per series, data-points-<index>.
import { useEffect, useLayoutEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export const PALETTE = ["#2f6fde", "#d64545", "#1f9d55", "#c58a00", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

/** One curve: points by x (an epoch, or a position within one: 2.5 = half way into epoch 3). */
export interface Curve {
  label: string;
  color: string;
  points: Map<number, number>;
  dash?: number[];
}

/** Exponential moving average with TensorBoard's debiasing (the first points are not
 * pulled towards zero); ``weight`` 0 returns the values as they are. Nulls stay null and
 * do not move the average. */
export function ema(values: (number | null)[], weight: number): (number | null)[] {
  if (weight <= 0) return values.slice();
  let last = 0;
  let n = 0;
  return values.map((v) => {
    if (v == null || !Number.isFinite(v)) return null;
    last = last * weight + (1 - weight) * v;
    n++;
    return last / (1 - Math.pow(weight, n));
  });
}

/** The curves on one shared x axis (uPlot's aligned data): each curve null where it has
 * no point. */
export function align(curves: Curve[]): { xs: number[]; ys: (number | null)[][] } {
  const all = new Set<number>();
  for (const c of curves) for (const x of c.points.keys()) all.add(x);
  const xs = [...all].sort((a, b) => a - b);
  const ys = curves.map((c) => xs.map((x) => (c.points.has(x) ? c.points.get(x)! : null)));
  return { xs, ys };
}

export function pointCount(curves: Curve[]): number {
  return curves.reduce((n, c) => n + c.points.size, 0);
}

interface ChartProps {
  title: string;
  curves: Curve[];
  /** EMA weight in [0, 1): 0 shows raw lines only; above it, each raw line faint and its
   * smoothed line over it. */
  smoothing?: number;
  log?: boolean;
  xLabel?: string;
  height?: number;
  testid?: string;
  yFormat?: (v: number) => string;
}

/** A line chart of ``curves``; data changes redraw it in place (keeping a zoom the person
 * chose), options changes (series, log scale, smoothing on/off) rebuild it. */
export function LineChart({ title, curves, smoothing = 0, log = false, xLabel = "epoch", height = 240, testid, yFormat }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoomed = useRef(false);
  const smooth = smoothing > 0;
  const { xs, ys } = align(curves);
  const shown: (number | null)[][] = [];
  for (const y of ys) {
    const clean = log ? y.map((v) => (v != null && v > 0 ? v : null)) : y;
    shown.push(clean);
    if (smooth) shown.push(ema(clean, smoothing));
  }
  const data = [xs, ...shown] as uPlot.AlignedData;
  const shape = `${curves.map((c) => c.label).join("|")}#${log}#${smooth}#${height}`;

  useLayoutEffect(() => {
    const el = box.current!;
    const series: uPlot.Series[] = [{ label: xLabel }];
    for (const c of curves) {
      series.push({
        label: smooth ? `${c.label} (raw)` : c.label,
        class: smooth ? "tchart-raw" : undefined, // its smoothed line speaks for it in the legend
        stroke: smooth ? fade(c.color) : c.color,
        width: smooth ? 1 : 1.75,
        dash: c.dash,
        spanGaps: true,
        points: { show: c.points.size < 40, size: 4 },
        value: (_u, v) => (v == null ? "—" : fmt(v)),
      });
      if (smooth)
        series.push({
          label: c.label,
          stroke: c.color,
          width: 2,
          dash: c.dash,
          spanGaps: true,
          points: { show: c.points.size < 40, size: 4 },
          value: (_u, v) => (v == null ? "—" : fmt(v)),
        });
    }
    const opts: uPlot.Options = {
      width: Math.max(320, el.clientWidth),
      height,
      series,
      scales: { x: { time: false }, y: log ? { distr: 3, log: 10 } : { auto: true } },
      axes: [
        { label: xLabel, size: 40 },
        { size: 64, values: (_u, ticks) => ticks.map((t) => (yFormat ?? fmt)(t)) },
      ],
      cursor: { drag: { x: true, y: false, setScale: true } },
      legend: { live: true },
      hooks: {
        setScale: [
          (u, key) => {
            if (key !== "x") return;
            const x = u.data[0];
            const min = u.scales.x.min;
            const max = u.scales.x.max;
            zoomed.current = x.length > 1 && min != null && max != null && (min > x[0] || max < x[x.length - 1]);
          },
        ],
      },
    };
    zoomed.current = false;
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => {
      const w = Math.max(320, el.clientWidth);
      if (plot.current && Math.abs(plot.current.width - w) > 2) plot.current.setSize({ width: w, height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    // keep the person's zoom while points arrive; follow the data otherwise
    plot.current?.setData(data, !zoomed.current);
  });

  const points = pointCount(curves);
  const perSeries: Record<string, string> = {};
  curves.forEach((c, i) => (perSeries[`data-points-${i}`] = String(c.points.size)));
  return (
    <figure class="tchart" data-testid={testid} data-points={points} data-series={curves.map((c) => c.label).join("|")} {...perSeries}>
      <figcaption>{title}</figcaption>
      {curves.length === 0 || points === 0 ? <div class="muted tchart-empty">No points yet</div> : null}
      <div ref={box} class="tchart-plot" />
    </figure>
  );
}

function fade(color: string): string {
  return color.length === 7 ? `${color}55` : color;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** A confusion matrix ``cm[true][predicted]`` as a heatmap: each row shaded by its share
 * of that class's samples (so a rare class's mistakes show as plainly as a common one's),
 * with the counts written in. */
export function ConfusionMatrix({ matrix, labels }: { matrix: number[][]; labels: string[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const n = matrix.length;
  const cell = Math.max(22, Math.min(56, Math.floor(480 / Math.max(1, n))));
  const names = labels.length === n ? labels : matrix.map((_, i) => String(i));
  const margin = Math.min(140, 16 + 7 * Math.max(...names.map((s) => Math.min(s.length, 18)), 1));
  const size = margin + n * cell + 8;
  useEffect(() => {
    const c = canvas.current!;
    const dpr = window.devicePixelRatio || 1;
    c.width = size * dpr;
    c.height = size * dpr;
    c.style.width = `${size}px`;
    c.style.height = `${size}px`;
    const g = c.getContext("2d")!;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, size, size);
    g.font = "11px system-ui, sans-serif";
    for (let t = 0; t < n; t++) {
      const total = matrix[t].reduce((a, b) => a + b, 0);
      for (let p = 0; p < n; p++) {
        const v = matrix[t][p] ?? 0;
        const share = total ? v / total : 0;
        const x = margin + p * cell;
        const y = margin + t * cell;
        g.fillStyle = heat(share, t === p);
        g.fillRect(x, y, cell - 1, cell - 1);
        if (cell >= 22) {
          g.fillStyle = share > 0.55 ? "#fff" : "#111827";
          g.textAlign = "center";
          g.textBaseline = "middle";
          g.fillText(String(v), x + cell / 2, y + cell / 2);
        }
      }
    }
    g.fillStyle = "#374151";
    g.textBaseline = "middle";
    g.textAlign = "right";
    names.forEach((s, i) => g.fillText(clip(s), margin - 6, margin + i * cell + cell / 2));
    names.forEach((s, i) => {
      g.save();
      g.translate(margin + i * cell + cell / 2, margin - 6);
      g.rotate(-Math.PI / 2);
      g.textAlign = "left";
      g.fillText(clip(s), 0, 0);
      g.restore();
    });
    g.fillStyle = "#6b7280";
    g.textAlign = "left";
    g.fillText("true ↓  predicted →", 4, 10);
  }, [matrix, names.join("\u0000"), size]);
  return <canvas ref={canvas} data-testid="confusion-matrix" aria-label="Confusion matrix" />;
}

function clip(s: string): string {
  return s.length > 18 ? `${s.slice(0, 17)}…` : s;
}

/** Correct predictions in green, mistakes in red, darker the larger their share. */
function heat(share: number, diagonal: boolean): string {
  if (share <= 0) return "#f3f4f6";
  const a = 0.15 + 0.85 * share;
  return diagonal ? `rgba(31, 157, 85, ${a})` : `rgba(214, 69, 69, ${a})`;
}
