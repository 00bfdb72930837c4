/// <reference types="vite/client" />
// The console's shell: sign-in gate, navigation, and the hash routes of each area.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { API, get, setTokens, token, whenUnauthorized } from "./api";
import { useRoute } from "./router";
import { Home, Login } from "./pages/home";
import { RecordingsPage } from "./pages/recordings";
import { DatasetsPage } from "./pages/datasets";
import { TrainingPage } from "./pages/training";
import { AsrPage } from "./pages/asr";
import { LeaderboardPage } from "./pages/leaderboard";
import "./style.css";

const AREAS = [
  { key: "", label: "Home" },
  { key: "recordings", label: "Recordings" },
  { key: "datasets", label: "Datasets" },
  { key: "training", label: "Training" },
  { key: "asr", label: "ASR" },
  { key: "leaderboard", label: "Leaderboard" },
];

function App() {
  const route = useRoute();
  const [signedIn, setSignedIn] = useState(!!token());
  const [me, setMe] = useState<any>(null);
  useEffect(() => whenUnauthorized(() => setSignedIn(false)), []);
  useEffect(() => {
    if (signedIn) get(`${API}/auth/me`).then(setMe, () => {});
  }, [signedIn]);
  if (!signedIn) return <Login onSignedIn={() => setSignedIn(true)} />;
  const area = route.path[0] ?? "";
  const page = (() => {
    switch (area) {
      case "recordings":
        return <RecordingsPage route={route} />;
      case "datasets":
        return <DatasetsPage route={route} />;
      case "training":
        return <TrainingPage route={route} />;
      case "asr":
        return <AsrPage route={route} />;
      case "leaderboard":
        return <LeaderboardPage route={route} />;
      default:
        return <Home />;
    }
  })();
  return (
    <div class="shell">
      <nav>
        <a class="brand" href="#/">Crucible</a>
        {AREAS.map((a) => (
          <a key={a.key} href={`#/${a.key}`} class={area === a.key ? "on" : ""}>
            {a.label}
          </a>
        ))}
        <span class="spacer" />
        <span class="who" data-testid="who">{me?.email ?? ""}</span>
        <button
          class="link"
          onClick={() => {
            setTokens(null);
            // a fresh page: nothing the last account's session cached outlives it
            location.hash = "#/";
            location.reload();
          }}
        >
          Sign out
        </button>
      </nav>
      <main>{page}</main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
