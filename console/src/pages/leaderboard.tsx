// Leaderboard (seed 004): #/leaderboard is the ranking, the submit form and your
// submissions' jobs; #/leaderboard/jobs/<id> is one job (status, log, results, actions).
// The ranking's choices live in the hash (?board=&metric=&order=&every=&filter=), so a
// view can be linked to.
import { useEffect, useState } from "preact/hooks";
import { API, get } from "../api";
import { go, type Route } from "../router";
import { JobPage, JobsCard } from "../leaderboard/jobs";
import { RankingCard, type RankingQuery } from "../leaderboard/ranking";
import { SubmitCard } from "../leaderboard/submit";

function queryOf(route: Route): RankingQuery {
  const q = route.query;
  return {
    board: q.get("board") || "default",
    metric: q.get("metric") || "",
    order: q.get("order") === "asc" ? "asc" : "desc",
    everyRun: q.get("every") === "1",
    filter: q.get("filter") || "",
  };
}

function hashOf(q: RankingQuery): string {
  const s = new URLSearchParams();
  if (q.board !== "default") s.set("board", q.board);
  if (q.metric) s.set("metric", q.metric);
  if (q.order !== "desc") s.set("order", q.order);
  if (q.everyRun) s.set("every", "1");
  if (q.filter) s.set("filter", q.filter);
  const qs = s.toString();
  return `/leaderboard${qs ? `?${qs}` : ""}`;
}

export function LeaderboardPage({ route }: { route: Route }) {
  const [me, setMe] = useState<number | null>(null);
  useEffect(() => {
    get<{ id: number }>(`${API}/auth/me`).then(
      (u) => setMe(u.id),
      () => {},
    );
  }, []);
  if (route.path[1] === "jobs" && route.path[2]) return <JobPage id={route.path[2]} />;
  const q = queryOf(route);
  return (
    <div class="page">
      <h1>Leaderboard</h1>
      <RankingCard q={q} setQ={(n) => go(hashOf(n))} me={me} />
      <div class="grid2">
        <SubmitCard board={q.board} />
        <JobsCard />
      </div>
    </div>
  );
}
