// The datasets area: #/datasets (upload and list) and #/datasets/<id> (one dataset).
import type { Route } from "../router";
import { DatasetDetail } from "../datasets/detail";
import { DatasetList } from "../datasets/list";

export function DatasetsPage({ route }: { route: Route }) {
  return route.path[1] ? <DatasetDetail route={route} /> : <DatasetList route={route} />;
}
