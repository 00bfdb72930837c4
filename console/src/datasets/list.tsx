// #/datasets: the upload card and the caller's datasets, a page at a time, moving live as
// each settles (ready or failed: pushed on `user:<id>`).
import { useEffect } from "preact/hooks";
import { API, get } from "../api";
import { go, type Route } from "../router";
import { Card, ErrorBox, Pager, Status, fmtBytes, fmtTime, usePoll } from "../ui";
import { useUserEvents } from "./live";
import { FORMATS, inFlight, type DatasetList } from "./types";
import { UploadCard } from "./upload";

const PAGE = 20;

export function DatasetList({ route }: { route: Route }) {
  const page = Math.max(1, Number(route.query.get("page")) || 1);
  const format = route.query.get("format") ?? "";
  const { data, error, reload } = usePoll(() => {
    const q = new URLSearchParams({ skip: String((page - 1) * PAGE), limit: String(PAGE) });
    if (format) q.set("format", format);
    return get<DatasetList>(`${API}/datasets?${q}`);
  }, [page, format]);
  useUserEvents((e) => {
    if (e.topic.startsWith("dataset:")) reload();
  }, reload);
  // a presigned upload's arrival is inspected by itself: while one is in flight, and the
  // socket could miss its settling, the list is read again now and then
  const moving = data?.datasets.some(inFlight);
  useEffect(() => {
    if (!moving) return;
    const t = setInterval(reload, 5000);
    return () => clearInterval(t);
  }, [moving]);

  const set = (changes: Record<string, string>) => {
    const q = new URLSearchParams(route.query);
    for (const [k, v] of Object.entries(changes)) v ? q.set(k, v) : q.delete(k);
    const qs = q.toString();
    go(`/datasets${qs ? `?${qs}` : ""}`);
  };
  const pages = data ? Math.max(1, Math.ceil(data.total / PAGE)) : 1;

  return (
    <div class="page">
      <h1>Datasets</h1>
      <UploadCard onChange={reload} />
      <Card
        title="Your datasets"
        actions={
          <label class="dtl-inline">
            Format
            <select value={format} onChange={(e) => set({ format: e.currentTarget.value, page: "" })}>
              <option value="">any</option>
              {FORMATS.filter((f) => f !== "auto").map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
          </label>
        }
      >
        <ErrorBox error={error} />
        {!data ? (
          <p class="muted">Loading…</p>
        ) : data.total === 0 ? (
          <p class="muted">No datasets yet: drop a zip above.</p>
        ) : (
          <>
            <table data-testid="dataset-table">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Status</th>
                  <th>Format</th>
                  <th class="num">Files</th>
                  <th class="num">Size</th>
                  <th class="num">Classes</th>
                  <th>Created</th>
                </tr>
              </thead>
              <tbody>
                {data.datasets.map((d) => (
                  <tr key={d.id} class="clickable" data-testid="dataset-row" onClick={() => go(`/datasets/${encodeURIComponent(d.id)}`)}>
                    <td>
                      <a href={`#/datasets/${encodeURIComponent(d.id)}`}>{d.name}</a>
                      {d.error && <div class="ds-row-error">{d.error}</div>}
                    </td>
                    <td>
                      <Status value={d.status} />
                    </td>
                    <td>{d.format}</td>
                    <td class="num">{d.status === "ready" ? d.file_count : "—"}</td>
                    <td class="num">{d.status === "ready" ? fmtBytes(d.total_size_bytes) : "—"}</td>
                    <td class="num">{d.status === "ready" ? d.num_classes : "—"}</td>
                    <td>{fmtTime(d.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <Pager page={page} hasNext={page < pages} onPage={(n) => set({ page: String(n) })}>
              <span class="muted">
                {data.total} dataset{data.total === 1 ? "" : "s"} · page {page} of {pages}
              </span>
            </Pager>
          </>
        )}
      </Card>
    </div>
  );
}
