// Placeholder: owned by the helper that builds the asr area.
import type { Route } from "../router";

export function AsrPage(_props: { route: Route }) {
  return <div class="page"><h1>Asr</h1></div>;
}
