import { useState } from "preact/hooks";
import { consoleApi, describeError } from "./api.js";
import { setSession, useSession } from "./session.js";

const USERS = "meshwork.users.v1.UserService";

/** Log in (or register, then log in) through the gateway; the token is used by the explorer. */
export function LoginPanel() {
  const session = useSession();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  if (session) {
    return (
      <div class="login" data-testid="session">
        <span>
          logged in as <b>{session.email}</b>
          {session.roles.length ? ` (${session.roles.join(", ")})` : ""}
        </span>
        <button type="button" onClick={() => setSession(undefined)}>
          Log out
        </button>
      </div>
    );
  }
  const call = async (register: boolean) => {
    setBusy(true);
    setError(undefined);
    try {
      if (register) {
        const r = await consoleApi.invoke({
          service: USERS,
          method: "RegisterUser",
          requestJson: JSON.stringify({ email, password, displayName: email.split("@")[0] }),
        });
        if (r.code !== "ok" && r.code !== "already_exists") throw new Error(`${r.code}: ${r.message}`);
      }
      const r = await consoleApi.invoke({
        service: USERS,
        method: "Login",
        requestJson: JSON.stringify({ email, password }),
      });
      if (r.code !== "ok") throw new Error(`${r.code}: ${r.message}`);
      const body = JSON.parse(r.responseJson) as {
        accessToken: string;
        user?: { id?: string; roles?: string[] };
      };
      setSession({
        email,
        token: body.accessToken,
        userId: body.user?.id ?? "",
        roles: body.user?.roles ?? [],
      });
      setPassword("");
    } catch (err) {
      setError(err instanceof Error && !("code" in err) ? err.message : describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form
      class="login"
      onSubmit={(e) => {
        e.preventDefault();
        void call(false);
      }}
    >
      <input
        name="email"
        type="email"
        placeholder="email"
        value={email}
        onInput={(e) => setEmail(e.currentTarget.value)}
        autocomplete="username"
      />
      <input
        name="password"
        type="password"
        placeholder="password"
        value={password}
        onInput={(e) => setPassword(e.currentTarget.value)}
        autocomplete="current-password"
      />
      <button type="submit" disabled={busy} data-testid="login">
        Log in
      </button>
      <button type="button" disabled={busy} onClick={() => void call(true)} data-testid="register">
        Register
      </button>
      {error && (
        <span class="login-error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}
