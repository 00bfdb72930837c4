// A class distribution as horizontal bars (SVG: crisp at any size, and each class name is
// text a person can select and a test can read). Names come from the archive: they are only
// ever text nodes, never markup.
import { useState } from "preact/hooks";
import { fmtNum } from "../ui";

const SHOWN = 40; // bars before "show all"
const ROW = 26;
const LABEL_W = 170;
const COUNT_W = 70;
const WIDTH = 720;

export function ClassChart({ distribution }: { distribution: Record<string, number> }) {
  const [all, setAll] = useState(false);
  const [order, setOrder] = useState<"count" | "name">("count");
  const entries = Object.entries(distribution);
  if (!entries.length) return <p class="muted">No classes (a speech or unlabelled dataset).</p>;
  entries.sort(order === "count" ? (a, b) => b[1] - a[1] || a[0].localeCompare(b[0]) : (a, b) => a[0].localeCompare(b[0]));
  const rows = all ? entries : entries.slice(0, SHOWN);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  const total = entries.reduce((s, [, n]) => s + n, 0);
  const barW = WIDTH - LABEL_W - COUNT_W;
  const height = rows.length * ROW + 4;
  return (
    <div class="ds-chart">
      <div class="toolbar">
        <span class="muted">
          {entries.length} classes, {fmtNum(total, 0)} examples
        </span>
        <span class="dtl-grow" />
        <label class="dtl-inline">
          Order
          <select value={order} onChange={(e) => setOrder(e.currentTarget.value as "count" | "name")}>
            <option value="count">by count</option>
            <option value="name">by name</option>
          </select>
        </label>
      </div>
      <svg
        data-testid="class-chart"
        role="img"
        aria-label="Examples per class"
        viewBox={`0 0 ${WIDTH} ${height}`}
        width="100%"
        style={{ maxWidth: `${WIDTH}px` }}
      >
        {rows.map(([name, n], i) => {
          const w = (n / max) * barW;
          const y = i * ROW + 2;
          return (
            <g key={name} class="ds-bar" data-class={name}>
              <title>{`${name}: ${n} (${((100 * n) / Math.max(total, 1)).toFixed(1)}%)`}</title>
              <text x={LABEL_W - 8} y={y + ROW / 2 + 4} text-anchor="end" class="ds-bar-label">
                {name.length > 24 ? `${name.slice(0, 23)}…` : name}
              </text>
              <rect x={LABEL_W} y={y + 3} width={Math.max(w, n > 0 ? 1 : 0)} height={ROW - 6} rx={3} />
              <text x={LABEL_W + w + 6} y={y + ROW / 2 + 4} class="ds-bar-count">
                {n}
              </text>
            </g>
          );
        })}
      </svg>
      {entries.length > SHOWN && (
        <button class="dtl-linkbtn" onClick={() => setAll(!all)}>
          {all ? `Show the first ${SHOWN}` : `Show all ${entries.length} classes`}
        </button>
      )}
    </div>
  );
}
