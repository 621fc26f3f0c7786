import type { SagaQueries } from "@meshwork/saga";
import { describe, expect, it } from "vitest";
import { PermissionDeniedError, SagaNotFoundError } from "../../domain/order.js";
import { getSaga } from "./get-saga.js";
import { listSagas } from "./list-sagas.js";

/** Queries that must not be reached by a refused caller. */
const untouchable: SagaQueries = {
  list: () => Promise.reject(new Error("listed for a refused caller")),
  get: () => Promise.reject(new Error("read for a refused caller")),
};

// The runtime already refuses these methods to callers without the admin role (the proto's
// access policy); the use cases check again, so no other port can reach them unchecked.
describe("the saga queries are for operators", () => {
  it("refuses a caller without the admin role before reading anything", async () => {
    await expect(
      listSagas({ sagas: untouchable }, { roles: ["customer"], states: [], pageSize: 0, pageToken: "" }),
    ).rejects.toBeInstanceOf(PermissionDeniedError);
    await expect(
      getSaga(
        { sagas: untouchable },
        { roles: ["customer"], sagaId: "0190a0b0-0000-7000-8000-000000000000" },
      ),
    ).rejects.toBeInstanceOf(PermissionDeniedError);
  });

  it("asks for one more row than the page, and hands out a token only when there was one", async () => {
    const seen: number[] = [];
    const ids = ["0190a0b0-0000-7000-8000-000000000003", "0190a0b0-0000-7000-8000-000000000002"];
    const rows = ids.map((id) => ({ id })) as unknown as Awaited<ReturnType<SagaQueries["list"]>>;
    const queries: SagaQueries = {
      list: async (f) => {
        seen.push(f.limit);
        return rows.slice(0, f.limit);
      },
      get: async () => undefined,
    };
    const page = await listSagas(
      { sagas: queries },
      { roles: ["admin"], states: [], pageSize: 1, pageToken: "" },
    );
    expect(seen).toEqual([2]);
    expect(page.sagas.map((s) => s.id)).toEqual([ids[0]]);
    expect(page.nextPageToken).not.toBe("");
    await expect(
      getSaga({ sagas: queries }, { roles: ["admin"], sagaId: "0190a0b0-0000-7000-8000-000000000009" }),
    ).rejects.toBeInstanceOf(SagaNotFoundError);
  });
});
