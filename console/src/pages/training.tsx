// The training area: #/training (the job list), #/training/new (a new job from the config
// schema), #/training/compare?ids=1,2 (runs side by side) and #/training/<id> (one job).
import type { Route } from "../router";
import { CompareView } from "../training/compare";
import { JobView } from "../training/job";
import { TrainingList } from "../training/list";
import { NewJob } from "../training/new";

export function TrainingPage({ route }: { route: Route }) {
  switch (route.path[1]) {
    case undefined:
      return <TrainingList route={route} />;
    case "new":
      return <NewJob route={route} />;
    case "compare":
      return <CompareView route={route} />;
    default:
      return <JobView route={route} />;
  }
}
