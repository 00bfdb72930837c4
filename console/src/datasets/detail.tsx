// #/datasets/<id>: what ingestion found (files, size, splits, classes), the class
// distribution chart, and the validation report (seed 003's /validate): live while the
// archive is still being inspected (`dataset:<id>`).
import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import { API, get, post } from "../api";
import type { Route } from "../router";
import { Card, ErrorBox, Status, fmtBytes, fmtNum, fmtTime, usePoll } from "../ui";
import { ClassChart } from "./chart";
import { useTopic } from "./live";
import { FORMATS, inFlight, type Dataset, type Issue, type ValidationReport } from "./types";

export function DatasetDetail({ route }: { route: Route }) {
  const id = route.path[1];
  const { data: d, error, reload } = usePoll(() => get<Dataset>(`${API}/datasets/${encodeURIComponent(id)}`), [id]);
  const moving = !!d && inFlight(d);
  const live = useTopic(`dataset:${id}`, moving, () => reload(), reload);
  useEffect(() => {
    // the socket tells the settling; should it be closed, the page still gets there
    if (!moving || live) return;
    const t = setInterval(reload, 3000);
    return () => clearInterval(t);
  }, [moving, live]);

  if (error && !d) return <ErrorBox error={error} />;
  if (!d) return <p class="muted">Loading…</p>;
  const stats = d.statistics ?? {};
  const splits = Object.entries(stats).filter(([k]) => k.endsWith("_images") && k !== "total_images");
  return (
    <div class="page">
      <p>
        <a href="#/datasets">← Datasets</a>
      </p>
      <h1 data-testid="dataset-name">{d.name}</h1>
      <ErrorBox error={error} />
      <div class="grid2">
        <Card title="Dataset" actions={d.status === "ready" && <a href={`#/training/new?dataset=${encodeURIComponent(d.id)}`}>Train on it →</a>}>
          <dl class="kv">
            <dt>Status</dt>
            <dd data-testid="dataset-status">
              <Status value={d.status} />
              {moving && <span class="muted"> {d.status === "uploading" ? "waiting for the archive…" : "inspecting the archive…"}</span>}
            </dd>
            <dt>Format</dt>
            <dd>{d.format}</dd>
            <dt>Files</dt>
            <dd>{d.file_count}</dd>
            <dt>Size</dt>
            <dd>
              {fmtBytes(d.total_size_bytes)}
              {d.size_mb >= 0.01 && <span class="muted"> ({fmtNum(d.size_mb, 2)} MiB zipped)</span>}
            </dd>
            <dt>Classes</dt>
            <dd>{d.num_classes}</dd>
            {splits.map(([k, v]) => (
              <Fragment key={k}>
                <dt>{k.replace(/_images$/, "")} split</dt>
                <dd>{String(v)} files</dd>
              </Fragment>
            ))}
            <dt>Created</dt>
            <dd>{fmtTime(d.created_at)}</dd>
            {d.description && (
              <>
                <dt>Description</dt>
                <dd>{d.description}</dd>
              </>
            )}
          </dl>
          {moving && <div class="progress ds-indeterminate" role="progressbar" aria-label="inspecting"><div class="bar" /></div>}
        </Card>
        <Card title="Class distribution">
          {d.status === "ready" ? (
            <ClassChart distribution={d.class_distribution} />
          ) : (
            <p class="muted">{d.status === "failed" ? "Nothing was ingested." : "Known once the archive is inspected."}</p>
          )}
        </Card>
      </div>
      <Validation dataset={d} />
    </div>
  );
}

function Validation({ dataset: d }: { dataset: Dataset }) {
  const [format, setFormat] = useState("");
  const [classes, setClasses] = useState("");
  const [report, setReport] = useState<ValidationReport | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const run = async (expected_format: string, expected_classes: string) => {
    setBusy(true);
    try {
      const body: Record<string, unknown> = {};
      if (expected_format) body.expected_format = expected_format;
      if (expected_classes) body.expected_classes = Number(expected_classes);
      setReport(await post<ValidationReport>(`${API}/datasets/${encodeURIComponent(d.id)}/validate`, body));
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  // the report of the dataset as it is now (again when it settles)
  useEffect(() => {
    if (!inFlight(d)) run(format, classes);
  }, [d.id, d.status]);

  return (
    <Card title="Validation">
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          run(format, classes);
        }}
      >
        <span class="muted">Check it against what you expect:</span>
        <label class="dtl-inline">
          Format
          <select name="expected-format" value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
            <option value="">any</option>
            {FORMATS.filter((f) => f !== "auto").map((f) => (
              <option key={f} value={f}>
                {f}
              </option>
            ))}
          </select>
        </label>
        <label class="dtl-inline">
          Classes
          <input name="expected-classes" type="number" min={0} style={{ width: "6em" }} value={classes} onInput={(e) => setClasses(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy || inFlight(d)}>
          Validate
        </button>
      </form>
      <ErrorBox error={error} />
      {inFlight(d) ? (
        <p class="muted">Validated once the archive is inspected.</p>
      ) : !report ? (
        <p class="muted">Validating…</p>
      ) : (
        <div data-testid="validation">
          <p data-testid="validation-verdict">
            {report.valid ? <Status value="valid" /> : <Status value="invalid" />}{" "}
            {report.issues.length ? `${report.issues.length} issue${report.issues.length === 1 ? "" : "s"}` : "No issues found."}
          </p>
          {report.issues.length > 0 && (
            <ul class="ds-issues">
              {report.issues.map((issue, i) => (
                <IssueRow key={i} issue={issue} />
              ))}
            </ul>
          )}
          {report.recommendations.length > 0 && (
            <>
              <h3 class="ds-h3">Recommendations</h3>
              <ul>
                {report.recommendations.map((r, i) => (
                  <li key={i}>{r}</li>
                ))}
              </ul>
            </>
          )}
        </div>
      )}
    </Card>
  );
}

function IssueRow({ issue }: { issue: Issue }) {
  const details = Object.entries(issue.details ?? {});
  return (
    <li class={`ds-issue severity-${issue.severity}`} data-testid="validation-issue">
      <span class="chip">{issue.severity}</span> {issue.message}
      {details.length > 0 && (
        <span class="muted ds-issue-details">
          {" "}
          ({details.slice(0, 12).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`).join(", ")}
          {details.length > 12 ? `, … ${details.length - 12} more` : ""})
        </span>
      )}
    </li>
  );
}
