// Getting a recording to the platform, by the route its size calls for:
//
// * up to DIRECT_THRESHOLD: the API's multipart form (``audio-files/upload``), which
//   registers the file and answers its record;
// * above it, straight to S3 (API Gateway caps a request at 10 MB, Lambda at 6 MB): a
//   presigned POST (``audio-files/presign``) for one request, or, above
//   MULTIPART_THRESHOLD, a presigned multipart upload (``audio-files/multipart``: each
//   part PUT to its own URL, several at once, each retried, then
//   ``{id}/multipart/complete`` with the parts' ETags). S3's "Object Created" event
//   registers and analyses the file; the API has no record of it until then.
//
// A browser can use a presigned URL only where the bucket's CORS rules list the page's
// origin (and expose ``ETag`` for multipart). Where they do not, the request fails
// before any answer (status 0): the file then goes through the API instead, and the
// row says why, so a misconfigured bucket is visible rather than silently slow.
import { API, ApiError, messageOf, post, token } from "../api";
import type { AudioFile } from "./types";

export const DIRECT_THRESHOLD = 4_000_000; // bytes, as sizes are shown (fmtBytes: 1 MB = 10^6 B)
export const MULTIPART_THRESHOLD = 32_000_000;
export const MAX_BYTES = 100 * 1024 * 1024; // the platform's limit for audio (413 beyond)
const PART_CONCURRENCY = 3;
const PART_ATTEMPTS = 3;

export type UploadRoute = "api" | "presigned-post" | "multipart";

export function routeFor(size: number): UploadRoute {
  if (size <= DIRECT_THRESHOLD) return "api";
  return size <= MULTIPART_THRESHOLD ? "presigned-post" : "multipart";
}

export interface Uploaded {
  fileId: number;
  route: UploadRoute;
  /** the record, when the API registered the file itself (the API route) */
  file?: AudioFile;
  /** why the route differs from the one the size called for */
  note?: string;
}

interface Sent {
  status: number;
  body: any;
  etag: string | null;
}

/** One XHR (fetch cannot report upload progress), abortable; rejects with ApiError. */
function send(
  method: string,
  url: string,
  body: Blob | FormData,
  onProgress: (loaded: number) => void,
  { auth, signal }: { auth: boolean; signal?: AbortSignal },
): Promise<Sent> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ApiError(0, "Cancelled", "CANCELLED"));
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    const t = token();
    if (auth && t) xhr.setRequestHeader("Authorization", `Bearer ${t}`);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    const abort = () => xhr.abort();
    signal?.addEventListener("abort", abort);
    const done = () => signal?.removeEventListener("abort", abort);
    xhr.onabort = () => {
      done();
      reject(new ApiError(0, "Cancelled", "CANCELLED"));
    };
    xhr.onerror = () => {
      done();
      reject(new ApiError(0, `The browser could not reach ${new URL(url, location.href).origin}`, "NETWORK"));
    };
    xhr.onload = () => {
      done();
      let data: any = xhr.responseText;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : undefined;
      } catch {
        /* S3 answers XML (or nothing) */
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve({ status: xhr.status, body: data, etag: xhr.getResponseHeader("ETag") });
      } else if (typeof data === "string" && data.includes("<Error>")) {
        const msg = /<Message>([^<]*)<\/Message>/.exec(data)?.[1] ?? `HTTP ${xhr.status}`;
        reject(new ApiError(xhr.status, `Storage refused the upload: ${msg}`, "STORAGE"));
      } else reject(messageOf(data, xhr.status));
    };
    xhr.send(body);
  });
}

const isCancel = (e: unknown) => e instanceof ApiError && e.code === "CANCELLED";
const unreachable = (e: unknown) => e instanceof ApiError && e.code === "NETWORK";

async function viaApi(file: File, onProgress: (f: number) => void, signal?: AbortSignal): Promise<Uploaded> {
  const form = new FormData();
  form.append("file", file, file.name);
  const r = await send("POST", `${API}/audio-files/upload`, form, (n) => onProgress(Math.min(n / file.size, 1)), {
    auth: true,
    signal,
  });
  return { fileId: r.body.file.id, route: "api", file: r.body.file as AudioFile };
}

