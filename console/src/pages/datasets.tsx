// Placeholder: owned by the helper that builds the datasets area.
import type { Route } from "../router";

export function DatasetsPage(_props: { route: Route }) {
  return <div class="page"><h1>Datasets</h1></div>;
}
