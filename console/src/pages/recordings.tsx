// Placeholder: owned by the helper that builds the recordings area.
import type { Route } from "../router";

export function RecordingsPage(_props: { route: Route }) {
  return <div class="page"><h1>Recordings</h1></div>;
}
