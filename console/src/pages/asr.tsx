// ASR (seed 000): start a run by model and dataset (POST /train/start), watch it live
// (epoch, step, loss, WER/CER and a loss curve from the events on your user topic), stop
// it (POST /train/stop), and transcribe a recording with the newest checkpoint.
import { Fragment } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { API, get, post, sendWithProgress } from "../api";
import type { Route } from "../router";
import { Card, ErrorBox, Progress, Status, fmtNum, fmtTime, usePoll } from "../ui";
import { follow, type LiveEvent } from "../ws";
import { LossChart } from "../asr/chart";
import { ACTIVE, apply, latestAsrJob, loadRun, type Job, type RunView } from "../asr/run";
import { TranscribeCard } from "../asr/transcribe";

interface AsrConfig {
  available_models: string[];
  available_datasets: string[];
  training_config: Record<string, string | number>;
}

const BUFFER = 2000; // live events kept while the page learns which job is the run

export function AsrPage(_props: { route: Route }) {
  const cfg = usePoll(() => get<AsrConfig>("config"), []);
  const [run, setRun] = useState<RunView | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<"open" | "closed">("closed");
  const runId = useRef<number | null>(null);
  const buffered = useRef<LiveEvent[]>([]);

  // Show the run `job` (from its stored history), then its buffered and live events.
  const show = async (jobPromise: Promise<Job | null>) => {
    try {
      const job = await jobPromise;
      if (!job) {
        runId.current = null;
        setRun(null);
        return;
      }
      let view = await loadRun(job);
      // Events that came while it loaded wait in the buffer: applied now, and from here on
      // (no await between) live events of this job go straight to it.
      for (const e of buffered.current) if (e.topic === `job:${job.id}`) view = apply(view, e);
      buffered.current = [];
      runId.current = job.id;
      setRun(view);
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  };

  // Everything about your own work arrives on user:<id>; this page keeps its run's events.
  useEffect(() => {
    let stop = () => {};
    let gone = false;
    get<{ id: number }>(`${API}/auth/me`).then(
      (me) => {
        if (gone) return;
        stop = follow(
          `user:${me.id}`,
          (e) => {
            if (runId.current != null && e.topic === `job:${runId.current}`) {
              setRun((v) => (v && v.job.id === runId.current ? apply(v, e) : v));
            } else if (e.topic.startsWith("job:")) {
              buffered.current = [...buffered.current, e].slice(-BUFFER);
            }
          },
          setLive,
        );
      },
      (e) => setError(e),
    );
    show(latestAsrJob());
    return () => {
      gone = true;
      stop();
    };
  }, []);

  const active = !!run && ACTIVE.has(run.job.status);
  // A run that ends: its stored record has the final word (and its last checkpoint).
  useEffect(() => {
    if (run && !active) get(`${API}/training/jobs/${run.job.id}`).then((job) => setRun((v) => (v && v.job.id === job.id ? { ...v, job } : v)), () => {});
  }, [run?.job.id, active]);

  return (
    <div class="page asr">
      <h1>ASR</h1>
      <ErrorBox error={cfg.error ?? error} />
      <div class="grid2">
        <StartCard
          cfg={cfg.data}
          running={active}
          onStarted={() => {
            setLoading(true);
            show(latestAsrJob());
          }}
          onDataset={() => cfg.reload()}
        />
        <TranscribeCard />
      </div>
      {loading && !run ? <p class="muted">Loading your runs…</p> : run ? <RunCard run={run} live={live} active={active} /> : <p class="muted" data-testid="no-run">No ASR run yet: start one above.</p>}
    </div>
  );
}

function StartCard({
  cfg,
  running,
  onStarted,
  onDataset,
}: {
  cfg: AsrConfig | undefined;
  running: boolean;
  onStarted: () => void;
  onDataset: () => void;
}) {
  const [model, setModel] = useState("");
  const [dataset, setDataset] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const models = cfg?.available_models ?? [];
  const datasets = cfg?.available_datasets ?? [];
  const chosenModel = model || models[0] || "";
  const chosenDataset = datasets.includes(dataset) ? dataset : datasets[0] || "";

  const start = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await post("train/start", { model_name: chosenModel, dataset_name: chosenDataset });
      onStarted();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Card title="Train a speech recogniser">
      <form onSubmit={start}>
        <label>
          Model
          <select aria-label="Model" value={chosenModel} onChange={(e) => setModel(e.currentTarget.value)}>
            {models.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
        <label>
          Dataset
          <select aria-label="Dataset" value={chosenDataset} onChange={(e) => setDataset(e.currentTarget.value)} disabled={!datasets.length}>
            {datasets.map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </label>
        {cfg && !datasets.length && <p class="notice">No speech dataset of yours is ready yet: add one below (LJSpeech layout).</p>}
        {cfg && (
          <dl class="kv asr-defaults">
            {Object.entries(cfg.training_config).map(([k, v]) => (
              <Fragment key={k}>
                <dt>{k.replace(/_/g, " ")}</dt>
                <dd>{String(v)}</dd>
              </Fragment>
            ))}
          </dl>
        )}
        <ErrorBox error={error} />
        <div class="toolbar">
          <button class="primary" type="submit" disabled={busy || running || !chosenModel || !chosenDataset}>
            {busy ? "Starting…" : "Start training"}
          </button>
          {running && <span class="muted">One run at a time: stop this one to start another.</span>}
        </div>
      </form>
      <DatasetUpload onReady={onDataset} />
    </Card>
  );
}

/** An LJSpeech-style archive (metadata.csv "id|text|normalised text" and wavs/<id>.wav)
 * becomes one of your speech datasets, which the form above offers once it is ready. */
function DatasetUpload({ onReady }: { onReady: () => void }) {
  const [name, setName] = useState("ljspeech");
  const [file, setFile] = useState<File | null>(null);
  const [frac, setFrac] = useState<number | null>(null);
  const [state, setState] = useState<{ id: string; status: string; error?: string | null } | null>(null);
  const [error, setError] = useState<unknown>(null);

  // Until the platform has checked it, ask after it now and then.
  useEffect(() => {
    if (!state || !["uploading", "processing", "validating", "pending"].includes(state.status)) return;
    const t = setInterval(async () => {
      try {
        const d = await get<any>(`${API}/datasets/${encodeURIComponent(state.id)}`);
        setState({ id: d.id, status: d.status, error: d.error });
        if (d.status === "ready") onReady();
      } catch (e) {
        setError(e);
      }
    }, 1500);
    return () => clearInterval(t);
  }, [state?.id, state?.status]);

  const upload = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setError(null);
    setState(null);
    setFrac(0);
    try {
      const body = new FormData();
      body.append("name", name);
      body.append("format", "ljspeech");
      body.append("files", file, file.name);
      const d = await sendWithProgress("POST", `${API}/datasets`, body, setFrac);
      setState({ id: d.id, status: d.status, error: d.error });
      if (d.status === "ready") onReady();
    } catch (err) {
      setError(err);
    } finally {
      setFrac(null);
    }
  };

  return (
    <details class="asr-upload">
      <summary>Add a speech dataset</summary>
      <form onSubmit={upload}>
        <label>
          Dataset name
          <input value={name} required maxLength={200} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          LJSpeech archive (.zip: metadata.csv and wavs/)
          <input type="file" accept=".zip" required onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
        </label>
        {frac != null && <Progress value={frac} label="upload" />}
        {state && (
          <p data-testid="dataset-state">
            {name}: <Status value={state.status} /> {state.error && <span class="muted">{state.error}</span>}
          </p>
        )}
        <ErrorBox error={error} />
        <button type="submit" disabled={!file || frac != null}>
          Upload
        </button>
      </form>
    </details>
  );
}

function RunCard({ run, live, active }: { run: RunView; live: "open" | "closed"; active: boolean }) {
  const { job, step } = run;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [logScale, setLogScale] = useState(false);
  const last = run.validations[run.validations.length - 1];
  const epoch = step?.epoch ?? job.current_epoch;
  const total = step?.total_epochs ?? job.total_epochs ?? job.epochs;
  const done = step && step.total_steps > 0 ? (step.epoch - 1 + step.step / step.total_steps) / (total || 1) : job.current_epoch / (total || 1);
  const logEl = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const el = logEl.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [run.logs.length]);

  const stop = async () => {
    setBusy(true);
    setError(null);
    try {
      await post("train/stop");
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Card
      title={`Run #${job.id}: ${job.model_name}${job.experiment_name ? ` (${job.experiment_name})` : ""}`}
      actions={
        <>
          <span class={`asr-live ${live}`} title="live events">
            {live === "open" ? "● live" : "○ reconnecting"}
          </span>
          <a href={`#/training/${job.id}`}>Job page</a>
          {active && (
            <button class="danger" onClick={stop} disabled={busy || job.status === "stopping"}>
              {job.status === "stopping" ? "Stopping…" : "Stop training"}
            </button>
          )}
        </>
      }
    >
      <ErrorBox error={error} />
      <div class="asr-stats">
        <dl class="kv">
          <dt>Status</dt>
          <dd data-testid="run-status">
            <Status value={job.status} />
          </dd>
          <dt>Epoch</dt>
          <dd data-testid="run-epoch">
            {epoch} / {total}
          </dd>
          <dt>Step</dt>
          <dd data-testid="run-step">{step ? `${step.step} / ${step.total_steps}` : "—"}</dd>
          <dt>Loss</dt>
          <dd data-testid="run-loss">{fmtNum(step?.loss ?? run.points.filter((p) => p.loss != null).at(-1)?.loss)}</dd>
          <dt>Learning rate</dt>
          <dd>{step ? fmtNum(step.learning_rate, 6) : fmtNum(job.learning_rate, 6)}</dd>
          <dt>ETA</dt>
          <dd>{active && step?.eta_minutes != null ? `${fmtNum(step.eta_minutes, 1)} min` : "—"}</dd>
        </dl>
        <dl class="kv">
          <dt>WER</dt>
          <dd data-testid="run-wer">{fmtNum(last?.wer)}</dd>
          <dt>CER</dt>
          <dd data-testid="run-cer">{fmtNum(last?.cer)}</dd>
          <dt>Val loss</dt>
          <dd>{fmtNum(last?.val_loss)}</dd>
          <dt>Started</dt>
          <dd>{fmtTime(job.started_at)}</dd>
          <dt>Ended</dt>
          <dd>{fmtTime(job.completed_at)}</dd>
        </dl>
      </div>
      <Progress value={done} label={`epoch ${epoch} of ${total}`} />
      {run.message && <p class={job.status === "failed" ? "error" : "muted"} data-testid="run-message">{run.message}</p>}
      {job.status === "failed" && job.error && job.error !== run.message && <p class="error">{job.error}</p>}
      <div class="toolbar asr-chart-bar">
        <h2>Loss</h2>
        <label class="asr-inline">
          <input type="checkbox" checked={logScale} onChange={(e) => setLogScale(e.currentTarget.checked)} /> log scale
        </label>
        <span class="muted">drag to zoom, double-click to reset</span>
      </div>
      <LossChart points={run.points} log={logScale} />
      <div class="grid2">
        <div>
          <h2>Validation</h2>
          {run.validations.length ? (
            <table data-testid="validations">
              <thead>
                <tr>
                  <th class="num">Epoch</th>
                  <th class="num">Val loss</th>
                  <th class="num">WER</th>
                  <th class="num">CER</th>
                </tr>
              </thead>
              <tbody>
                {run.validations
                  .slice(-10)
                  .reverse()
                  .map((v) => (
                    <tr key={v.epoch}>
                      <td class="num">{v.epoch}</td>
                      <td class="num">{fmtNum(v.val_loss)}</td>
                      <td class="num">{fmtNum(v.wer)}</td>
                      <td class="num">{fmtNum(v.cer)}</td>
                    </tr>
                  ))}
              </tbody>
            </table>
          ) : (
            <p class="muted">After each epoch: validation loss, word and character error rates.</p>
          )}
        </div>
        <div>
          <h2>Log</h2>
          <pre class="log" ref={logEl} data-testid="run-log">
            {run.logs.map((l) => `[${l.level}] ${l.message}`).join("\n") || "—"}
          </pre>
        </div>
      </div>
    </Card>
  );
}
