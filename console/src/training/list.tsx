// #/training: the caller's training jobs, filtered, sorted and paged, moving live.
//
// The list is seed 003's GET /workflows (a workflow is a training job): it pages, filters by
// status and sorts by name, creation and start on the server. Its summaries carry no model,
// framework, dataset or metric, so each job of the page is read from
// GET /training/jobs/{id} (and its metrics for the best value); ended jobs are remembered,
// so paging back and forth reads only the jobs still moving. Framework, and the columns the
// API cannot sort by, act on the page shown (said so on screen).
//
// Live: every job's status, progress and validation arrive on `user:<id>` and update their
// row in place; an event of a job not on the page reads the page again.
import { useEffect, useRef, useState } from "preact/hooks";
import { API, get } from "../api";
import { useUserEvents } from "../datasets/live";
import type { Dataset, DatasetList } from "../datasets/types";
import { go, type Route } from "../router";
import { Card, ErrorBox, Pager, Status, fmtNum, fmtTime } from "../ui";
import type { LiveEvent } from "../ws";

// --- the API's training job shapes (functions/api/routers/training_schemas.py, and seed
// 003's workflow summaries: functions/api/routers/workflows_schemas.py), as read here and
// by the new-job form

export interface TrainingJob {
  id: number;
  experiment_name: string | null;
  tags: string[];
  notes: string | null;
  framework: string;
  model_name: string;
  task_type: string;
  dataset_id: string | null;
  epochs: number;
  batch_size: number;
  learning_rate: number;
  advanced_config: Record<string, any>;
  status: string; // pending queued running stopping completed failed stopped
  primary_metric: string | null;
  primary_metric_mode: "max" | "min";
  current_epoch: number;
  total_epochs: number;
  error: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export interface WorkflowSummary {
  workflow_id: string;
  name: string;
  status: string;
  progress: number;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export interface WorkflowList {
  workflows: WorkflowSummary[];
  total: number;
  page: number;
  limit: number;
  has_next: boolean;
}

/** One row of GET /training/jobs/{id}/metrics. */
export interface MetricRow {
  epoch: number;
  loss: number | null;
  accuracy: number | null;
  learning_rate: number | null;
  extra_metrics: Record<string, number | null>;
}

export const TERMINAL = new Set(["completed", "failed", "stopped"]);
export const FRAMEWORKS = ["timm", "ultralytics", "torchaudio"] as const;

/** A metric of a row, wherever the row keeps it. */
export function metricOf(row: MetricRow, name: string): number | null {
  const v = name === "accuracy" ? row.accuracy : name === "loss" ? row.loss : row.extra_metrics?.[name];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The better of two values of a metric (``mode`` max or min); null is never better. */
export function better(a: number | null | undefined, b: number | null | undefined, mode: "max" | "min"): number | null {
  if (a == null) return b ?? null;
  if (b == null) return a;
  return mode === "min" ? Math.min(a, b) : Math.max(a, b);
}

// --- the list

/** Seed 003's status groups (GET /workflows?status=) and the job statuses in each. */
const STATUS_FILTERS: [string, string][] = [
  ["pending", "pending or queued"],
  ["training", "running or stopping"],
  ["completed", "completed"],
  ["failed", "failed"],
  ["cancelled", "stopped"],
];
const SERVER_SORTS = new Set(["name", "created_at", "started_at"]);
const PAGE_SIZES = [10, 20, 50];

interface Row {
  id: number;
  name: string;
  job: TrainingJob;
  best: number | null;
  epoch?: number; // the epoch training now, as its progress reports it
}

// What is known of ended jobs (their rows no longer change) for this page load.
const settled = new Map<number, Row>();
let datasetNames: Promise<Map<string, Dataset>> | null = null;

async function loadRow(id: number, name: string): Promise<Row> {
  const kept = settled.get(id);
  if (kept) return { ...kept, name };
  const job = await get<TrainingJob>(`${API}/training/jobs/${id}`);
  let best: number | null = null;
  if (job.primary_metric && job.current_epoch > 0) {
    const rows = await get<MetricRow[]>(`${API}/training/jobs/${id}/metrics?limit=10000`);
    for (const r of rows) best = better(best, metricOf(r, job.primary_metric), job.primary_metric_mode);
  }
  const row = { id, name, job, best };
  if (TERMINAL.has(job.status)) settled.set(id, row);
  return row;
}

function loadDatasets(): Promise<Map<string, Dataset>> {
  datasetNames ??= get<DatasetList>(`${API}/datasets?limit=1000`).then(
    (l) => new Map(l.datasets.map((d) => [d.id, d])),
    (e) => {
      datasetNames = null;
      throw e;
    },
  );
  return datasetNames;
}

type Column = { key: string; label: string; num?: boolean; value: (r: Row) => string | number | null };
const COLUMNS: Column[] = [
  { key: "name", label: "Name", value: (r) => r.name.toLowerCase() },
  { key: "status", label: "Status", value: (r) => r.job.status },
  { key: "model", label: "Model", value: (r) => r.job.model_name },
  { key: "framework", label: "Framework", value: (r) => r.job.framework },
  { key: "dataset", label: "Dataset", value: (r) => r.job.dataset_id },
  { key: "best", label: "Best metric", num: true, value: (r) => r.best },
  { key: "created_at", label: "Created", value: (r) => r.job.created_at },
  { key: "started_at", label: "Started", value: (r) => r.job.started_at },
];

export function TrainingList({ route }: { route: Route }) {
  const q = route.query;
  const status = q.get("status") ?? "";
  const framework = q.get("framework") ?? "";
  const sort = q.get("sort") || "-created_at";
  const sortKey = sort.replace(/^-/, "");
  const desc = sort.startsWith("-");
  const page = Math.max(1, Number(q.get("page")) || 1);
  const limit = PAGE_SIZES.includes(Number(q.get("limit"))) ? Number(q.get("limit")) : PAGE_SIZES[0];
  const serverSort = SERVER_SORTS.has(sortKey) ? sort : "-created_at";

  const [rows, setRows] = useState<Row[] | null>(null);
  const [listed, setListed] = useState<WorkflowList | null>(null);
  const [datasets, setDatasets] = useState<Map<string, Dataset>>(new Map());
  const [error, setError] = useState<unknown>(null);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const gen = useRef(0);
  const pending = useRef<number | null>(null);

  const load = async () => {
    const mine = ++gen.current;
    try {
      const params = new URLSearchParams({ page: String(page), limit: String(limit), sort: serverSort });
      if (status) params.set("status", status);
      const list = await get<WorkflowList>(`${API}/workflows?${params}`);
      const loaded = await Promise.all(list.workflows.map((w) => loadRow(Number(w.workflow_id), w.name)));
      if (mine !== gen.current) return;
      setListed(list);
      setRows(loaded);
      setError(null);
      loadDatasets()
        .then((known) => {
          // a dataset uploaded since they were read: read them again
          if (!loaded.some((r) => r.job.dataset_id && !known.has(r.job.dataset_id))) return known;
          datasetNames = null;
          return loadDatasets();
        })
        .then(setDatasets, () => {});
    } catch (e) {
      if (mine === gen.current) setError(e);
    }
  };
  useEffect(() => {
    load();
  }, [status, serverSort, page, limit]);
  // The timer reads the page as the view is when it fires (filters, sort, page), not as
  // it was when the first event of the burst came.
  const latest = useRef(load);
  latest.current = load;
  /** Read the page again soon (events come in bursts). */
  const soon = () => {
    if (pending.current != null) return;
    pending.current = window.setTimeout(() => {
      pending.current = null;
      latest.current();
    }, 400);
  };
  useEffect(() => () => {
    if (pending.current != null) clearTimeout(pending.current);
  }, []);

  const live = useUserEvents(
    (e: LiveEvent) => {
      const m = /^job:(\d+)$/.exec(e.topic);
      if (!m) return;
      const id = Number(m[1]);
      const row = rows?.find((r) => r.id === id);
      if (!row) {
        if (e.kind === "status" || e.kind === "error") soon(); // a job this page does not show yet
        return;
      }
      const changed = applyEvent(row, e);
      if (changed === "reload") {
        settled.delete(id);
        soon();
      } else if (changed) setRows((all) => all && all.map((r) => (r.id === id ? changed : r)));
    },
    () => rows && load(), // (re)opened: whatever was missed meanwhile
  );

  const set = (changes: Record<string, string>) => {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) v ? next.set(k, v) : next.delete(k);
    const qs = next.toString();
    go(`/training${qs ? `?${qs}` : ""}`);
  };
  const sortBy = (key: string) => {
    const nextDesc = sortKey === key ? !desc : key === "best" || key.endsWith("_at");
    set({ sort: `${nextDesc ? "-" : ""}${key}`, page: SERVER_SORTS.has(key) ? "" : String(page) });
  };

  let shown = rows ?? [];
  if (framework) shown = shown.filter((r) => r.job.framework === framework);
  if (!SERVER_SORTS.has(sortKey)) {
    const col = COLUMNS.find((c) => c.key === sortKey);
    if (col) shown = [...shown].sort((a, b) => compare(col.value(a), col.value(b), desc));
  }
  const pages = listed ? Math.max(1, Math.ceil(listed.total / limit)) : 1;
  const toggle = (id: number) =>
    setSelected((s) => {
      const n = new Set(s);
      n.has(id) ? n.delete(id) : n.add(id);
      return n;
    });

  return (
    <div class="page">
      <div class="tr-head">
        <h1>Training</h1>
        <span class="dtl-grow" />
        <button
          data-testid="compare"
          disabled={selected.size < 2}
          title="Select two or more jobs"
          onClick={() => go(`/training/compare?ids=${[...selected].sort((a, b) => a - b).join(",")}`)}
        >
          Compare{selected.size ? ` (${selected.size})` : ""}
        </button>
        <button class="primary" onClick={() => go("/training/new")}>
          New job
        </button>
      </div>
      <Card>
        <div class="toolbar tr-filters">
          <label class="dtl-inline">
            Status
            <select name="status" value={status} onChange={(e) => set({ status: e.currentTarget.value, page: "" })}>
              <option value="">any</option>
              {STATUS_FILTERS.map(([v, label]) => (
                <option key={v} value={v}>
                  {label}
                </option>
              ))}
            </select>
          </label>
          <label class="dtl-inline">
            Framework
            <select name="framework" value={framework} onChange={(e) => set({ framework: e.currentTarget.value })}>
              <option value="">any</option>
              {FRAMEWORKS.map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
          </label>
          <label class="dtl-inline">
            Per page
            <select name="limit" value={String(limit)} onChange={(e) => set({ limit: e.currentTarget.value, page: "" })}>
              {PAGE_SIZES.map((n) => (
                <option key={n} value={String(n)}>
                  {n}
                </option>
              ))}
            </select>
          </label>
          <span class="dtl-grow" />
          <span class={`tr-live ${live ? "on" : ""}`} data-testid="live" title="Status moves as the jobs report">
            {live ? "live" : "connecting…"}
          </span>
        </div>
        {(framework || !SERVER_SORTS.has(sortKey)) && (
          <p class="muted tr-note" data-testid="page-note">
            {framework ? `Showing this page's ${framework} jobs` : "Sorted"}
            {framework && !SERVER_SORTS.has(sortKey) ? ", sorted" : ""} within this page: the API filters by status
            and sorts by name, created and started.
          </p>
        )}
        <ErrorBox error={error} />
        {!rows ? (
          <p class="muted">Loading…</p>
        ) : listed && listed.total === 0 ? (
          <p class="muted">
            {status ? "No jobs with this status." : <>No training jobs yet. <a href="#/training/new">Start one</a>.</>}
          </p>
        ) : (
          <>
            <table data-testid="job-table">
              <thead>
                <tr>
                  <th aria-label="select" />
                  <th class="num">#</th>
                  {COLUMNS.map((c) => (
                    <th
                      key={c.key}
                      class={`sortable${c.num ? " num" : ""}`}
                      data-testid={`sort-${c.key}`}
                      aria-sort={sortKey === c.key ? (desc ? "descending" : "ascending") : undefined}
                      onClick={() => sortBy(c.key)}
                    >
                      {c.label}
                      {sortKey === c.key ? (desc ? " ▼" : " ▲") : ""}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {shown.map((r) => (
                  <JobRow key={r.id} row={r} dataset={r.job.dataset_id ? datasets.get(r.job.dataset_id) : undefined} selected={selected.has(r.id)} onToggle={() => toggle(r.id)} />
                ))}
              </tbody>
            </table>
            {shown.length === 0 && <p class="muted">No {framework} jobs on this page.</p>}
            <Pager page={page} hasNext={!!listed?.has_next} onPage={(n) => set({ page: String(n) })}>
              <span class="muted">
                {listed?.total ?? 0} job{listed?.total === 1 ? "" : "s"} · page {page} of {pages}
              </span>
            </Pager>
          </>
        )}
      </Card>
    </div>
  );
}

function JobRow({ row: r, dataset, selected, onToggle }: { row: Row; dataset?: Dataset; selected: boolean; onToggle: () => void }) {
  const j = r.job;
  const open = () => go(`/training/${j.id}`);
  const moving = j.status === "running" || j.status === "stopping";
  return (
    <tr class="clickable" data-testid="job-row" data-job={j.id} onClick={open}>
      <td onClick={(e) => e.stopPropagation()}>
        <input type="checkbox" aria-label={`select job ${j.id}`} checked={selected} onChange={onToggle} />
      </td>
      <td class="num">{j.id}</td>
      <td>
        <a href={`#/training/${j.id}`}>{r.name}</a>
      </td>
      <td data-testid="job-status">
        <Status value={j.status} />
        {moving && (
          <span class="muted tr-epoch">
            {" "}
            {r.epoch ? `epoch ${r.epoch} of ${j.total_epochs}` : `${j.current_epoch} of ${j.total_epochs} epochs done`}
          </span>
        )}
        {j.status === "failed" && j.error && <div class="tr-error" title={j.error}>{j.error}</div>}
      </td>
      <td>{j.model_name}</td>
      <td>{j.framework}</td>
      <td onClick={(e) => e.stopPropagation()}>
        {j.dataset_id ? <a href={`#/datasets/${encodeURIComponent(j.dataset_id)}`}>{dataset?.name ?? j.dataset_id.slice(0, 8)}</a> : "—"}
      </td>
      <td class="num" data-testid="job-best">
        {r.best == null ? "—" : `${fmtNum(r.best)}`}
        {r.best != null && j.primary_metric && <span class="muted"> {j.primary_metric}</span>}
      </td>
      <td>{fmtTime(j.created_at)}</td>
      <td>{fmtTime(j.started_at)}</td>
    </tr>
  );
}

/** The row after ``e``; "reload" when the job should be read again (it ended); null when
 * nothing shown changed. */
function applyEvent(row: Row, e: LiveEvent): Row | "reload" | null {
  const d = e.data ?? {};
  const j = row.job;
  if (e.kind === "progress") {
    const epoch = Number(d.epoch);
    if (!Number.isFinite(epoch)) return null;
    const status = j.status === "pending" || j.status === "queued" ? "running" : j.status;
    return { ...row, epoch, job: { ...j, status, total_epochs: Number(d.total_epochs) || j.total_epochs } };
  }
  if (e.kind === "validation") {
    const v = j.primary_metric ? d[j.primary_metric] : null;
    const best = typeof v === "number" ? better(row.best, v, j.primary_metric_mode) : row.best;
    return { ...row, best, job: { ...j, current_epoch: Math.max(j.current_epoch, Number(d.epoch) || 0) } };
  }
  if (e.kind === "status" || e.kind === "error") {
    const next: string | undefined = d.job_status ?? d.status;
    if (!next) return null;
    if (TERMINAL.has(next)) return "reload";
    return next === j.status ? null : { ...row, job: { ...j, status: next } };
  }
  return null;
}

function compare(a: string | number | null, b: string | number | null, desc: boolean): number {
  if (a == null && b == null) return 0;
  if (a == null) return 1; // missing values last, either way
  if (b == null) return -1;
  const c = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
  return desc ? -c : c;
}
