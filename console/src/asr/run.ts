// One ASR run as the page shows it: the job, its loss series, its validation results and
// log tail, built from the REST history and then from the live events of its topic.
import { API, get } from "../api";
import type { LiveEvent } from "../ws";
import type { LossPoint } from "./chart";

export const ACTIVE = new Set(["pending", "queued", "running", "stopping"]);
const MAX_LOG = 300;

export interface Job {
  id: number;
  framework: string;
  model_name: string;
  dataset_id: string | null;
  experiment_name: string | null;
  status: string;
  epochs: number;
  batch_size: number;
  learning_rate: number;
  current_epoch: number;
  total_epochs: number;
  error?: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export interface Validation {
  epoch: number;
  val_loss?: number;
  wer?: number;
  cer?: number;
}

export interface Step {
  epoch: number;
  total_epochs: number;
  step: number;
  total_steps: number;
  loss: number;
  learning_rate: number;
  eta_minutes?: number | null;
}

export interface RunView {
  job: Job;
  points: LossPoint[];
  validations: Validation[];
  logs: { level: string; message: string }[];
  step?: Step;
  message?: string; // the last status or error message
  seen: Set<string>; // event ids applied (a reconnect may deliver one again)
}

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** The newest ASR (torchaudio) job of the signed-in user, or null: the workflow list is
 * every training job newest first; its details say which framework each one trains. */
export async function latestAsrJob(): Promise<Job | null> {
  const page = await get<{ workflows: { workflow_id: string }[] }>(`${API}/workflows?limit=20&sort=-created_at`);
  for (const w of page.workflows) {
    const job = await get<Job>(`${API}/training/jobs/${encodeURIComponent(w.workflow_id)}`);
    if (job.framework === "torchaudio") return job;
  }
  return null;
}

/** A run's view from what the API has stored: per-epoch metrics and the log so far. */
export async function loadRun(job: Job): Promise<RunView> {
  const [metrics, logs] = await Promise.all([
    get<any[]>(`${API}/training/jobs/${job.id}/metrics?limit=1000`),
    get<any[]>(`${API}/training/jobs/${job.id}/logs?limit=${MAX_LOG}`),
  ]);
  const points: LossPoint[] = [];
  const validations: Validation[] = [];
  for (const m of metrics) {
    const extra = m.extra_metrics ?? {};
    points.push({ x: m.epoch, loss: num(m.loss), val: num(extra.val_loss) });
    validations.push({ epoch: m.epoch, val_loss: num(extra.val_loss), wer: num(extra.wer), cer: num(extra.cer) });
  }
  return {
    job,
    points,
    validations,
    logs: logs.map((l) => {
      const found = /^\[(\w+)\] ([\s\S]*)$/.exec(String(l.message));
      return found ? { level: found[1], message: found[2] } : { level: "INFO", message: String(l.message) };
    }),
    seen: new Set(),
  };
}

/** The view with one more live event of its job applied. */
export function apply(view: RunView, e: LiveEvent): RunView {
  if (e.event_id) {
    if (view.seen.has(e.event_id)) return view;
    view.seen.add(e.event_id);
  }
  const d = e.data ?? {};
  switch (e.kind) {
    case "progress": {
      const step: Step = {
        epoch: Number(d.epoch),
        total_epochs: Number(d.total_epochs),
        step: Number(d.step),
        total_steps: Number(d.total_steps),
        loss: Number(d.loss),
        learning_rate: Number(d.learning_rate),
        eta_minutes: num(d.eta_minutes) ?? null,
      };
      const x = step.total_steps > 0 ? step.epoch - 1 + step.step / step.total_steps : step.epoch;
      const points = Number.isFinite(step.loss) ? [...view.points, { x, loss: step.loss }] : view.points;
      const job = { ...view.job, status: view.job.status === "queued" || view.job.status === "pending" ? "running" : view.job.status };
      return { ...view, job, step, points };
    }
    case "validation": {
      const v: Validation = { epoch: Number(d.epoch), val_loss: num(d.val_loss), wer: num(d.wer), cer: num(d.cer) };
      const validations = [...view.validations.filter((o) => o.epoch !== v.epoch), v].sort((a, b) => a.epoch - b.epoch);
      const points = v.val_loss != null ? [...view.points, { x: v.epoch, val: v.val_loss }] : view.points;
      return { ...view, validations, points, job: { ...view.job, current_epoch: Math.max(view.job.current_epoch, v.epoch) } };
    }
    case "log":
      return { ...view, logs: [...view.logs, { level: String(d.level ?? "INFO"), message: String(d.message ?? "") }].slice(-MAX_LOG) };
    case "checkpoint":
      return {
        ...view,
        logs: [...view.logs, { level: "INFO", message: `Checkpoint saved: ${String(d.path ?? "")}${d.best ? " (best)" : ""}` }].slice(-MAX_LOG),
      };
    case "status":
    case "error": {
      const status = typeof d.status === "string" ? d.status : e.kind === "error" ? "failed" : view.job.status;
      return {
        ...view,
        job: { ...view.job, status, error: e.kind === "error" ? String(d.message ?? d.error ?? "") : view.job.error },
        message: typeof d.message === "string" ? d.message : view.message,
      };
    }
    default:
      return view;
  }
}
