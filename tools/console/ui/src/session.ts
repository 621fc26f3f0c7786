import { useEffect, useState } from "preact/hooks";

/** The token of the login made in the page (kept for the tab only). */
export interface Session {
  email: string;
  userId: string;
  roles: string[];
  token: string;
}

const KEY = "meshwork-console-session";
const listeners = new Set<(s: Session | undefined) => void>();

export function currentSession(): Session | undefined {
  const raw = sessionStorage.getItem(KEY);
  return raw ? (JSON.parse(raw) as Session) : undefined;
}

export function setSession(s: Session | undefined): void {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  for (const l of listeners) l(s);
}

export function useSession(): Session | undefined {
  const [s, set] = useState(currentSession());
  useEffect(() => {
    listeners.add(set);
    return () => {
      listeners.delete(set);
    };
  }, []);
  return s;
}
