// The ranking (seed 004's GET /leaderboard): completed jobs of one board ranked by one
// metric, each user's best (or every run), filtered on params; each row links to its job
// (yours) and to its MLflow run.
import { useState } from "preact/hooks";
import { get } from "../api";
import { Card, ErrorBox, fmtNum, fmtTime, usePoll } from "../ui";
import { LB, safeLink, text, type Board } from "./api";

export interface RankingQuery {
  board: string;
  metric: string;
  order: "desc" | "asc";
  everyRun: boolean;
  filter: string; // "name=value" pairs, comma-separated: param filters
}

function queryString(q: RankingQuery): string {
  const s = new URLSearchParams({ board: q.board || "default", order: q.order, limit: "100" });
  if (q.metric) s.set("metric", q.metric);
  if (q.everyRun) s.set("every_run", "true");
  for (const pair of q.filter.split(",")) {
    const [k, ...v] = pair.split("=");
    if (k.trim() && v.length) s.append(`param.${k.trim()}`, v.join("=").trim());
  }
  return s.toString();
}

export function RankingCard({ q, setQ, me }: { q: RankingQuery; setQ: (q: RankingQuery) => void; me: number | null }) {
  const [filter, setFilter] = useState(q.filter);
  const board = usePoll(() => get<Board>(`${LB}?${queryString(q)}`), [queryString(q)], 15_000);
  const b = board.data;
  const shownMetrics = b ? b.metrics.filter((m) => m !== b.metric).slice(0, 4) : [];

  return (
    <Card
      title={`Ranking: ${b?.leaderboard ?? q.board}`}
      actions={
        <button onClick={board.reload} title="Load the ranking again">
          Refresh
        </button>
      }
    >
      <div class="toolbar lb-controls">
        <label class="lb-inline">
          Board
          <input
            value={q.board}
            size={12}
            pattern="[a-z0-9][a-z0-9_\-]{0,47}"
            onChange={(e) => setQ({ ...q, board: e.currentTarget.value.trim() || "default", metric: "" })}
          />
        </label>
        <label class="lb-inline">
          Metric
          <select value={q.metric || b?.metric || ""} onChange={(e) => setQ({ ...q, metric: e.currentTarget.value })}>
            {(b?.metrics.length ? b.metrics : [b?.metric ?? ""]).map((m) => (
              <option key={m} value={m}>
                {m || "—"}
              </option>
            ))}
          </select>
        </label>
        <label class="lb-inline">
          Order
          <select value={q.order} onChange={(e) => setQ({ ...q, order: e.currentTarget.value as "desc" | "asc" })}>
            <option value="desc">higher is better</option>
            <option value="asc">lower is better</option>
          </select>
        </label>
        <label class="lb-inline lb-check">
          <input type="checkbox" checked={q.everyRun} onChange={(e) => setQ({ ...q, everyRun: e.currentTarget.checked })} />
          every run
        </label>
        <form
          class="lb-inline"
          onSubmit={(e) => {
            e.preventDefault();
            setQ({ ...q, filter });
          }}
        >
          <input value={filter} size={22} placeholder="dataset=mvtec_ad, backbone=…" aria-label="Filter on params" onInput={(e) => setFilter(e.currentTarget.value)} />
          <button type="submit">Filter</button>
        </form>
      </div>
      <ErrorBox error={board.error} />
      {!b ? (
        <p class="muted">Loading…</p>
      ) : !b.entries.length ? (
        <p class="muted" data-testid="ranking-empty">
          No completed run on this board yet{q.filter ? " that matches the filter" : ""}.
        </p>
      ) : (
        <table data-testid="ranking">
          <thead>
            <tr>
              <th class="num">#</th>
              <th class="num">{b.metric}</th>
              <th>Method</th>
              <th>User</th>
              <th>Params</th>
              {shownMetrics.map((m) => (
                <th class="num" key={m}>
                  {m}
                </th>
              ))}
              <th>Finished</th>
              <th>Run</th>
            </tr>
          </thead>
          <tbody>
            {b.entries.map((e) => {
              const mine = me != null && e.user_id === me;
              const mlflow = safeLink(e.mlflow_ui_link);
              return (
                <tr key={e.job_id} class={mine ? "lb-mine" : ""} data-testid={`rank-${e.job_id}`}>
                  <td class="num">{e.rank}</td>
                  <td class="num lb-score">{fmtNum(e.score)}</td>
                  <td>{text(e.metadata.method ?? e.params.method) || <span class="muted">—</span>}</td>
                  <td>{mine ? <strong>you</strong> : `user ${e.user_id}`}</td>
                  <td>
                    {Object.entries(e.params)
                      .filter(([k]) => k !== "method")
                      .slice(0, 6)
                      .map(([k, v]) => (
                        <span class="chip" key={k}>
                          {k}={text(v)}
                        </span>
                      ))}
                  </td>
                  {shownMetrics.map((m) => (
                    <td class="num" key={m}>
                      {fmtNum(e.metrics[m])}
                    </td>
                  ))}
                  <td>{fmtTime(e.finished_at)}</td>
                  <td class="lb-links">
                    {mine && <a href={`#/leaderboard/jobs/${encodeURIComponent(e.job_id)}`}>job {e.job_id}</a>}
                    {mlflow && (
                      <a href={mlflow} target="_blank" rel="noopener noreferrer">
                        MLflow
                      </a>
                    )}
                    {!mine && !mlflow && <span class="muted">{e.run_id ?? "—"}</span>}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {b && b.total > b.entries.length && (
        <p class="muted">
          Showing {b.entries.length} of {b.total}.
        </p>
      )}
    </Card>
  );
}
