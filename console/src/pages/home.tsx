// Sign in / register, and the home page: who you are, your plan and its usage.
import { useState } from "preact/hooks";
import { API, get, post, setTokens } from "../api";
import { Card, ErrorBox, Progress, fmtNum, fmtTime, usePoll } from "../ui";

export function Login({ onSignedIn }: { onSignedIn: () => void }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "register") {
        await post(`${API}/auth/register`, { email, password, full_name: name || undefined });
      }
      const out = await post(`${API}/auth/login`, { email, password });
      setTokens(out.access_token); // the refresh token is not kept: the page never uses it
      onSignedIn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login">
      <h1>Crucible</h1>
      <p class="muted">Cry analysis, ASR and vision training, and a research leaderboard.</p>
      <form onSubmit={submit} class="card">
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === "login"} class={mode === "login" ? "on" : ""} onClick={() => setMode("login")}>
            Sign in
          </button>
          <button type="button" role="tab" aria-selected={mode === "register"} class={mode === "register" ? "on" : ""} onClick={() => setMode("register")}>
            Register
          </button>
        </div>
        {mode === "register" && (
          <label>
            Name
            <input name="name" value={name} onInput={(e) => setName(e.currentTarget.value)} autocomplete="name" />
          </label>
        )}
        <label>
          Email
          <input name="email" type="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} autocomplete="username" />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            required
            minLength={mode === "register" ? 8 : 1}
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            autocomplete={mode === "register" ? "new-password" : "current-password"}
          />
        </label>
        <ErrorBox error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {mode === "login" ? "Sign in" : "Create account"}
        </button>
      </form>
    </div>
  );
}

export function Home() {
  const { data: p, error } = usePoll(() => get(`${API}/user/profile`), []);
  if (error) return <ErrorBox error={error} />;
  if (!p) return <p class="muted">Loading…</p>;
  const u = p.usage;
  return (
    <div class="page">
      <h1>Welcome{p.name ? `, ${p.name}` : ""}</h1>
      <div class="grid2">
        <Card title="Account">
          <dl class="kv">
            <dt>Email</dt>
            <dd data-testid="me-email">{p.email}</dd>
            <dt>Role</dt>
            <dd>{p.role}</dd>
            <dt>Plan</dt>
            <dd data-testid="me-plan">{p.plan}</dd>
            <dt>Member since</dt>
            <dd>{fmtTime(p.created_at)}</dd>
          </dl>
        </Card>
        <Card title={`Usage (${new Date(u.period_start).toLocaleDateString()} – ${new Date(u.period_end).toLocaleDateString()})`}>
          <p>
            GPU hours: {fmtNum(u.gpu_hours_used, 2)} of {fmtNum(u.gpu_hours_limit, 2)}
          </p>
          <Progress value={u.gpu_hours_limit ? u.gpu_hours_used / u.gpu_hours_limit : 0} />
          <p>
            Storage: {fmtNum(u.storage_gb_used, 3)} GB of {fmtNum(u.storage_gb_limit, 1)} GB
          </p>
          <Progress value={u.storage_gb_limit ? u.storage_gb_used / u.storage_gb_limit : 0} />
          <p>
            Active workflows: {u.active_workflows} of {u.concurrent_workflows_limit}
          </p>
        </Card>
      </div>
      <Card title="Start here">
        <ul class="links">
          <li><a href="#/recordings">Upload a cry recording</a> and watch it analysed</li>
          <li><a href="#/datasets">Upload a dataset</a> (images or audio)</li>
          <li><a href="#/training/new">Train a model</a> on it and watch the curves</li>
          <li><a href="#/asr">ASR training</a> (seed 000)</li>
          <li><a href="#/leaderboard">Leaderboard</a></li>
        </ul>
      </Card>
    </div>
  );
}
