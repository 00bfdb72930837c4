// Small shared pieces every page uses: error banner, status badge, progress bar, tables,
// formatting and a polling hook. Pages own their own layout.
import type { ComponentChildren, HTMLAttributes } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const msg = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  return (
    <div class="error" role="alert">
      {msg}
    </div>
  );
}

export function Status({ value }: { value: string | undefined | null }) {
  return <span class={`status status-${value ?? "unknown"}`}>{value ?? "—"}</span>;
}

export function Progress({ value, label }: { value: number; label?: string }) {
  const pct = Math.max(0, Math.min(100, Math.round(value * 100)));
  return (
    <div class="progress" role="progressbar" aria-valuenow={pct} aria-valuemin={0} aria-valuemax={100} aria-label={label}>
      <div class="bar" style={{ width: `${pct}%` }} />
      <span>{label ? `${label} ` : ""}{pct}%</span>
    </div>
  );
}

export function Card({ title, children, actions }: { title?: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      {(title || actions) && (
        <header>
          {title && <h2>{title}</h2>}
          {actions && <div class="actions">{actions}</div>}
        </header>
      )}
      {children}
    </section>
  );
}

export function fmtBytes(n: number | null | undefined): string {
  if (n == null) return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(+d) ? iso : d.toLocaleString();
}

export function fmtNum(x: number | null | undefined, digits = 4): string {
  if (x == null || Number.isNaN(x)) return "—";
  return Math.abs(x) >= 1000 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(digits).replace(/\.?0+$/, "");
}

/** ``load()`` now and every ``everyMs`` while ``active`` (a list whose items still move). */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[], everyMs = 0) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const gen = useRef(0);
  const reload = async () => {
    const mine = ++gen.current;
    try {
      const d = await load();
      if (mine === gen.current) {
        setData(d);
        setError(null);
      }
    } catch (e) {
      if (mine === gen.current) setError(e);
    }
  };
  useEffect(() => {
    reload();
    if (!everyMs) return;
    const t = setInterval(reload, everyMs);
    return () => clearInterval(t);
  }, deps);
  return { data, error, reload, setData };
}

/** Offer ``data`` as a download named ``name``. */
export function download(name: string, data: string, type = "application/json"): void {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

type DivProps = Omit<
  HTMLAttributes<HTMLDivElement>,
  "class" | "onDrop" | "onDragEnter" | "onDragOver" | "onDragLeave"
>;

/** A drop target for files, highlighted while something is dragged over it; ``onFiles``
 * gets what was dropped (nothing when the drop held no file). Other props go to its div. */
export function DropZone({
  onFiles,
  class: extra,
  children,
  ...rest
}: DivProps & { onFiles: (files: File[]) => void; class?: string; children: ComponentChildren }) {
  const [over, setOver] = useState(false);
  const hover = (e: DragEvent) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
    setOver(true);
  };
  return (
    <div
      {...rest}
      class={["dropzone", over && "over", extra].filter(Boolean).join(" ")}
      onDragEnter={hover}
      onDragOver={hover}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const files = [...(e.dataTransfer?.files ?? [])];
        if (files.length) onFiles(files);
      }}
    >
      {children}
    </div>
  );
}

/** Previous / Next over pages numbered from 1; ``children`` says where we are. */
export function Pager({
  page,
  hasNext,
  onPage,
  children,
  testid,
}: {
  page: number;
  hasNext: boolean;
  onPage: (page: number) => void;
  children: ComponentChildren;
  testid?: string;
}) {
  return (
    <div class="pager" data-testid={testid}>
      {children}
      <button disabled={page <= 1} onClick={() => onPage(page - 1)}>
        Previous
      </button>
      <button disabled={!hasNext} onClick={() => onPage(page + 1)}>
        Next
      </button>
    </div>
  );
}
