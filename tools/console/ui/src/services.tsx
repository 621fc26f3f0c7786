import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ControlProcessRequest_Action, type Instance } from "@meshwork/contracts/meshwork/console/v1/console";
import { useState } from "preact/hooks";
import { consoleApi, describeError, formatMs, serviceColour, usePolled } from "./api.js";

function uptime(i: Instance): string {
  if (!i.startedAt) return "-";
  const s = Math.max(0, Math.round((Date.now() - timestampDate(i.startedAt).getTime()) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

/** Problems the mesh answered with: shown on every page that polls, so "which is down" is never hidden. */
export function Problems({ problems }: { problems: readonly string[] }) {
  if (problems.length === 0) return null;
  return (
    <ul class="problems" data-testid="problems">
      {problems.map((p) => (
        <li key={p}>{p}</li>
      ))}
    </ul>
  );
}

/** Every instance with health, version, uptime, address and RED; stop/restart of local processes. */
export function Services() {
  const { value, error, reload } = usePolled(() => consoleApi.listInstances({}), 2000, []);
  const [open, setOpen] = useState<string>();
  const [acting, setActing] = useState<string>();
  const act = (service: string, action: ControlProcessRequest_Action) => {
    setActing(`${service}: ${action === ControlProcessRequest_Action.STOP ? "stopping" : "restarting"}…`);
    consoleApi
      .controlProcess({ service, action })
      .then((r) => setActing(`${service}: ${r.processState}`))
      .catch((err: unknown) => setActing(describeError(err)))
      .finally(reload);
  };
  return (
    <section>
      <h2>Services</h2>
      {error && <p class="error">console API: {error}</p>}
      {value && <Problems problems={value.problems} />}
      {acting && <p class="note">{acting}</p>}
      <table class="grid" data-testid="instances">
        <thead>
          <tr>
            <th>Service</th>
            <th>Health</th>
            <th>Process</th>
            <th>Address</th>
            <th>Version</th>
            <th>Up</th>
            <th>Requests</th>
            <th>Errors</th>
            <th>Mean</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(value?.instances ?? []).map((i) => {
            const key = `${i.service}@${i.address}`;
            const req = Number(i.red?.requests ?? 0n);
            const errs = Number(i.red?.errors ?? 0n);
            return [
              <tr key={key} data-testid={`instance-${i.service}`} data-health={i.health}>
                <td>
                  <span class="dot" style={{ background: serviceColour(i.service) }} />
                  <button type="button" class="link" onClick={() => setOpen(open === key ? undefined : key)}>
                    {i.service}
                  </button>
                </td>
                <td class={`health ${i.health === "SERVING" ? "ok" : "bad"}`}>{i.health}</td>
                <td>
                  {i.processState || "-"}
                  {i.restarts ? ` (${i.restarts} restarts)` : ""}
                </td>
                <td>{i.address || "-"}</td>
                <td>{i.version || "-"}</td>
                <td>{uptime(i)}</td>
                <td class="num">{req}</td>
                <td class="num">
                  {errs}
                  {req ? ` (${((errs / req) * 100).toFixed(1)}%)` : ""}
                </td>
                <td class="num">{req ? formatMs(i.red?.meanMs ?? 0) : "-"}</td>
                <td>
                  {i.controllable && (
                    <span class="actions">
                      <button
                        type="button"
                        data-testid={`stop-${i.service}`}
                        onClick={() => act(i.service, ControlProcessRequest_Action.STOP)}
                      >
                        Stop
                      </button>
                      <button
                        type="button"
                        data-testid={`restart-${i.service}`}
                        onClick={() => act(i.service, ControlProcessRequest_Action.RESTART)}
                      >
                        Restart
                      </button>
                    </span>
                  )}
                </td>
              </tr>,
              open === key && (
                <tr key={`${key}-methods`} class="detail">
                  <td colSpan={10}>
                    <table class="grid inner">
                      <thead>
                        <tr>
                          <th>Method</th>
                          <th>Requests</th>
                          <th>Errors</th>
                        </tr>
                      </thead>
                      <tbody>
                        {(i.red?.methods ?? []).map((m) => (
                          <tr key={m.method}>
                            <td>{m.method}</td>
                            <td class="num">{String(m.requests)}</td>
                            <td class="num">{String(m.errors)}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                    {i.instanceId && <p class="note">instance {i.instanceId}</p>}
                  </td>
                </tr>
              ),
            ];
          })}
        </tbody>
      </table>
      {value && value.instances.length === 0 && <p class="note">No instance in the registry yet.</p>}
    </section>
  );
}
