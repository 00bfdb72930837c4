// Placeholder: owned by the helper that builds the leaderboard area.
import type { Route } from "../router";

export function LeaderboardPage(_props: { route: Route }) {
  return <div class="page"><h1>Leaderboard</h1></div>;
}
