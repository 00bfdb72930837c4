// Seed 004's leaderboard API as the console uses it: under /api/v1/leaderboard (the same
// routes as the seed's root paths), with the shapes of functions/api/routers/leaderboard_schemas.py.
import { API, messageOf, token } from "../api";

export const LB = `${API}/leaderboard`;
export const ENDED = new Set(["completed", "failed", "cancelled"]);

export interface EvalJob {
  job_id: string;
  submission_id: string;
  user_id: string;
  status: "pending" | "running" | "completed" | "failed" | "cancelled";
  run_id: string | null;
  resource_class: string;
  created_at: string;
  updated_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  rerun_of?: string | null;
  error?: string | null;
}

export interface Results {
  job_id: string;
  status: string;
  run_id: string;
  mlflow_ui_link: string | null;
  mlflow_rest_link: string | null;
  params: Record<string, unknown>;
  metrics: Record<string, number>;
}

export interface Entry {
  rank: number;
  score: number;
  job_id: string;
  submission_id: string;
  user_id: number;
  run_id: string | null;
  params: Record<string, unknown>;
  metrics: Record<string, number>;
  metadata: Record<string, unknown>;
  finished_at: string | null;
  mlflow_ui_link: string | null;
  mlflow_rest_link: string | null;
}

export interface Board {
  leaderboard: string;
  metric: string | null;
  order: "desc" | "asc";
  best_per_user: boolean;
  metrics: string[];
  total: number;
  entries: Entry[];
}

/** A job's log: plain text (one "[YYYY-mm-dd HH:MM:SS] line" per line), or null when the
 * job has written none yet. */
export async function jobLog(jobId: string): Promise<string | null> {
  const res = await fetch(`${LB}/jobs/${encodeURIComponent(jobId)}/logs`, {
    headers: { Authorization: `Bearer ${token() ?? ""}`, Accept: "text/plain" },
  });
  if (res.status === 404) {
    const body = await res.json().catch(() => ({}));
    if (body?.code === "LOGS_NOT_FOUND" || body?.error?.code === "LOGS_NOT_FOUND") return null;
    throw messageOf(body, 404);
  }
  if (!res.ok) throw messageOf(await res.json().catch(() => ({})), res.status);
  return res.text();
}

/** ``url`` if it is an http(s) link (what the API names MLflow runs with); null for any
 * other scheme, so a stored value can never become a javascript: link. */
export function safeLink(url: string | null | undefined): string | null {
  if (!url) return null;
  try {
    const u = new URL(url, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.toString() : null;
  } catch {
    return null;
  }
}

/** A value from metadata or params, as text (objects as compact JSON). */
export function text(v: unknown): string {
  if (v == null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}
