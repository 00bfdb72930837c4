// Runs side by side (#/training/compare?ids=1,2): each metric's curves overlaid, one
// series per run, and their parameters in one table with the values that differ marked.
import { useEffect, useState } from "preact/hooks";
import { API, get } from "../api";
import { go, type Route } from "../router";
import { Card, ErrorBox, Status, fmtNum } from "../ui";
import { LineChart, PALETTE, type Curve } from "./charts";
import type { Job } from "./job";
import { ACTIVE, JobLive, type MetricRow } from "./live";

interface Run {
  job: Job;
  live: JobLive;
}

const REFRESH_MS = 10_000; // while one of the runs is still training
const MAX_RUNS = 8;

export function parseIds(raw: string | null): number[] {
  const ids = (raw ?? "")
    .split(/[\s,]+/)
    .map((s) => Number(s))
    .filter((n) => Number.isInteger(n) && n > 0);
  return [...new Set(ids)].slice(0, MAX_RUNS);
}

export function CompareView({ route }: { route: Route }) {
  const ids = parseIds(route.query.get("ids"));
  const key = ids.join(",");
  const [runs, setRuns] = useState<Run[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [smoothing, setSmoothing] = useState(0);
  const [log, setLog] = useState(false);
  const [adding, setAdding] = useState("");

  useEffect(() => {
    let gone = false;
    const load = async () => {
      const loaded = await Promise.all(
        ids.map(async (id) => {
          const [job, rows] = await Promise.all([
            get<Job>(`${API}/training/jobs/${id}`),
            get<MetricRow[]>(`${API}/training/jobs/${id}/metrics?limit=10000`),
          ]);
          const live = new JobLive();
          live.loadMetrics(rows);
          return { job, live };
        }),
      );
      if (!gone) {
        setRuns(loaded);
        setError(null);
      }
      return loaded;
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const again = () =>
      load().then(
        (loaded) => {
          if (!gone && loaded.some((r) => ACTIVE.has(r.job.status))) timer = setTimeout(again, REFRESH_MS);
        },
        (e) => !gone && setError(e),
      );
    if (ids.length) again();
    else setRuns([]);
    return () => {
      gone = true;
      clearTimeout(timer);
    };
  }, [key]);

  const setIds = (next: number[]) => go(`/training/compare?ids=${next.join(",")}`);
  const names = new Set<string>();
  for (const r of runs) {
    if (r.live.trainLoss.size) names.add("train loss");
    for (const n of r.live.val.keys()) names.add(n);
  }
  const metrics = [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const curves = (name: string): Curve[] =>
    runs.map((r, i) => ({
      label: `#${r.job.id} ${r.job.experiment_name || r.job.model_name}`,
      color: PALETTE[i % PALETTE.length],
      points: name === "train loss" ? r.live.trainLoss : (r.live.val.get(name) ?? new Map()),
    }));

  return (
    <div class="page tcompare">
      <h1>
        <a href="#/training">Training</a> / Compare runs
      </h1>
      <Card>
        <form
          class="toolbar"
          onSubmit={(e) => {
            e.preventDefault();
            const more = parseIds(adding);
            if (more.length) setIds([...new Set([...ids, ...more])]);
            setAdding("");
          }}
        >
          {runs.map((r, i) => (
            <span class="chip tcompare-run" key={r.job.id} style={{ borderLeft: `4px solid ${PALETTE[i % PALETTE.length]}` }}>
              <a href={`#/training/${r.job.id}`}>#{r.job.id}</a> {r.job.experiment_name || r.job.model_name} <Status value={r.job.status} />
              <button type="button" class="x" aria-label={`Remove run ${r.job.id}`} onClick={() => setIds(ids.filter((x) => x !== r.job.id))}>
                ×
              </button>
            </span>
          ))}
          <input
            placeholder="Add runs by id: 12, 15"
            aria-label="Add runs by id"
            value={adding}
            onInput={(e) => setAdding(e.currentTarget.value)}
          />
          <button type="submit">Add</button>
        </form>
        {ids.length < 2 && <p class="muted">Choose two or more runs to compare (from the job list, or by id here).</p>}
      </Card>
      <ErrorBox error={error} />
      {runs.length > 0 && (
        <Card
          title="Curves"
          actions={
            <div class="toolbar">
              <label class="inline">
                Smoothing {smoothing.toFixed(2)}
                <input type="range" min={0} max={0.99} step={0.01} value={smoothing} aria-label="Smoothing" onInput={(e) => setSmoothing(Number(e.currentTarget.value))} />
              </label>
              <label class="inline">
                <input type="checkbox" checked={log} onChange={(e) => setLog(e.currentTarget.checked)} /> Log scale
              </label>
            </div>
          }
        >
          {metrics.length === 0 && <p class="muted">None of these runs has finished an epoch yet.</p>}
          <div class="grid2">
            {metrics.map((m) => (
              <LineChart key={m} title={m === "val_loss" ? "val loss" : m} testid={`compare-${m}`} curves={curves(m)} smoothing={smoothing} log={log} />
            ))}
          </div>
        </Card>
      )}
      {runs.length > 0 && <ParamDiff runs={runs} />}
    </div>
  );
}

/** Losses first, then the rest by name. */
function rank(name: string): number {
  return name === "train loss" ? 0 : name === "val_loss" ? 1 : /loss/.test(name) ? 2 : 3;
}

/** The parameters each run was trained with, and where it got to; rows whose values
 * differ between the runs are marked. */
function ParamDiff({ runs }: { runs: Run[] }) {
  const [onlyDiff, setOnlyDiff] = useState(false);
  const rows = new Map<string, string[]>();
  const put = (name: string, i: number, v: unknown) => {
    if (!rows.has(name)) rows.set(name, runs.map(() => "—"));
    rows.get(name)![i] = v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v);
  };
  runs.forEach(({ job, live }, i) => {
    put("framework", i, job.framework);
    put("model", i, job.model_name);
    put("task", i, job.task_type);
    put("dataset", i, job.dataset_id);
    put("epochs", i, job.epochs);
    put("batch size", i, job.batch_size);
    put("learning rate", i, job.learning_rate);
    for (const [k, v] of Object.entries(flatten(job.advanced_config ?? {}))) put(k, i, v);
    put("status", i, job.status);
    put("epochs done", i, job.current_epoch);
    if (job.primary_metric) {
      const values = [...(live.val.get(job.primary_metric)?.values() ?? [])];
      const best = values.length ? (job.primary_metric_mode === "min" ? Math.min : Math.max)(...values) : null;
      put(`best ${job.primary_metric}`, i, best == null ? null : fmtNum(best));
    }
  });
  const all = [...rows.entries()];
  const differs = (vals: string[]) => new Set(vals).size > 1;
  const shown = onlyDiff ? all.filter(([, v]) => differs(v)) : all;
  return (
    <Card
      title="Parameters"
      actions={
        <label class="inline">
          <input type="checkbox" checked={onlyDiff} onChange={(e) => setOnlyDiff(e.currentTarget.checked)} /> Only differences
        </label>
      }
    >
      <table data-testid="param-diff" class="tcompare-params">
        <thead>
          <tr>
            <th>Parameter</th>
            {runs.map((r, i) => (
              <th key={r.job.id} style={{ color: PALETTE[i % PALETTE.length] }}>
                #{r.job.id}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {shown.map(([name, vals]) => (
            <tr key={name} class={differs(vals) ? "differs" : ""} data-param={name} data-differs={differs(vals) ? "true" : "false"}>
              <td>{name}</td>
              {vals.map((v, i) => (
                <td key={i}>{v}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}

/** ``{"optimizer": {"type": "sgd"}}`` -> ``{"optimizer.type": "sgd"}`` (lists stay whole). */
export function flatten(o: Record<string, unknown>, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flatten(v as Record<string, unknown>, name));
    else out[name] = v;
  }
  return out;
}
