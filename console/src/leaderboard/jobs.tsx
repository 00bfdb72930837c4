// Your submissions' evaluation jobs (newest first), and one job's page: its status live
// (the job's topic, and a poll while it moves), its log, its results with the MLflow run,
// cancel while it is pending or running, re-run once it has ended.
import { useEffect, useRef, useState } from "preact/hooks";
import { get, post } from "../api";
import { go } from "../router";
import { Card, ErrorBox, Status, fmtNum, fmtTime, usePoll } from "../ui";
import { follow } from "../ws";
import { ENDED, LB, jobLog, safeLink, text, type EvalJob, type Results } from "./api";

export function JobsCard() {
  const [moving, setMoving] = useState(false);
  const jobs = usePoll(() => get<{ jobs: EvalJob[] }>(`${LB}/jobs?limit=50`), [moving], moving ? 3000 : 0);
  const list = jobs.data?.jobs ?? [];
  useEffect(() => setMoving(list.some((j) => !ENDED.has(j.status))), [jobs.data]);
  return (
    <Card title="Your submissions" actions={<button onClick={jobs.reload}>Refresh</button>}>
      <ErrorBox error={jobs.error} />
      {!jobs.data ? (
        <p class="muted">Loading…</p>
      ) : !list.length ? (
        <p class="muted">Nothing submitted yet.</p>
      ) : (
        <table data-testid="lb-jobs">
          <thead>
            <tr>
              <th>Job</th>
              <th>Submission</th>
              <th>Status</th>
              <th>Class</th>
              <th>Created</th>
              <th>Finished</th>
            </tr>
          </thead>
          <tbody>
            {list.map((j) => (
              <tr key={j.job_id} class="clickable" onClick={() => go(`/leaderboard/jobs/${encodeURIComponent(j.job_id)}`)}>
                <td>
                  <a href={`#/leaderboard/jobs/${encodeURIComponent(j.job_id)}`}>{j.job_id}</a>
                  {j.rerun_of && <span class="muted"> (re-run of {j.rerun_of})</span>}
                </td>
                <td class="mono">{j.submission_id}</td>
                <td>
                  <Status value={j.status} />
                  {j.error && <div class="muted lb-error-line">{j.error}</div>}
                </td>
                <td>{j.resource_class}</td>
                <td>{fmtTime(j.created_at)}</td>
                <td>{fmtTime(j.finished_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}

export function JobPage({ id }: { id: string }) {
  const [job, setJob] = useState<EvalJob | null>(null);
  const [log, setLog] = useState<string | null | undefined>(undefined);
  const [results, setResults] = useState<Results | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [live, setLive] = useState<"open" | "closed">("closed");
  const [search, setSearch] = useState("");
  const loading = useRef(false);
  const again = useRef(false);
  const logEl = useRef<HTMLPreElement>(null);
  const enc = encodeURIComponent(id);

  // Status, log and (once it has a run) results, read again on each event and poll; one
  // read at a time, and one more after it when asked for meanwhile.
  const load = async () => {
    if (loading.current) {
      again.current = true;
      return;
    }
    loading.current = true;
    try {
      do {
        again.current = false;
        const j = await get<EvalJob>(`${LB}/jobs/${enc}/status`);
        setJob(j);
        setLog(await jobLog(id));
        if (j.run_id && ENDED.has(j.status)) setResults(await get<Results>(`${LB}/jobs/${enc}/results`));
        setError(null);
      } while (again.current);
    } catch (e) {
      setError(e);
    } finally {
      loading.current = false;
    }
  };

  useEffect(() => {
    setJob(null);
    setLog(undefined);
    setResults(null);
    load();
    return follow(`job:${id}`, () => load(), setLive);
  }, [id]);

  const ended = job ? ENDED.has(job.status) : false;
  // The events are the fast path; a poll covers a connection that is down while it moves.
  useEffect(() => {
    if (!job || ended) return;
    const t = setInterval(load, 4000);
    return () => clearInterval(t);
  }, [id, !!job, ended]);

  useEffect(() => {
    const el = logEl.current;
    if (el && !search) el.scrollTop = el.scrollHeight;
  }, [log]);

  const act = async (what: "cancel" | "rerun") => {
    setBusy(true);
    setActionError(null);
    try {
      const out = await post<any>(`${LB}/jobs/${enc}/${what}`);
      if (what === "rerun") go(`/leaderboard/jobs/${encodeURIComponent(out.job_id)}`);
      else await load();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };

  const lines = (log ?? "").split("\n").filter((l) => l.length);
  const shown = search ? lines.filter((l) => l.toLowerCase().includes(search.toLowerCase())) : lines;
  const mlflow = safeLink(results?.mlflow_ui_link);
  const mlflowRest = safeLink(results?.mlflow_rest_link);

  return (
    <div class="page">
      <div class="toolbar">
        <a href="#/leaderboard">← Leaderboard</a>
      </div>
      <h1>Evaluation job {id}</h1>
      <ErrorBox error={error} />
      {job && (
        <Card
          title="Status"
          actions={
            <>
              <span class={`lb-live ${live}`}>{live === "open" ? "● live" : "○ polling"}</span>
              {!ended && (
                <button class="danger" disabled={busy} onClick={() => act("cancel")}>
                  Cancel
                </button>
              )}
              {ended && (
                <button disabled={busy} onClick={() => act("rerun")}>
                  Re-run
                </button>
              )}
            </>
          }
        >
          <ErrorBox error={actionError} />
          <dl class="kv">
            <dt>Status</dt>
            <dd data-testid="job-status">
              <Status value={job.status} />
            </dd>
            {job.error && (
              <>
                <dt>Reason</dt>
                <dd class="lb-reason" data-testid="job-reason">
                  {job.error}
                </dd>
              </>
            )}
            <dt>Submission</dt>
            <dd class="mono">{job.submission_id}</dd>
            <dt>Resource class</dt>
            <dd>{job.resource_class}</dd>
            <dt>Created</dt>
            <dd>{fmtTime(job.created_at)}</dd>
            <dt>Started</dt>
            <dd>{fmtTime(job.started_at)}</dd>
            <dt>Finished</dt>
            <dd>{fmtTime(job.finished_at)}</dd>
            {job.rerun_of && (
              <>
                <dt>Re-run of</dt>
                <dd>
                  <a href={`#/leaderboard/jobs/${encodeURIComponent(job.rerun_of)}`}>{job.rerun_of}</a>
                </dd>
              </>
            )}
            <dt>MLflow run</dt>
            <dd>{job.run_id ?? "—"}</dd>
          </dl>
        </Card>
      )}
      {results && (
        <Card title="Results">
          <div class="grid2">
            <table data-testid="job-metrics">
              <thead>
                <tr>
                  <th>Metric</th>
                  <th class="num">Value</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(results.metrics).map(([k, v]) => (
                  <tr key={k}>
                    <td>{k}</td>
                    <td class="num">{fmtNum(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <table>
              <thead>
                <tr>
                  <th>Param</th>
                  <th>Value</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(results.params).map(([k, v]) => (
                  <tr key={k}>
                    <td>{k}</td>
                    <td>{text(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <p class="lb-links">
            {mlflow && (
              <a href={mlflow} target="_blank" rel="noopener noreferrer" data-testid="mlflow-link">
                Open the run in MLflow
              </a>
            )}
            {mlflowRest && (
              <a href={mlflowRest} target="_blank" rel="noopener noreferrer">
                MLflow REST record
              </a>
            )}
          </p>
        </Card>
      )}
      <Card
        title="Log"
        actions={<input value={search} placeholder="Search the log" aria-label="Search the log" onInput={(e) => setSearch(e.currentTarget.value)} />}
      >
        <pre class="log lb-log" ref={logEl} data-testid="job-log">
          {log === undefined ? "Loading…" : log === null ? "No output yet." : shown.length ? shown.join("\n") : "No line matches."}
        </pre>
        {log && (
          <p class="muted">
            {search ? `${shown.length} of ${lines.length} lines` : `${lines.length} lines`}
          </p>
        )}
      </Card>
    </div>
  );
}
