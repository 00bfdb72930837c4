// The drop zone: several recordings at once, one row each with its upload progress, the
// route it took, and then its analysis status as it moves (news from the page's socket).
import { useRef, useState } from "preact/hooks";
import { ApiError } from "../api";
import { DropZone, ErrorBox, Progress, Status, fmtBytes } from "../ui";
import type { FileNews } from "./live";
import { DIRECT_THRESHOLD, type UploadRoute, routeFor, uploadRecording } from "./upload";

const ACCEPT = ".wav,.mp3,.flac,.m4a,.ogg,audio/*";
const AT_ONCE = 2;
const ROUTE_LABEL: Record<UploadRoute, string> = {
  api: "through the API",
  "presigned-post": "direct to storage",
  multipart: "direct to storage, in parts",
};

interface Item {
  key: number;
  file: File;
  route: UploadRoute;
  progress: number;
  state: "waiting" | "uploading" | "uploaded" | "failed" | "cancelled";
  fileId?: number;
  note?: string;
  error?: unknown;
  abort: AbortController;
}

let nextKey = 1;

export function Uploader({ news, onUploaded }: { news: Record<number, FileNews>; onUploaded: () => void }) {
  const [items, setItems] = useState<Item[]>([]);
  const input = useRef<HTMLInputElement>(null);
  const running = useRef(0);
  const queue = useRef<Item[]>([]);

  const patch = (key: number, p: Partial<Item>) => setItems((xs) => xs.map((x) => (x.key === key ? { ...x, ...p } : x)));

  const pump = () => {
    while (running.current < AT_ONCE && queue.current.length) {
      const it = queue.current.shift()!;
      if (it.abort.signal.aborted) continue;
      running.current++;
      patch(it.key, { state: "uploading" });
      uploadRecording(it.file, (f) => patch(it.key, { progress: f }), it.abort.signal)
        .then((r) => {
          patch(it.key, { state: "uploaded", progress: 1, fileId: r.fileId, route: r.route, note: r.note });
          onUploaded();
        })
        .catch((e) => {
          const cancelled = e instanceof ApiError && e.code === "CANCELLED";
          patch(it.key, { state: cancelled ? "cancelled" : "failed", error: cancelled ? undefined : e });
        })
        .finally(() => {
          running.current--;
          pump();
        });
    }
  };

  const add = (files: FileList | File[] | null) => {
    const fresh: Item[] = [...(files ?? [])].map((file) => ({
      key: nextKey++,
      file,
      route: routeFor(file.size),
      progress: 0,
      state: "waiting",
      abort: new AbortController(),
    }));
    if (!fresh.length) return;
    setItems((xs) => [...fresh, ...xs]);
    queue.current.push(...fresh);
    pump();
  };

  return (
    <div class="rec-upload">
      <DropZone
        data-testid="dropzone"
        role="button"
        tabIndex={0}
        onClick={() => input.current?.click()}
        onKeyDown={(e) => (e.key === "Enter" || e.key === " ") && input.current?.click()}
        onFiles={add}
      >
        <strong>Drop cry recordings here</strong> or <span class="rec-link">choose files</span>
        <div class="muted">
          WAV, MP3, FLAC, M4A or OGG, up to 100 MB each; files over {fmtBytes(DIRECT_THRESHOLD)} go straight to storage.
          Each is analysed when it arrives.
        </div>
        <input
          ref={input}
          type="file"
          multiple
          accept={ACCEPT}
          hidden
          data-testid="file-input"
          onChange={(e) => {
            add(e.currentTarget.files);
            e.currentTarget.value = ""; // the same file may be chosen again
          }}
        />
      </DropZone>
      {items.length > 0 && (
        <ul class="rec-uploads" data-testid="uploads">
          {items.map((it) => {
            const n = it.fileId != null ? news[it.fileId] : undefined;
            return (
              <li key={it.key} data-testid="upload-item" data-state={it.state} data-route={it.route}>
                <div class="rec-upload-head">
                  <span class="rec-name" title={it.file.name}>
                    {it.fileId != null ? <a href={`#/recordings/${it.fileId}`}>{it.file.name}</a> : it.file.name}
                  </span>
                  <span class="muted">
                    {fmtBytes(it.file.size)} · {ROUTE_LABEL[it.route]}
                  </span>
                  <span class="rec-upload-state">
                    {it.state === "uploaded" ? (
                      <Status value={n?.status ?? "uploaded"} />
                    ) : it.state === "uploading" || it.state === "waiting" ? (
                      <>
                        {it.progress >= 1 && <span class="muted">sent; the server is checking it… </span>}
                        <button class="link-dark" onClick={() => it.abort.abort()}>
                          Cancel
                        </button>
                      </>
                    ) : (
                      <Status value={it.state} />
                    )}
                  </span>
                </div>
                <Progress value={it.progress} label={it.state === "waiting" ? "waiting" : "upload"} />
                {n && n.status === "processing" && <div class="muted rec-news">{n.message} ({n.progress}%)</div>}
                {n && n.status === "failed" && <div class="error">{n.message}</div>}
                {it.note && <div class="notice rec-news">{it.note}</div>}
                <ErrorBox error={it.error} />
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}
