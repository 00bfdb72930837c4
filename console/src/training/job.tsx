// Placeholder: owned by the helper that builds the training job page and run comparison.
import type { Route } from "../router";

export function JobView(_props: { route: Route }) {
  return <div class="page"><h1>Job</h1></div>;
}
