// A training job's page (#/training/<id>): status, config, live curves (loss, metrics,
// learning rate), epoch and ETA, the log tail with search, the latest validation
// (confusion matrix, per-class metrics, per-image mistakes), checkpoints, stop/resume,
// and predictions from its checkpoint on a dropped image.
//
// The page reads the job, its metric rows and its log once, then follows ``job:<id>``:
// curves grow as the trainer's events arrive. A slow poll of the job's status covers a
// socket that cannot connect; a socket that comes back reads the rows and log again.
import { Fragment, type ComponentChildren } from "preact";
import { useEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { API, get, post, request } from "../api";
import type { Route } from "../router";
import { Card, DropZone, ErrorBox, Progress, Status, fmtBytes, fmtNum, fmtTime, usePoll } from "../ui";
import { follow, type LiveEvent } from "../ws";
import { ConfusionMatrix, LineChart, PALETTE, type Curve } from "./charts";
import { ACTIVE, JobLive, TERMINAL, isNum, type CheckpointSeen, type LogLine, type MetricRow } from "./live";

export interface Job {
  id: number;
  experiment_name: string | null;
  framework: string;
  model_name: string;
  task_type: string;
  dataset_id: string | null;
  dataset_format: string | null;
  num_classes: number | null;
  project_name: string | null;
  tags: string[];
  notes: string | null;
  output_dir: string;
  epochs: number;
  batch_size: number;
  learning_rate: number;
  advanced_config: Record<string, unknown>;
  status: string;
  primary_metric: string | null;
  primary_metric_mode: string;
  current_epoch: number;
  total_epochs: number;
  mlflow_run_id: string | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export interface ValidationResult {
  id: number;
  epoch: number;
  task_type: string;
  primary_metric_name: string;
  primary_metric_value: number | null;
  overall_loss: number | null;
  metrics: Record<string, number>;
  per_class_metrics: Record<string, Record<string, number>>;
  confusion_matrix: number[][];
  // Past the API's bound on one answer (newest epochs first), an older epoch comes
  // without its per-class numbers and matrix: ask for that epoch alone, or fetch the URL.
  details_omitted?: boolean;
  details_url?: string;
  created_at: string | null;
}

const STATUS_POLL_MS = 15_000;

export function JobView({ route }: { route: Route }) {
  const id = Number(route.path[1]);
  const live = useMemo(() => new JobLive(), [id]);
  const [, redraw] = useReducer((n: number) => n + 1, 0);
  const [job, setJob] = useState<Job | null>(null);
  const [results, setResults] = useState<ValidationResult[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [socket, setSocket] = useState<"open" | "closed" | "connecting">("connecting");

  const loadJob = async () => {
    const j = await get<Job>(`${API}/training/jobs/${id}`);
    setJob(j);
    live.status = j.status;
    return j;
  };
  const loadResults = () =>
    get<{ results: ValidationResult[] }>(`${API}/validation/results/${id}`).then((r) => setResults(r.results));
  const loadRecords = async () => {
    const [metrics, logs] = await Promise.all([
      get<MetricRow[]>(`${API}/training/jobs/${id}/metrics?limit=10000`),
      get<{ message: string; created_at: string }[]>(`${API}/training/jobs/${id}/logs?limit=10000`),
    ]);
    live.loadMetrics(metrics);
    live.loadLogs(logs);
  };

  // Read everything once, following the job's topic from before the reads begin: what
  // arrives meanwhile waits and is applied after them (curves are keyed by x; log lines
  // the reads already gave are recognised).
  useEffect(() => {
    if (!Number.isInteger(id) || id <= 0) return;
    setJob(null); // another job's page: nothing of the last one's shows meanwhile
    setResults([]);
    setError(null);
    let ready = false;
    let opened = false;
    let resultsDue: ReturnType<typeof setTimeout> | undefined;
    const early: LiveEvent[] = [];
    const refreshResults = () => {
      clearTimeout(resultsDue);
      resultsDue = setTimeout(() => loadResults().catch(setError), 300);
    };
    const onEvent = (e: LiveEvent, isEarly = false) => {
      if (!ready) return void early.push(e);
      const before = live.status;
      if (!live.apply(e, isEarly)) return;
      if (e.kind === "validation") refreshResults(); // its per-class numbers and result id
      if ((e.kind === "status" || e.kind === "error") && live.status !== before) {
        loadJob().catch(setError);
        if (live.status && TERMINAL.has(live.status)) refreshResults();
      }
      redraw(0);
    };
    const stop = follow(`job:${id}`, (e) => onEvent(e), (s) => {
      setSocket(s);
      if (s === "open" && opened && ready) loadRecords().then(() => redraw(0), setError); // what was missed
      if (s === "open") opened = true;
    });
    Promise.all([loadJob(), loadRecords(), loadResults()])
      .then(() => {
        ready = true;
        for (const e of early.splice(0)) onEvent(e, true);
        redraw(0);
      })
      .catch((e) => {
        ready = true;
        setError(e);
      });
    return () => {
      stop();
      clearTimeout(resultsDue);
    };
  }, [id]);

  // The fallback: an active job's status, now and then, whatever the socket does.
  useEffect(() => {
    if (!job || !ACTIVE.has(live.status ?? job.status)) return;
    const t = setInterval(() => {
      loadJob()
        .then((j) => {
          if (TERMINAL.has(j.status)) loadResults().catch(() => {});
          redraw(0);
        })
        .catch(() => {});
    }, STATUS_POLL_MS);
    return () => clearInterval(t);
  }, [job?.status, live.status]);

  if (!Number.isInteger(id) || id <= 0) return <div class="page"><ErrorBox error="No such training job" /></div>;
  if (!job) return <div class="page"><h1>Training job {id}</h1>{error ? <ErrorBox error={error} /> : <p class="muted">Loading…</p>}</div>;

  const status = live.status ?? job.status;
  return (
    <div class="page tjob">
      <Header job={job} status={status} socket={socket} onChange={(j) => { live.status = j; loadJob().catch(setError); redraw(0); }} />
      <ErrorBox error={error} />
      <ProgressCard job={job} live={live} status={status} />
      <Curves job={job} live={live} />
      <div class="grid2">
        <ConfigCard job={job} />
        <Checkpoints job={job} seen={[...live.checkpoints.values()]} status={status} />
      </div>
      <LogTail lines={live.logs} />
      <Validation job={job} results={results} />
      {(job.task_type === "image_classification" || job.task_type === "object_detection") && (
        <TestInference job={job} />
      )}
    </div>
  );
}

function Header({ job, status, socket, onChange }: { job: Job; status: string; socket: string; onChange: (status: string) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const act = async (call: () => Promise<{ status: string }>) => {
    setBusy(true);
    setError(null);
    try {
      onChange((await call()).status);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const canStop = ["pending", "queued", "running"].includes(status);
  const canResume = status === "stopped" || status === "failed";
  return (
    <div>
      <div class="tjob-head">
        <h1>
          <a href="#/training">Training</a> / {job.experiment_name || `${job.model_name} #${job.id}`}
        </h1>
        <span data-testid="job-status"><Status value={status} /></span>
        <span class={`tjob-socket ${socket}`} title="Live updates">{socket === "open" ? "live" : socket === "closed" ? "reconnecting…" : "connecting…"}</span>
        <span class="spacer" />
        <a class="button" href={`#/training/compare?ids=${job.id}`}>Compare…</a>
        {status === "pending" && (
          <button class="primary" disabled={busy} onClick={() => act(() => post(`${API}/training/jobs/${job.id}/start`))}>
            Start
          </button>
        )}
        {canStop && (
          <button class="danger" disabled={busy} onClick={() => act(() => post(`${API}/training/stop/${job.id}`))}>
            Stop
          </button>
        )}
        {canResume && (
          <button
            class="primary"
            disabled={busy}
            onClick={() => act(() => post(`${API}/training/jobs/${job.id}/start?resume=true`))}
          >
            Resume
          </button>
        )}
      </div>
      {job.error && status === "failed" && <div class="error">{job.error}</div>}
      <ErrorBox error={error} />
    </div>
  );
}

function ProgressCard({ job, live, status }: { job: Job; live: JobLive; status: string }) {
  const p = live.progress;
  const total = p?.total_epochs || job.total_epochs;
  const done = TERMINAL.has(status) ? job.current_epoch : p ? p.epoch - 1 + (p.total_steps ? p.step / p.total_steps : 0) : job.current_epoch;
  const primary = job.primary_metric ? live.val.get(job.primary_metric) : undefined;
  const best = primary && primary.size ? (job.primary_metric_mode === "min" ? Math.min : Math.max)(...primary.values()) : null;
  return (
    <Card>
      <div class="tjob-progress">
        <div class="tjob-bar">
          <Progress value={total ? done / total : 0} label={`Epoch ${p && !TERMINAL.has(status) ? p.epoch : job.current_epoch} of ${total}`} />
        </div>
        <dl class="kv tjob-now">
          <dt>Epoch</dt>
          <dd data-testid="job-epoch">{p && !TERMINAL.has(status) ? `${p.epoch} / ${total} (step ${p.step} of ${p.total_steps})` : `${job.current_epoch} / ${total}`}</dd>
          <dt>ETA</dt>
          <dd data-testid="job-eta">{ACTIVE.has(status) && p?.eta_minutes != null ? eta(p.eta_minutes) : "—"}</dd>
          {p && <><dt>Step loss</dt><dd>{fmtNum(p.loss)}</dd></>}
          {best != null && <><dt>Best {job.primary_metric}</dt><dd data-testid="job-best">{fmtNum(best)}</dd></>}
          {p?.gpu_utilization != null && <><dt>GPU</dt><dd>{p.gpu_utilization}%{p.memory_usage_gb != null ? `, ${p.memory_usage_gb} GiB` : ""}</dd></>}
          {live.statusMessage && <><dt>Last news</dt><dd>{live.statusMessage}</dd></>}
        </dl>
      </div>
    </Card>
  );
}

function eta(minutes: number): string {
  if (minutes < 1) return `${Math.max(1, Math.round(minutes * 60))} s`;
  if (minutes < 90) return `${Math.round(minutes)} min`;
  return `${Math.floor(minutes / 60)} h ${Math.round(minutes % 60)} min`;
}

function Curves({ job, live }: { job: Job; live: JobLive }) {
  const [smoothing, setSmoothing] = useState(0.6);
  const [log, setLog] = useState(false);
  const losses: Curve[] = [{ label: "train loss", color: PALETTE[0], points: live.trainLoss }];
  const metrics: Curve[] = [];
  let i = 1;
  for (const [name, points] of [...live.val.entries()].sort(byPrimary(job.primary_metric))) {
    const curve = { label: name === "val_loss" ? "val loss" : name, color: PALETTE[i++ % PALETTE.length], points };
    (/loss/.test(name) ? losses : metrics).push(curve);
  }
  const lr: Curve[] = [{ label: "learning rate", color: PALETTE[4], points: live.lr }];
  return (
    <Card
      title="Curves"
      actions={
        <div class="toolbar">
          <label class="inline">
            Smoothing {smoothing.toFixed(2)}
            <input
              type="range"
              min={0}
              max={0.99}
              step={0.01}
              value={smoothing}
              aria-label="Smoothing"
              onInput={(e) => setSmoothing(Number(e.currentTarget.value))}
            />
          </label>
          <label class="inline">
            <input type="checkbox" checked={log} onChange={(e) => setLog(e.currentTarget.checked)} /> Log scale
          </label>
          <span class="muted">drag to zoom, double-click to reset</span>
        </div>
      }
    >
      <div class="grid2">
        <LineChart title="Loss" testid="chart-loss" curves={losses} smoothing={smoothing} log={log} />
        <LineChart title="Validation metrics" testid="chart-metrics" curves={metrics} smoothing={smoothing} log={log} />
        <LineChart title="Learning rate" testid="chart-lr" curves={lr} log={log} />
      </div>
    </Card>
  );
}

/** The primary metric first, then by name. */
function byPrimary(primary: string | null) {
  return ([a]: [string, unknown], [b]: [string, unknown]) => (a === primary ? -1 : b === primary ? 1 : a.localeCompare(b));
}

function ConfigCard({ job }: { job: Job }) {
  const rows: [string, ComponentChildren][] = [
    ["Framework", job.framework],
    ["Model", job.model_name],
    ["Task", job.task_type],
    ["Dataset", job.dataset_id ? <a href={`#/datasets/${encodeURIComponent(job.dataset_id)}`}>{job.dataset_id}</a> : "—"],
    ["Format", job.dataset_format ?? "—"],
    ["Classes", job.num_classes ?? "—"],
    ["Epochs", job.epochs],
    ["Batch size", job.batch_size],
    ["Learning rate", job.learning_rate],
    ["Primary metric", job.primary_metric ? `${job.primary_metric} (${job.primary_metric_mode})` : "—"],
  ];
  for (const [k, v] of Object.entries(job.advanced_config ?? {})) rows.push([k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  if (job.project_name) rows.push(["Project", job.project_name]);
  if (job.tags?.length) rows.push(["Tags", job.tags.map((t) => <span class="chip" key={t}>{t}</span>)]);
  if (job.notes) rows.push(["Notes", job.notes]);
  rows.push(["Created", fmtTime(job.created_at)], ["Started", fmtTime(job.started_at)], ["Ended", fmtTime(job.completed_at)]);
  if (job.mlflow_run_id) rows.push(["MLflow run", <code>{job.mlflow_run_id}</code>]);
  return (
    <Card title="Configuration">
      <dl class="kv" data-testid="job-config">
        {rows.map(([k, v]) => (
          <Fragment key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </Fragment>
        ))}
      </dl>
    </Card>
  );
}

interface StoredCheckpoint {
  name: "best" | "last";
  path: string;
  size_bytes: number;
  etag: string;
}

function Checkpoints({ job, seen, status }: { job: Job; seen: CheckpointSeen[]; status: string }) {
  const from = typeof job.advanced_config?.resume_from === "string" ? job.advanced_config.resume_from : null;
  // What is stored (read again whenever a save is told or the status moves), with the
  // epoch and time of the saves seen live since the page opened.
  const { data: stored, error } = usePoll<StoredCheckpoint[]>(
    () => get(`${API}/training/jobs/${job.id}/checkpoints`),
    [job.id, seen.length, status],
  );
  const told = new Map(seen.map((c) => [c.path, c]));
  return (
    <Card title="Checkpoints">
      <p class="muted">
        The job keeps its latest state as <code>last.pt</code> and its best weights as <code>best.pt</code> under{" "}
        <code>{job.output_dir}</code>.
      </p>
      {from && (
        <p>
          Continues from <code>{from}</code>
        </p>
      )}
      <ErrorBox error={error} />
      {stored?.length ? (
        <table data-testid="checkpoints">
          <thead>
            <tr>
              <th>Checkpoint</th>
              <th class="num">Size</th>
              <th class="num">Epoch</th>
              <th>Saved</th>
            </tr>
          </thead>
          <tbody>
            {stored.map((c) => {
              const t = told.get(c.path);
              return (
                <tr key={c.path}>
                  <td>
                    <code>{c.path}</code> {c.name === "best" && <span class="chip">best</span>}
                  </td>
                  <td class="num">{fmtBytes(c.size_bytes)}</td>
                  <td class="num">{t ? (c.name === "best" ? `≤ ${t.epoch}` : t.epoch) : "—"}</td>
                  <td>{t ? fmtTime(t.at) : "before this page opened"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : (
        stored && <p class="muted">{ACTIVE.has(status) ? "None saved yet: the first comes at the end of an epoch." : "None was saved."}</p>
      )}
    </Card>
  );
}

function LogTail({ lines }: { lines: LogLine[] }) {
  const [q, setQ] = useState("");
  const [only, setOnly] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const re = useMemo(() => (q ? new RegExp(`(${q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")})`, "gi") : null), [q]);
  const matching = re ? lines.filter((l) => l.text.search(re) >= 0 || l.level.search(re) >= 0) : lines;
  const shown = only ? matching : lines;
  const hits = re ? lines.reduce((n, l) => n + (l.text.match(re)?.length ?? 0), 0) : 0;
  useEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });
  return (
    <Card
      title="Log"
      actions={
        <div class="toolbar">
          <input type="search" placeholder="Search the log" aria-label="Search the log" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
          {re && <span class="muted" data-testid="log-hits">{hits} match{hits === 1 ? "" : "es"}</span>}
          <label class="inline">
            <input type="checkbox" checked={only} onChange={(e) => setOnly(e.currentTarget.checked)} /> Matching lines only
          </label>
        </div>
      }
    >
      <div
        class="log tjob-log"
        ref={box}
        data-testid="log-tail"
        data-lines={lines.length}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {shown.length === 0 && <span class="muted">{lines.length ? "No line matches." : "No log lines yet."}</span>}
        {shown.map((l, i) => (
          <div key={i} class={`line lvl-${l.level.toLowerCase()}`}>
            <span class="lvl">{l.level}</span> {re ? highlight(l.text, re) : l.text}
          </div>
        ))}
      </div>
    </Card>
  );
}

/** ``text`` with each match of ``re`` (one capturing group) in a <mark>: text nodes only. */
function highlight(text: string, re: RegExp): ComponentChildren {
  return text.split(re).map((part, i) => (i % 2 ? <mark key={i}>{part}</mark> : part));
}

function Validation({ job, results }: { job: Job; results: ValidationResult[] }) {
  const [epoch, setEpoch] = useState<number | null>(null);
  const [full, setFull] = useState<ValidationResult | null>(null);
  const picked = results.find((x) => x.epoch === epoch) ?? results[results.length - 1];
  useEffect(() => {
    if (!picked?.details_omitted) return;
    let current = true;
    get<{ results: ValidationResult[] }>(`${API}/validation/results/${job.id}?epoch=${picked.epoch}`).then(
      (x) => current && x.results[0] && setFull(x.results[0]),
      () => undefined, // the summary stays, with its link
    );
    return () => {
      current = false;
    };
  }, [job.id, picked?.epoch, picked?.details_omitted]);
  const r = picked && full && full.epoch === picked.epoch ? full : picked;
  if (!r) {
    return (
      <Card title="Validation">
        <p class="muted">No validation yet: each epoch's appears here when it ends.</p>
      </Card>
    );
  }
  const classes = Object.keys(r.per_class_metrics ?? {});
  const columns = [...new Set(classes.flatMap((c) => Object.keys(r.per_class_metrics[c])))];
  const latest = picked === results[results.length - 1];
  return (
    <Card
      title={`Validation, epoch ${r.epoch}`}
      actions={
        <label class="inline">
          Epoch{" "}
          <select value={String(r.epoch)} aria-label="Validation epoch" onChange={(e) => setEpoch(Number(e.currentTarget.value))}>
            {results.map((x) => (
              <option key={x.epoch} value={String(x.epoch)}>
                {x.epoch}
                {x === results[results.length - 1] ? " (latest)" : ""}
              </option>
            ))}
          </select>
        </label>
      }
    >
      <p>
        {r.primary_metric_name}: <strong data-testid="val-primary">{fmtNum(r.primary_metric_value)}</strong>
        {r.overall_loss != null && <span class="muted"> · val loss {fmtNum(r.overall_loss)}</span>}
        {!latest && <span class="muted"> · an earlier epoch</span>}
      </p>
      {r.details_omitted && r.details_url && (
        <p class="muted" data-testid="details-omitted">
          Per-class numbers and confusion matrix too large to show here:{" "}
          <a href={r.details_url} download>
            download them (JSON)
          </a>
        </p>
      )}
      <div class="tjob-val">
        {r.confusion_matrix?.length ? (
          <div>
            <h3>Confusion matrix</h3>
            <ConfusionMatrix matrix={r.confusion_matrix} labels={classes} />
          </div>
        ) : null}
        <div class="tjob-perclass">
          <h3>Per class</h3>
          {classes.length ? (
            <table data-testid="per-class">
              <thead>
                <tr>
                  <th>Class</th>
                  {columns.map((c) => (
                    <th class="num" key={c}>
                      {c}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {classes.map((name) => (
                  <tr key={name}>
                    <td>{name}</td>
                    {columns.map((c) => (
                      <td class="num" key={c}>
                        {c === "support" ? r.per_class_metrics[name][c] : fmtNum(r.per_class_metrics[name][c], 3)}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p class="muted">This task reports no per-class numbers.</p>
          )}
        </div>
      </div>
      {job.task_type === "image_classification" && <PerImage result={r} />}
    </Card>
  );
}

interface ImageRow {
  id: number;
  image_path: string;
  image_name: string;
  true_label: string;
  predicted_label: string;
  confidence: number;
  is_correct: boolean;
  top5_predictions: { label: string; confidence: number }[];
}

const PAGE = 25;

function PerImage({ result }: { result: ValidationResult }) {
  const [filter, setFilter] = useState<"mistakes" | "correct" | "all">("mistakes");
  const [skip, setSkip] = useState(0);
  const [page, setPage] = useState<{ images: ImageRow[]; total: number } | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => setSkip(0), [result.id, filter]);
  useEffect(() => {
    let gone = false;
    const q = new URLSearchParams({ skip: String(skip), limit: String(PAGE) });
    if (filter !== "all") q.set("is_correct", String(filter === "correct"));
    setError(null);
    get<{ images: ImageRow[]; total: number }>(`${API}/validation/images/${result.id}?${q}`).then(
      (p) => !gone && setPage(p),
      (e) => !gone && (setError(e), setPage(null)),
    );
    return () => {
      gone = true;
    };
  }, [result.id, filter, skip]);
  return (
    <div class="tjob-images">
      <div class="toolbar">
        <h3>Per image</h3>
        <div class="tabs" role="tablist">
          {(["mistakes", "correct", "all"] as const).map((f) => (
            <button key={f} role="tab" aria-selected={filter === f} class={filter === f ? "on" : ""} onClick={() => setFilter(f)}>
              {f === "mistakes" ? "Mistakes" : f === "correct" ? "Correct" : "All"}
            </button>
          ))}
        </div>
        {page && <span class="muted" data-testid="images-total">{page.total} image{page.total === 1 ? "" : "s"}</span>}
      </div>
      <ErrorBox error={error} />
      {page && page.images.length === 0 && <p class="muted">{filter === "mistakes" ? "No mistakes in this validation." : "No images."}</p>}
      {page && page.images.length > 0 && (
        <table data-testid="per-image">
          <thead>
            <tr>
              <th>Image</th>
              <th>True</th>
              <th>Predicted</th>
              <th class="num">Confidence</th>
              <th>Top predictions</th>
            </tr>
          </thead>
          <tbody>
            {page.images.map((im) => (
              <tr key={im.id} class={im.is_correct ? "" : "wrong"}>
                <td title={im.image_path}>{im.image_path}</td>
                <td>{im.true_label}</td>
                <td>{im.predicted_label}</td>
                <td class="num">{(im.confidence * 100).toFixed(1)}%</td>
                <td>
                  {im.top5_predictions.map((t) => (
                    <span class="chip" key={t.label}>
                      {t.label} {(t.confidence * 100).toFixed(0)}%
                    </span>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {page && page.total > PAGE && (
        <div class="pager">
          <button disabled={skip === 0} onClick={() => setSkip(Math.max(0, skip - PAGE))}>
            Previous
          </button>
          <span class="muted">
            {skip + 1}–{Math.min(page.total, skip + PAGE)} of {page.total}
          </span>
          <button disabled={skip + PAGE >= page.total} onClick={() => setSkip(skip + PAGE)}>
            Next
          </button>
        </div>
      )}
    </div>
  );
}

interface Prediction {
  label: string;
  confidence: number;
  bbox?: [number, number, number, number];
}

function TestInference({ job }: { job: Job }) {
  const [image, setImage] = useState<string | null>(null);
  const [answer, setAnswer] = useState<{ predictions: Prediction[]; inference_time_ms?: number; model_name?: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [threshold, setThreshold] = useState(job.task_type === "object_detection" ? 0.25 : 0);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => () => void (image && URL.revokeObjectURL(image)), [image]);

  const predict = async (file: File) => {
    setError(null);
    setAnswer(null);
    setImage(URL.createObjectURL(file));
    const form = new FormData();
    form.append("training_job_id", String(job.id));
    form.append("file", file, file.name);
    form.append("confidence_threshold", String(threshold));
    form.append("top_k", "5");
    setBusy(true);
    try {
      setAnswer(await request("POST", `${API}/test-inference`, form));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card title="Try the model">
      <div class="tjob-infer">
        <DropZone
          data-testid="inference-drop"
          onFiles={(files) => predict(files[0])}
        >
          <p>Drop an image here to predict with the job's best (else last) checkpoint</p>
          <button type="button" onClick={() => input.current?.click()} disabled={busy}>
            Choose an image…
          </button>
          <input
            ref={input}
            type="file"
            accept="image/*"
            hidden
            aria-label="Image to predict on"
            onChange={(e) => {
              const f = e.currentTarget.files?.[0];
              if (f) predict(f);
              e.currentTarget.value = "";
            }}
          />
          <label class="inline">
            Confidence threshold
            <input
              type="number"
              min={0}
              max={1}
              step={0.05}
              value={threshold}
              onInput={(e) => setThreshold(Math.min(1, Math.max(0, Number(e.currentTarget.value) || 0)))}
            />
          </label>
        </DropZone>
        {image && <Preview src={image} predictions={answer?.predictions ?? []} />}
        <div data-testid="inference-result">
          {busy && <p class="muted">Predicting…</p>}
          <ErrorBox error={error} />
          {answer && (
            <>
              {answer.predictions.length === 0 && <p class="muted">Nothing above the threshold.</p>}
              <ol class="tjob-preds">
                {answer.predictions.map((p, i) => (
                  <li key={i}>
                    <strong>{p.label}</strong> {(p.confidence * 100).toFixed(1)}%
                    {p.bbox && <span class="muted"> at [{p.bbox.map((v) => Math.round(v)).join(", ")}]</span>}
                    <div class="tjob-conf">
                      <div style={{ width: `${Math.round(p.confidence * 100)}%` }} />
                    </div>
                  </li>
                ))}
              </ol>
              {isNum(answer.inference_time_ms) && <p class="muted">{answer.model_name} · {answer.inference_time_ms} ms</p>}
            </>
          )}
        </div>
      </div>
    </Card>
  );
}

/** The dropped image, with the detector's boxes drawn over it. */
function Preview({ src, predictions }: { src: string; predictions: Prediction[] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const img = new Image();
    img.onload = () => {
      const c = canvas.current;
      if (!c) return;
      const scale = Math.min(1, 320 / Math.max(img.naturalWidth, img.naturalHeight)) || 1;
      const up = img.naturalWidth < 160 ? 160 / img.naturalWidth : 1; // tiny images, visible
      const k = scale * up;
      c.width = Math.round(img.naturalWidth * k);
      c.height = Math.round(img.naturalHeight * k);
      const g = c.getContext("2d")!;
      g.imageSmoothingEnabled = up === 1;
      g.drawImage(img, 0, 0, c.width, c.height);
      g.lineWidth = 2;
      g.font = "12px system-ui, sans-serif";
      predictions.forEach((p, i) => {
        if (!p.bbox) return;
        const [x1, y1, x2, y2] = p.bbox.map((v) => v * k);
        g.strokeStyle = PALETTE[i % PALETTE.length];
        g.strokeRect(x1, y1, x2 - x1, y2 - y1);
        g.fillStyle = PALETTE[i % PALETTE.length];
        g.fillText(`${p.label} ${(p.confidence * 100).toFixed(0)}%`, x1 + 2, Math.max(12, y1 - 3));
      });
    };
    img.src = src;
  }, [src, predictions]);
  return <canvas ref={canvas} class="tjob-preview" data-testid="inference-preview" />;
}