function grantRequest(file: File) {
  return { filename: file.name, size: file.size, content_type: file.type || undefined };
}

async function viaPresignedPost(file: File, onProgress: (f: number) => void, signal?: AbortSignal): Promise<Uploaded> {
  const g = await post(`${API}/audio-files/presign`, grantRequest(file));
  const form = new FormData();
  for (const [k, v] of Object.entries(g.fields as Record<string, string>)) form.append(k, v);
  form.append("file", file, file.name); // S3 reads the fields before the file: last
  await send("POST", g.url, form, (n) => onProgress(Math.min(n / file.size, 1)), { auth: false, signal });
  return { fileId: g.file_id, route: "presigned-post" };
}

async function viaMultipart(file: File, onProgress: (f: number) => void, signal?: AbortSignal): Promise<Uploaded> {
  const g = await post(`${API}/audio-files/multipart`, grantRequest(file));
  const parts = g.parts as { part_number: number; size: number; url: string }[];
  const loaded = new Map<number, number>();
  const report = () => onProgress([...loaded.values()].reduce((a, b) => a + b, 0) / file.size);
  const etags = new Map<number, string>();
  let offset = 0;
  const jobs = parts.map((p) => {
    const start = offset;
    offset += p.size;
    return { ...p, start };
  });
  const putPart = async (p: (typeof jobs)[number]) => {
    const blob = file.slice(p.start, p.start + p.size); // exactly the size its URL is signed for
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await send("PUT", p.url, blob, (n) => (loaded.set(p.part_number, n), report()), { auth: false, signal });
        if (!r.etag) throw new ApiError(0, "Storage did not expose the part's ETag (its CORS rules must expose ETag)", "ETAG");
        etags.set(p.part_number, r.etag);
        loaded.set(p.part_number, p.size);
        report();
        return;
      } catch (e) {
        loaded.set(p.part_number, 0);
        // a refusal, a cancel or an unreachable storage does not get better by retrying
        if (attempt >= PART_ATTEMPTS || isCancel(e) || (e instanceof ApiError && e.status >= 400 && e.status < 500) || (unreachable(e) && !etags.size)) throw e;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  };
  const queue = [...jobs];
  let failed = false; // one part's failure stops the others from taking more
  await Promise.all(
    Array.from({ length: Math.min(PART_CONCURRENCY, queue.length) }, async () => {
      for (let p = queue.shift(); p && !failed; p = queue.shift()) {
        await putPart(p).catch((e) => {
          failed = true;
          throw e;
        });
      }
    }),
  );
  await post(`${API}/audio-files/${g.file_id}/multipart/complete`, {
    upload_id: g.upload_id,
    parts: parts.map((p) => ({ part_number: p.part_number, etag: etags.get(p.part_number)! })),
  });
  onProgress(1);
  return { fileId: g.file_id, route: "multipart" };
}

/** Upload ``file`` by the route its size calls for; ``onProgress`` gets 0..1. */
export async function uploadRecording(
  file: File,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<Uploaded> {
  if (file.size > MAX_BYTES) {
    throw new ApiError(413, `${file.name} is larger than ${MAX_BYTES / (1024 * 1024)} MB, the limit for a recording`);
  }
  const route = routeFor(file.size);
  if (route === "api") return viaApi(file, onProgress, signal);
  try {
    return await (route === "multipart" ? viaMultipart : viaPresignedPost)(file, onProgress, signal);
  } catch (e) {
    if (!unreachable(e)) throw e;
    // The storage URL is on another origin the browser would not send to (CORS) or
    // cannot reach: the API takes the file instead, where its own limits allow.
    onProgress(0);
    const sent = await viaApi(file, onProgress, signal);
    return {
      ...sent,
      note: `Direct upload to storage failed (${(e as Error).message}: its CORS rules must allow ${location.origin}); sent through the API instead`,
    };
  }
}
