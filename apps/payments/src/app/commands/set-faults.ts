import type { Logger } from "@meshwork/telemetry";
import type { Faults } from "../../domain/payment.js";
import type { FaultSwitch } from "../../domain/ports.js";

/** Flips this instance's provider fault switch (tests and demos), and logs it. */
export function setFaults(
  deps: { provider: FaultSwitch; logger: Pick<Logger, "warn"> },
  faults: Faults,
): Faults {
  deps.provider.faults = faults;
  deps.logger.warn({ faults: deps.provider.faults }, "provider faults set");
  return deps.provider.faults;
}
