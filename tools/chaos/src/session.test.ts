import { describe, expect, it } from "vitest";
import { createSession } from "./session.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a client's session", () => {
  it("logs in again at half its token's lifetime, and once for concurrent renewals", async () => {
    let logins = 0;
    const session = createSession(async () => {
      logins++;
      return { id: "u1", auth: { headers: { authorization: `Bearer t${logins}` } } };
    }, 0.2);
    expect(session.id).toBe("");
    expect((await session.auth()).headers.authorization).toBe("Bearer t1");
    expect((await session.auth()).headers.authorization).toBe("Bearer t1");
    expect(session.id).toBe("u1");
    await sleep(150); // past half of 200 ms
    expect((await session.auth()).headers.authorization).toBe("Bearer t2");
    await Promise.all([session.renew(), session.renew(), session.auth()]);
    expect(logins).toBe(3);
  });

  it("fails a login that never answers instead of waiting with it", async () => {
    const session = createSession(() => new Promise<never>(() => {}), 3_600, 50);
    await expect(session.auth()).rejects.toThrow("a login: not settled after 50 ms");
  });
});
