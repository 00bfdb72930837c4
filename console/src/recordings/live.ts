// Live analysis news. The analysis service (shared/services/audio.py ``announce``)
// publishes ``progress``, ``status`` and ``error`` events on ``file:<id>`` and on the
// owner's ``user:<id>``, each with ``data: {file_id, status, message, progress,
// task_id?}``; S3 arrivals add a ``status`` event ``{status: "object_received", kind,
// key, size}`` on ``user:<id>`` (functions/events/s3_object.py).
import { useEffect, useRef, useState } from "preact/hooks";
import { follow, type LiveEvent } from "../ws";
import type { AnalysisStatus } from "./types";

export interface FileNews {
  fileId: number;
  status: AnalysisStatus;
  progress: number;
  message: string;
  kind: string;
  /** the analysis run it is about (a newer run supersedes an older one's news) */
  task: string | null;
  /** when it arrived (Date.now()): news older than a list's read of the file is stale */
  at: number;
}

/** The file news an event carries, or null (an arrival, another area's event). */
export function newsOf(e: LiveEvent): FileNews | null {
  const d = e.data ?? {};
  if (typeof d.file_id !== "number" || !["progress", "status", "error"].includes(e.kind)) return null;
  const status = (["uploaded", "processing", "completed", "failed"].includes(d.status) ? d.status : "processing") as AnalysisStatus;
  return {
    fileId: d.file_id,
    status,
    progress: typeof d.progress === "number" ? d.progress : 0,
    message: typeof d.message === "string" ? d.message : "",
    kind: e.kind,
    task: typeof d.task_id === "string" ? d.task_id : null,
    at: Date.now(),
  };
}

/** Follow ``topic`` while mounted (and while ``topic`` is set); ``onEvent`` always the
 * latest callback. Returns whether the socket is open. */
export function useFollow(topic: string | null, onEvent: (e: LiveEvent) => void, onOpen?: () => void): boolean {
  const cb = useRef(onEvent);
  cb.current = onEvent;
  const opened = useRef(onOpen);
  opened.current = onOpen;
  const [open, setOpen] = useState(false);
  useEffect(() => {
    if (!topic) return;
    return follow(
      topic,
      (e) => cb.current(e),
      (s) => {
        setOpen(s === "open");
        if (s === "open") opened.current?.();
      },
    );
  }, [topic]);
  return open;
}
