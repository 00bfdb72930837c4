// Submit code for evaluation (seed 004): the files (.py, .yaml, .zip or .tar.gz; archives
// unpack at the root beside the others), the entrypoint and config among them, metadata
// (the method's name, the board it ranks on), then a job in a resource class.
import { useState } from "preact/hooks";
import { post, sendWithProgress } from "../api";
import { go } from "../router";
import { Card, DropZone, ErrorBox, Progress, fmtBytes } from "../ui";
import { LB } from "./api";

const ALLOWED = [".py", ".yaml", ".yml", ".zip", ".tar.gz"];
const MAX_BYTES = 100 * 1024 * 1024;

const allowed = (name: string) => ALLOWED.some((ext) => name.toLowerCase().endsWith(ext));

/** The name a list of files suggests for a field: ``want`` if it is among them, else the
 * first of the right kind, else ``want`` (inside an archive, perhaps). */
function suggest(files: File[], want: string, exts: string[]): string {
  const names = files.map((f) => f.name);
  if (names.includes(want)) return want;
  return names.find((n) => exts.some((e) => n.endsWith(e))) ?? want;
}

export function SubmitCard({ board }: { board: string }) {
  const [files, setFiles] = useState<File[]>([]);
  const [entrypoint, setEntrypoint] = useState("main.py");
  const [config, setConfig] = useState("config.yaml");
  const [method, setMethod] = useState("");
  const [target, setTarget] = useState(board);
  const [extra, setExtra] = useState("");
  const [resource, setResource] = useState("small");
  const [frac, setFrac] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);

  const add = (list: FileList | File[] | null | undefined) => {
    if (!list?.length) return;
    const picked = [...files.filter((f) => ![...list].some((n) => n.name === f.name)), ...list];
    const bad = picked.filter((f) => !allowed(f.name));
    setError(bad.length ? new Error(`Only ${ALLOWED.join(", ")} files are accepted: ${bad.map((f) => f.name).join(", ")}`) : null);
    const good = picked.filter((f) => allowed(f.name));
    setFiles(good);
    setEntrypoint(suggest(good, entrypoint, [".py"]));
    setConfig(suggest(good, config, [".yaml", ".yml"]));
  };
  const total = files.reduce((n, f) => n + f.size, 0);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    let metadata: Record<string, unknown> = {};
    if (extra.trim()) {
      try {
        metadata = JSON.parse(extra);
      } catch {
        setError(new Error("More metadata must be a JSON object, e.g. {\"backbone\": \"resnet18\"}"));
        return;
      }
      if (!metadata || typeof metadata !== "object" || Array.isArray(metadata)) {
        setError(new Error("More metadata must be a JSON object"));
        return;
      }
    }
    if (method.trim()) metadata.method = method.trim();
    if (target.trim() && target.trim() !== "default") metadata.leaderboard = target.trim();
    if (total > MAX_BYTES) {
      setError(new Error(`The files come to ${fmtBytes(total)}: at most 100 MB in all`));
      return;
    }
    const body = new FormData();
    for (const f of files) body.append("files", f, f.name);
    body.append("entrypoint", entrypoint);
    body.append("config_file", config);
    if (Object.keys(metadata).length) body.append("metadata", JSON.stringify(metadata));
    setFrac(0);
    try {
      const sub = await sendWithProgress("POST", `${LB}/submissions`, body, setFrac);
      const job = await post<{ job_id: string }>(`${LB}/jobs`, {
        submission_id: sub.submission_id,
        config: { resource_class: resource },
      });
      go(`/leaderboard/jobs/${encodeURIComponent(job.job_id)}`);
    } catch (err) {
      setError(err);
    } finally {
      setFrac(null);
    }
  };

  return (
    <Card title="Submit for evaluation">
      <form onSubmit={submit} data-testid="submit-form">
        <DropZone
          onFiles={add}
        >
          Drop your code here ({ALLOWED.join(", ")}), or{" "}
          <label class="lb-pick">
            choose files
            <input
              type="file"
              multiple
              accept={ALLOWED.join(",")}
              aria-label="Submission files"
              onChange={(e) => {
                add(e.currentTarget.files);
                e.currentTarget.value = "";
              }}
            />
          </label>
        </DropZone>
        {files.length > 0 && (
          <ul class="lb-files" data-testid="submit-files">
            {files.map((f) => (
              <li key={f.name}>
                <span>{f.name}</span> <span class="muted">{fmtBytes(f.size)}</span>{" "}
                <button type="button" class="link-dark" aria-label={`Remove ${f.name}`} onClick={() => setFiles(files.filter((g) => g !== f))}>
                  ✕
                </button>
              </li>
            ))}
          </ul>
        )}
        <datalist id="lb-names">
          {files.map((f) => (
            <option key={f.name} value={f.name} />
          ))}
        </datalist>
        <div class="lb-fields">
          <label>
            Entrypoint
            <input value={entrypoint} required maxLength={300} list="lb-names" onInput={(e) => setEntrypoint(e.currentTarget.value)} />
          </label>
          <label>
            Config file
            <input value={config} required maxLength={300} list="lb-names" onInput={(e) => setConfig(e.currentTarget.value)} />
          </label>
          <label>
            Method
            <input value={method} maxLength={200} placeholder="e.g. padim" onInput={(e) => setMethod(e.currentTarget.value)} />
          </label>
          <label>
            Rank on board
            <input value={target} pattern="[a-z0-9][a-z0-9_\-]{0,47}" maxLength={48} onInput={(e) => setTarget(e.currentTarget.value)} />
          </label>
          <label>
            Resource class
            <select value={resource} onChange={(e) => setResource(e.currentTarget.value)}>
              <option value="small">small</option>
              <option value="medium">medium</option>
            </select>
          </label>
        </div>
        <label>
          More metadata (JSON, optional)
          <textarea rows={2} value={extra} placeholder='{"backbone": "resnet18"}' onInput={(e) => setExtra(e.currentTarget.value)} />
        </label>
        {frac != null && <Progress value={frac} label="upload" />}
        <ErrorBox error={error} />
        <div class="toolbar">
          <button class="primary" type="submit" disabled={!files.length || frac != null}>
            Submit and evaluate
          </button>
          <span class="muted">
            {files.length ? `${files.length} file(s), ${fmtBytes(total)}` : "Your entrypoint runs with --config and --output, and writes metrics.json there."}
          </span>
        </div>
      </form>
    </Card>
  );
}
