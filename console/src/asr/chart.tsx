// A uPlot line chart of a run's loss: the training loss at each step reported (x is the
// position in epochs: 2.5 = half-way through epoch 3) and the validation loss at each
// epoch's end, redrawn as live events arrive. Drag to zoom, double-click to reset.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface LossPoint {
  x: number; // position in epochs
  loss?: number; // training loss at this step
  val?: number; // validation loss at this epoch's end
}

/** Points merged onto one ascending x axis, as uPlot wants its data (gaps as null). */
export function aligned(points: LossPoint[]): uPlot.AlignedData {
  const byX = new Map<number, LossPoint>();
  for (const p of points) {
    const had = byX.get(p.x) ?? { x: p.x };
    byX.set(p.x, { ...had, ...(p.loss != null ? { loss: p.loss } : {}), ...(p.val != null ? { val: p.val } : {}) });
  }
  const rows = [...byX.values()].sort((a, b) => a.x - b.x);
  return [rows.map((r) => r.x), rows.map((r) => r.loss ?? null), rows.map((r) => r.val ?? null)];
}

export function LossChart({ points, log = false }: { points: LossPoint[]; log?: boolean }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = aligned(points);
  const trainCount = points.filter((p) => p.loss != null).length;
  const valCount = points.filter((p) => p.val != null).length;

  useEffect(() => {
    const host = el.current!;
    const width = () => Math.max(300, host.clientWidth);
    const opts: uPlot.Options = {
      width: width(),
      height: 260,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [{ label: "epoch" }, { label: "loss" }],
      series: [
        { label: "epoch" },
        { label: "train loss", stroke: "#2f6fde", width: 2, spanGaps: true, points: { show: false } },
        { label: "val loss", stroke: "#d64545", width: 2, spanGaps: true, points: { show: true, size: 6 } },
      ],
      cursor: { drag: { x: true, y: false } },
    };
    const u = new uPlot(opts, aligned([]), host);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: width(), height: 260 }));
    ro.observe(host);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [log]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  return (
    <div
      ref={el}
      class="asr-chart"
      data-testid="loss-chart"
      data-train-points={trainCount}
      data-val-points={valCount}
    />
  );
}
