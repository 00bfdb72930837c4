// The recordings list: status (moving live), tags, duration, size, when uploaded;
// filters by status and tag; paging. The API lists without filters (skip/limit only),
// so a filtered view reads the whole list and pages it here.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { API, get } from "../api";
import { go, type Route } from "../router";
import { Card, ErrorBox, Pager, Progress, Status, fmtBytes, fmtTime } from "../ui";
import { newsOf, type FileNews, useFollow } from "./live";
import type { AudioFile, FileList, Tag } from "./types";
import { Uploader } from "./uploader";

const PAGE = 20;
const SCAN_LIMIT = 1000; // the API's largest page
const SCAN_MAX = 10_000; // a filtered view reads at most this many recordings

export const fmtDuration = (s: number | null | undefined) =>
  s == null ? "—" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;

async function loadPage(page: number, status: string, tag: string): Promise<{ files: AudioFile[]; total: number; scanned?: number }> {
  if (!status && !tag) {
    const r = await get<FileList>(`${API}/audio-files/?skip=${(page - 1) * PAGE}&limit=${PAGE}`);
    return { files: r.files, total: r.total };
  }
  const all: AudioFile[] = [];
  for (let skip = 0; skip < SCAN_MAX; skip += SCAN_LIMIT) {
    const r = await get<FileList>(`${API}/audio-files/?skip=${skip}&limit=${SCAN_LIMIT}`);
    all.push(...r.files);
    if (all.length >= r.total || r.files.length < SCAN_LIMIT) break;
  }
  const wanted = all.filter((f) => (!status || f.status === status) && (!tag || f.tags.some((t) => String(t.id) === tag)));
  return { files: wanted.slice((page - 1) * PAGE, page * PAGE), total: wanted.length, scanned: all.length };
}

