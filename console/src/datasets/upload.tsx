// Upload dataset archives: drop zips (or choose them), one dataset each, each with its own
// progress bar. Small archives go through the API (inspected on the spot: a malformed one is
// refused with the reason, nothing kept); large ones straight to S3 with a presigned POST
// (API Gateway takes at most 10 MB a request), inspected when they arrive.
import { useRef, useState } from "preact/hooks";
import { API, ApiError, post, sendWithProgress } from "../api";
import { Card, DropZone, Progress, fmtBytes } from "../ui";
import { FORMATS, type Dataset } from "./types";

/** Archives up to this size are sent through the API (it takes at most 4.4 MiB a request,
 * what a Lambda event carries); larger ones straight to S3. */
export const DIRECT_THRESHOLD = 4_000_000;

interface Upload {
  key: number;
  file: File;
  name: string;
  progress: number;
  phase: "sending" | "inspecting" | "arriving" | "done" | "refused";
  via: "api" | "s3";
  dataset?: Dataset | { id: string };
  error?: string;
}

interface Presign {
  dataset_id: string;
  url: string;
  fields: Record<string, string>;
}

let nextKey = 1;

export function UploadCard({ onChange }: { onChange: () => void }) {
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [name, setName] = useState("");
  const [format, setFormat] = useState<string>("auto");
  const input = useRef<HTMLInputElement>(null);

  const patch = (key: number, change: Partial<Upload>) =>
    setUploads((all) => all.map((u) => (u.key === key ? { ...u, ...change } : u)));

  const start = (files: File[]) => {
    const named = files.length === 1 && name.trim() ? name.trim() : null;
    for (const file of files) {
      const u: Upload = {
        key: nextKey++,
        file,
        name: named ?? file.name.replace(/\.zip$/i, ""),
        progress: 0,
        phase: "sending",
        via: file.size > DIRECT_THRESHOLD ? "s3" : "api",
      };
      setUploads((all) => [u, ...all]);
      send(u).catch((e) =>
        patch(u.key, { phase: "refused", error: e instanceof Error ? e.message : String(e) }),
      );
    }
    setName("");
  };

  const send = async (u: Upload) => {
    const onProgress = (f: number) =>
      patch(u.key, f >= 1 ? { progress: 1, phase: u.via === "api" ? "inspecting" : "arriving" } : { progress: f });
    if (u.via === "api") {
      const form = new FormData();
      form.append("file", u.file, u.file.name);
      form.append("name", u.name);
      form.append("format", format);
      const d: Dataset = await sendWithProgress("POST", `${API}/datasets/upload`, form, onProgress);
      patch(u.key, { phase: "done", progress: 1, dataset: d });
    } else {
      const g = await post<Presign>(`${API}/datasets/presign`, { name: u.name, size: u.file.size, format });
      onChange(); // listed now, uploading
      const form = new FormData();
      for (const [k, v] of Object.entries(g.fields)) form.append(k, v);
      form.append("file", u.file, u.file.name); // S3 wants the file last
      try {
        await sendWithProgress("POST", g.url, form, onProgress, { auth: false });
      } catch (e) {
        throw e instanceof ApiError && e.status === 0
          ? new ApiError(0, "The storage service could not be reached from this page (is this origin allowed by its CORS rules?)")
          : e;
      }
      patch(u.key, { phase: "done", progress: 1, dataset: { id: g.dataset_id } });
    }
    onChange();
  };

  return (
    <Card title="Upload a dataset">
      <div class="toolbar">
        <label>
          Name
          <input
            name="dataset-name"
            placeholder="the file's name"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <label>
          Format
          <select name="dataset-format" value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
            {FORMATS.map((f) => (
              <option key={f} value={f}>
                {f === "auto" ? "detect it" : f}
              </option>
            ))}
          </select>
        </label>
      </div>
      <DropZone
        data-testid="dataset-dropzone"
        onClick={() => input.current?.click()}
        onFiles={start}
      >
        <p>
          Drop a dataset <b>.zip</b> here, or <a href="#" onClick={(e) => e.preventDefault()}>choose one</a>
        </p>
        <p class="muted">
          ImageFolder (<code>train/&lt;class&gt;/*.png</code>, <code>val/…</code>), YOLO, COCO or LJSpeech.
          Archives over {fmtBytes(DIRECT_THRESHOLD)} go straight to storage.
        </p>
        <input
          ref={input}
          type="file"
          accept=".zip,application/zip"
          multiple
          hidden
          data-testid="dataset-file"
          onChange={(e) => {
            const files = [...(e.currentTarget.files ?? [])];
            e.currentTarget.value = "";
            if (files.length) start(files);
          }}
        />
      </DropZone>
      {uploads.length > 0 && (
        <ul class="ds-uploads">
          {uploads.map((u) => (
            <li key={u.key} data-testid="dataset-upload">
              <div class="ds-upload-head">
                <b>{u.name}</b>
                <span class="muted">
                  {fmtBytes(u.file.size)} · {u.via === "api" ? "through the API" : "straight to storage"}
                </span>
                <span class="ds-phase">{PHASES[u.phase]}</span>
                {u.dataset && <a href={`#/datasets/${encodeURIComponent(u.dataset.id)}`}>open</a>}
              </div>
              {u.phase !== "refused" && <Progress value={u.progress} label={u.file.name} />}
              {u.error && (
                <div class="ds-issue severity-error" role="alert" data-testid="upload-issue">
                  <span class="chip">refused</span> {u.error}
                </div>
              )}
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}

const PHASES: Record<Upload["phase"], string> = {
  sending: "sending…",
  inspecting: "inspecting…",
  arriving: "sent; inspecting when it arrives…",
  done: "done",
  refused: "refused",
};
