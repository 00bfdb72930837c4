// The API client: one origin (relative URLs), the access token in localStorage, and the
// platform's error bodies ({detail} / {error: {message}}) turned into one readable message.

const TOKEN_KEY = "crucible.token";

export const API = "api/v1";

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

/** Keep the access token (an hour's) or forget it. Nothing longer-lived is kept in the
 * page's storage: a signed-out tab, or anything that ever read it, holds nothing more. */
export function setTokens(access: string | null): void {
  if (access) localStorage.setItem(TOKEN_KEY, access);
  else localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem("crucible.refresh"); // what earlier builds kept
}

/** A refusal the API gave: its status, its words, and the field it names (if any). */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public code?: string,
    public field?: string,
  ) {
    super(message);
  }
}

/** The message an error body carries, whichever seed's shape it has. */
export function messageOf(body: unknown, status: number): ApiError {
  const b = (body ?? {}) as Record<string, any>;
  let detail = b.detail;
  if (Array.isArray(detail)) {
    detail = detail.map((d) => `${(d.loc ?? []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  const msg = (typeof detail === "string" && detail) || b.error?.message || `HTTP ${status}`;
  return new ApiError(status, msg, b.code ?? b.error?.code, b.field);
}

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(cb: () => void): void {
  onUnauthorized = cb;
}

/** A JSON request to a path relative to the site (``api/v1/...`` or a seed's root path). */
export async function request<T = any>(
  method: string,
  path: string,
  body?: unknown,
  init: RequestInit = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload: BodyInit | undefined;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, ...init });
  const text = await res.text();
  let data: any = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = text;
  }
  if (!res.ok) {
    if (res.status === 401 && t) {
      setTokens(null);
      onUnauthorized();
    }
    throw messageOf(data, res.status);
  }
  return data as T;
}

export const get = <T = any>(path: string) => request<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown) => request<T>("POST", path, body);
export const del = <T = any>(path: string) => request<T>("DELETE", path);

/** A binary resource (an image, a recording) as an object URL the page may show. */
export async function blobUrl(path: string): Promise<string> {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token() ?? ""}` } });
  if (!res.ok) throw messageOf(await res.json().catch(() => ({})), res.status);
  return URL.createObjectURL(await res.blob());
}

/** Send ``body`` with progress reports (fetch cannot report upload progress). To the API
 * (``auth`` true) or to a presigned URL (no Authorization header: the URL is the grant). */
export function sendWithProgress(
  method: string,
  url: string,
  body: Blob | FormData,
  onProgress: (fraction: number) => void,
  opts: { auth?: boolean; headers?: Record<string, string> } = {},
): Promise<any> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    if (opts.auth !== false && token()) xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    for (const [k, v] of Object.entries(opts.headers ?? {})) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "The connection failed"));
    xhr.onload = () => {
      let data: any = undefined;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : undefined;
      } catch {
        data = xhr.responseText;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(data);
      } else reject(messageOf(data, xhr.status));
    };
    xhr.send(body);
  });
}