export function RecordingsList({ route, userId }: { route: Route; userId: number | null }) {
  const q = route.query;
  const page = Math.max(1, Number(q.get("page")) || 1);
  const status = q.get("status") ?? "";
  const tag = q.get("tag") ?? "";
  const [data, setData] = useState<{ files: AudioFile[]; total: number; scanned?: number; at: number } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tags, setTags] = useState<Tag[]>([]);
  const [news, setNews] = useState<Record<number, FileNews>>({});
  const gen = useRef(0);
  const timer = useRef<number | undefined>(undefined);

  const reload = async () => {
    const mine = ++gen.current;
    const at = Date.now();
    try {
      const d = await loadPage(page, status, tag);
      if (mine === gen.current) {
        setData({ ...d, at });
        setError(null);
      }
    } catch (e) {
      if (mine === gen.current) setError(e);
    }
  };
  // The timer runs the reload of the view as it is when it fires: news that came under
  // another filter must not bring that filter's list back after the user changed it.
  const latest = useRef(reload);
  latest.current = reload;
  /** Reload soon, once for a burst of news (several files arriving together). */
  const reloadSoon = () => {
    clearTimeout(timer.current);
    timer.current = window.setTimeout(() => latest.current(), 300);
  };
  useEffect(() => {
    reload();
  }, [page, status, tag]);
  useEffect(() => {
    get(`${API}/tags/?limit=1000`).then((r) => setTags(r.tags), () => {});
    return () => clearTimeout(timer.current);
  }, []);

  const shown = useRef<Set<number>>(new Set());
  shown.current = new Set((data?.files ?? []).map((f) => f.id));
  const live = useFollow(
    userId != null ? `user:${userId}` : null,
    (e) => {
      const n = newsOf(e);
      if (n) {
        setNews((m) => ({ ...m, [n.fileId]: n }));
        // a file this page does not show yet (a direct upload registered), or one that
        // left the filter's status: the list itself changes
        if (!shown.current.has(n.fileId) || status || n.status === "completed" || n.status === "failed") reloadSoon();
      } else if (e.data?.status === "object_received" && e.data?.kind === "audio") reloadSoon();
    },
    reloadSoon, // (re)connected: whatever moved meanwhile
  );

  const setQuery = (changes: Record<string, string>) => {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) v ? next.set(k, v) : next.delete(k);
    const s = next.toString();
    go(`/recordings${s ? `?${s}` : ""}`);
  };

  const pages = data ? Math.max(1, Math.ceil(data.total / PAGE)) : 1;
  const rows = useMemo(
    () =>
      (data?.files ?? []).map((f) => {
        const n = news[f.id];
        // news that arrived after the list was read is newer than what it says
        return n && data && n.at > data.at ? { ...f, status: n.status, progress: n.progress } : f;
      }),
    [data, news],
  );

  return (
    <div class="page">
      <h1>Cry recordings</h1>
      <Card title="Upload">
        <Uploader news={news} onUploaded={reloadSoon} />
      </Card>
      <Card
        title="Recordings"
        actions={
          <span class={`rec-live ${live ? "on" : ""}`} data-testid="live" title="Status changes arrive over a WebSocket">
            {live ? "live" : "offline"}
          </span>
        }
      >
        <div class="toolbar">
          <label class="rec-inline">
            Status
            <select data-testid="filter-status" value={status} onChange={(e) => setQuery({ status: e.currentTarget.value, page: "" })}>
              <option value="">any</option>
              {["uploaded", "processing", "completed", "failed"].map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          </label>
          <label class="rec-inline">
            Tag
            <select data-testid="filter-tag" value={tag} onChange={(e) => setQuery({ tag: e.currentTarget.value, page: "" })}>
              <option value="">any</option>
              {tags.map((t) => (
                <option key={t.id} value={String(t.id)}>
                  {t.name}
                </option>
              ))}
            </select>
          </label>
          {(status || tag) && (
            <button onClick={() => setQuery({ status: "", tag: "", page: "" })}>Clear filters</button>
          )}
          <span class="muted" data-testid="list-total">
            {data ? `${data.total} recording${data.total === 1 ? "" : "s"}${data.scanned != null ? ` of ${data.scanned}` : ""}` : ""}
          </span>
        </div>
        <ErrorBox error={error} />
        {data && data.total === 0 && !error && (
          <p class="muted">{status || tag ? "No recording matches these filters." : "No recordings yet: drop one above."}</p>
        )}
        {rows.length > 0 && (
          <table data-testid="recordings">
            <thead>
              <tr>
                <th>Recording</th>
                <th>Status</th>
                <th>Tags</th>
                <th class="num">Duration</th>
                <th class="num">Size</th>
                <th>Uploaded</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((f) => (
                <tr key={f.id} class="clickable" data-testid="recording-row" data-id={f.id} onClick={(e) => (e.target as HTMLElement).closest("a") || go(`/recordings/${f.id}`)}>
                  <td>
                    <a href={`#/recordings/${f.id}`}>{f.original_filename}</a>
                  </td>
                  <td class="rec-status-cell">
                    <span data-testid="row-status">
                      <Status value={f.status} />
                    </span>
                    {f.status === "processing" && <Progress value={f.progress / 100} />}
                    {f.status === "failed" && f.error && <div class="muted rec-small">{f.error}</div>}
                  </td>
                  <td>
                    {f.tags.map((t) => (
                      <span key={t.id} class="chip">
                        {t.name}
                      </span>
                    ))}
                  </td>
                  <td class="num">{fmtDuration(f.duration)}</td>
                  <td class="num">{fmtBytes(f.file_size)}</td>
                  <td>{fmtTime(f.uploaded_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {data && data.total > PAGE && (
          <Pager testid="pager" page={page} hasNext={page < pages} onPage={(n) => setQuery({ page: String(n) })}>
            <span>
              Page {page} of {pages}
            </span>
          </Pager>
        )}
      </Card>
    </div>
  );
}
