// Who is signed in, and the events of their own work (`user:<id>`): every dataset that
// settles and every training job's status, progress and validation arrive here, so a
// list can move without polling. Shared by the datasets and training pages.
import { useEffect, useRef, useState } from "preact/hooks";
import { API, get } from "../api";
import { follow, type LiveEvent } from "../ws";

export interface Me {
  id: number;
  email: string;
  role: string;
}

let meOnce: Promise<Me> | null = null;

/** The signed-in user (asked once per page load; asked again after a failure). */
export function useMe(): Me | null {
  const [me, setMe] = useState<Me | null>(null);
  useEffect(() => {
    let live = true;
    meOnce ??= get<Me>(`${API}/auth/me`);
    meOnce.then(
      (m) => live && setMe(m),
      () => (meOnce = null),
    );
    return () => {
      live = false;
    };
  }, []);
  return me;
}

/** Follow ``user:<id>`` while mounted: ``onEvent`` for each event (the latest callback
 * passed is used), ``onOpen`` each time the socket (re)opens, when anything missed while
 * it was closed should be read again. Returns whether the socket is open. */
export function useUserEvents(onEvent: (e: LiveEvent) => void, onOpen?: () => void): boolean {
  const me = useMe();
  const [open, setOpen] = useState(false);
  const handlers = useRef({ onEvent, onOpen });
  handlers.current = { onEvent, onOpen };
  useEffect(() => {
    if (!me) return;
    return follow(
      `user:${me.id}`,
      (e) => handlers.current.onEvent(e),
      (state) => {
        setOpen(state === "open");
        if (state === "open") handlers.current.onOpen?.();
      },
    );
  }, [me?.id]);
  return open;
}

/** Follow one topic (``dataset:<id>``) while ``active``. */
export function useTopic(
  topic: string,
  active: boolean,
  onEvent: (e: LiveEvent) => void,
  onOpen?: () => void,
): boolean {
  const [open, setOpen] = useState(false);
  const handlers = useRef({ onEvent, onOpen });
  handlers.current = { onEvent, onOpen };
  useEffect(() => {
    if (!active) return;
    return follow(
      topic,
      (e) => handlers.current.onEvent(e),
      (state) => {
        setOpen(state === "open");
        if (state === "open") handlers.current.onOpen?.();
      },
    );
  }, [topic, active]);
  return open;
}
