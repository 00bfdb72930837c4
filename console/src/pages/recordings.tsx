// The recordings area: #/recordings (upload, list with filters and paging, live status)
// and #/recordings/<id> (the analysis view).
import { useEffect, useState } from "preact/hooks";
import { API, get } from "../api";
import type { Route } from "../router";
import { RecordingView } from "../recordings/analysis";
import { RecordingsList } from "../recordings/list";

export function RecordingsPage({ route }: { route: Route }) {
  const [userId, setUserId] = useState<number | null>(null);
  useEffect(() => {
    get(`${API}/auth/me`).then((me) => setUserId(me.id), () => {});
  }, []);
  const id = Number(route.path[1]);
  if (route.path[1] && Number.isInteger(id) && id > 0) return <RecordingView id={id} />;
  return <RecordingsList route={route} userId={userId} />;
}
