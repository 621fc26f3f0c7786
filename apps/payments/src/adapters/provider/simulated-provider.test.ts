import { describe, expect, it } from "vitest";
import { ProviderUnavailableError } from "../../domain/payment.js";
import { SimulatedProvider } from "./simulated-provider.js";

const healthy = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 1_000 };

describe("the simulated payment provider", () => {
  it("places one hold per payment id however many times, or however concurrently, it is asked", async () => {
    const provider = new SimulatedProvider({ ...healthy, addedLatencyMs: 20 });
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () => provider.call("authorize", "p1", 500)),
    );
    expect(outcomes).toEqual(Array(10).fill({}));
    expect(provider.holds).toBe(1);
    await provider.call("authorize", "p2", 500);
    expect(provider.holds).toBe(2);
    // The first outcome stands for the key, a decline too.
    expect(await provider.call("authorize", "p3", 5_000)).toEqual({
      declined: "amount 5000 is over the limit of 1000",
    });
    provider.faults = { ...healthy, declineAboveMinor: 0 };
    expect(await provider.call("authorize", "p3", 5_000)).toEqual({
      declined: "amount 5000 is over the limit of 1000",
    });
  });

  it("does not remember a failure: a retry after the provider is back goes through", async () => {
    const provider = new SimulatedProvider({ ...healthy, hardDown: true });
    await expect(provider.call("capture", "p1")).rejects.toBeInstanceOf(ProviderUnavailableError);
    provider.faults = healthy;
    expect(await provider.call("capture", "p1")).toEqual({});
  });
});
