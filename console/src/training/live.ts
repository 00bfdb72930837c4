// A training job's state as the page knows it: what the API had when the page opened
// (metric rows, log lines) and what arrived since on ``job:<id>`` (the trainer's
// progress, validation, log, checkpoint, status and error events; see
// shared/services/reporting.py and shared/services/jobs.py), merged into curves keyed by
// x, so a replayed or duplicated event changes nothing.
import type { LiveEvent } from "../ws";

export interface MetricRow {
  epoch: number;
  loss: number | null;
  accuracy: number | null;
  learning_rate: number | null;
  extra_metrics: Record<string, number | null>;
  created_at?: string | null;
}

export interface LogLine {
  level: string;
  text: string;
  at?: string | null;
}

export interface CheckpointSeen {
  path: string;
  epoch: number;
  best: boolean;
  at: string;
}

export interface ProgressNow {
  epoch: number;
  total_epochs: number;
  step: number;
  total_steps: number;
  loss: number;
  eta_minutes: number | null;
  gpu_utilization?: number;
  memory_usage_gb?: number;
}

export const MAX_LOG_LINES = 2000;

export class JobLive {
  /** Training loss: per epoch (the epoch's mean) from the metric rows, and per step
   * (at epoch - 1 + step/steps) as progress events arrive. */
  trainLoss = new Map<number, number>();
  lr = new Map<number, number>();
  /** Validation numbers by name, by epoch (val_loss, accuracy, mAP50-95, wer, ...). */
  val = new Map<string, Map<number, number>>();
  logs: LogLine[] = [];
  checkpoints = new Map<string, CheckpointSeen>();
  progress: ProgressNow | null = null;
  status: string | null = null;
  statusMessage: string | null = null;
  private seen = new Set<string>();
  private loaded: LogLine[] = []; // the API's latest lines, when the page last read them

  /** The metric rows the API has (GET .../metrics). */
  loadMetrics(rows: MetricRow[]): void {
    for (const r of rows) {
      if (isNum(r.loss)) this.trainLoss.set(r.epoch, r.loss);
      if (isNum(r.learning_rate)) this.lr.set(r.epoch, r.learning_rate);
      if (isNum(r.accuracy)) this.setVal("accuracy", r.epoch, r.accuracy);
      for (const [k, v] of Object.entries(r.extra_metrics ?? {})) if (isNum(v)) this.setVal(k, r.epoch, v);
    }
  }

  /** The log lines the API has (GET .../logs: ``[LEVEL] message``), replacing what the
   * page had: the API's lines are the record. */
  loadLogs(rows: { message: string; created_at?: string | null }[]): void {
    this.logs = rows.map((r) => {
      const m = /^\[([A-Z]+)\] ([\s\S]*)$/.exec(r.message);
      return m ? { level: m[1], text: m[2], at: r.created_at } : { level: "INFO", text: r.message, at: r.created_at };
    });
    this.loaded = this.logs.slice(-100);
    this.trimLogs();
  }

  /** Apply one event; false if it changed nothing (a duplicate, or a kind not shown).
   * ``early``: it arrived while the API was being read, so a log line may be one the API
   * gave already (log events carry no key of their line). */
  apply(e: LiveEvent, early = false): boolean {
    if (e.event_id) {
      if (this.seen.has(e.event_id)) return false;
      this.seen.add(e.event_id);
    }
    const d = e.data ?? {};
    switch (e.kind) {
      case "progress": {
        const epoch = Number(d.epoch);
        const steps = Number(d.total_steps);
        const x = epoch - 1 + (steps > 0 ? Number(d.step) / steps : 1);
        if (!Number.isFinite(x)) return false;
        if (isNum(d.loss)) this.trainLoss.set(round(x), d.loss);
        if (isNum(d.learning_rate)) this.lr.set(round(x), d.learning_rate);
        this.progress = {
          epoch,
          total_epochs: Number(d.total_epochs),
          step: Number(d.step),
          total_steps: steps,
          loss: Number(d.loss),
          eta_minutes: isNum(d.eta_minutes) ? d.eta_minutes : null,
          ...(isNum(d.gpu_utilization) ? { gpu_utilization: d.gpu_utilization } : {}),
          ...(isNum(d.memory_usage_gb) ? { memory_usage_gb: d.memory_usage_gb } : {}),
        };
        if (this.status === "queued" || this.status === "pending") this.status = "running";
        return true;
      }
      case "validation": {
        const epoch = Number(d.epoch);
        if (!Number.isFinite(epoch)) return false;
        for (const [k, v] of Object.entries(d)) if (k !== "epoch" && isNum(v)) this.setVal(k, epoch, v);
        return true;
      }
      case "log": {
        const line = { level: String(d.level ?? "INFO"), text: String(d.message ?? "") };
        if (early && this.loaded.some((l) => l.level === line.level && l.text === line.text)) return false;
        this.logs.push({ ...line, at: e.timestamp });
        this.trimLogs();
        return true;
      }
      case "checkpoint": {
        const path = String(d.path ?? "");
        if (!path) return false;
        const epoch = Number(d.epoch);
        const at = e.timestamp ?? new Date().toISOString();
        this.checkpoints.set(path, { path, epoch, best: !!d.best, at });
        if (d.best) {
          const best = path.replace(/last\.pt$/, "best.pt");
          if (best !== path) this.checkpoints.set(best, { path: best, epoch, best: true, at });
        }
        return true;
      }
      case "status":
      case "error": {
        const s = d.job_status ?? d.status;
        if (typeof s === "string") this.status = s;
        if (typeof d.message === "string") this.statusMessage = d.message;
        return true;
      }
      default:
        return false;
    }
  }

  private setVal(name: string, epoch: number, v: number): void {
    let m = this.val.get(name);
    if (!m) this.val.set(name, (m = new Map()));
    m.set(epoch, v);
  }

  private trimLogs(): void {
    if (this.logs.length > MAX_LOG_LINES) this.logs.splice(0, this.logs.length - MAX_LOG_LINES);
  }
}

export function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

export const ACTIVE = new Set(["pending", "queued", "running", "stopping"]);
export const TERMINAL = new Set(["completed", "failed", "stopped"]);
