// Live events: the local stack's and CloudFront's WebSocket paths on this same origin,
// authenticated with the subprotocols ["bearer", <token>] (never a token in the URL).
import { token } from "./api";

export interface LiveEvent {
  topic: string;
  kind: string; // progress | log | validation | status | error | checkpoint | metric ...
  event_id?: string;
  timestamp?: string;
  data: Record<string, any>;
}

/** The WebSocket URL for a path on this origin (``api/v1/ws?topic=job:5``). */
export function wsUrl(path: string): string {
  const u = new URL(path, location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.hash = "";
  return u.toString();
}

/** Follow ``topic`` (``job:5``, ``file:12``, ``user:3``): ``onEvent`` for each event, a
 * reconnect with back-off while the page wants it. Returns what stops following. */
export function follow(
  topic: string,
  onEvent: (e: LiveEvent) => void,
  onState: (state: "open" | "closed") => void = () => {},
): () => void {
  let ws: WebSocket | null = null;
  let stopped = false;
  let delay = 500;
  const open = () => {
    if (stopped) return;
    const url = wsUrl(`api/v1/ws?topic=${encodeURIComponent(topic)}&format=crucible`);
    ws = new WebSocket(url, ["bearer", token() ?? ""]);
    ws.onopen = () => {
      delay = 500;
      onState("open");
    };
    ws.onmessage = (m) => {
      try {
        const e = JSON.parse(m.data);
        if (e && typeof e === "object" && e.kind) onEvent(e as LiveEvent);
      } catch {
        /* not an event (a pong, a subscription answer) */
      }
    };
    ws.onclose = (c) => {
      onState("closed");
      if (!stopped && c.code !== 4401 && c.code !== 4403 && c.code !== 1008) {
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10_000);
      }
    };
  };
  open();
  return () => {
    stopped = true;
    ws?.close();
  };
}
