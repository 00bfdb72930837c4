// Placeholder: owned by the helper that builds the training area.
import type { Route } from "../router";

export function TrainingPage(_props: { route: Route }) {
  return <div class="page"><h1>Training</h1></div>;
}
