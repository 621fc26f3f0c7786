import type { AllowedLongFunction } from "./function-lengths.js";

/**
 * Functions allowed over the bar, each with its reason. Only what truly cannot be split belongs
 * here for good. "pending" entries are debts still to pay (issue 22): ones other work is changing
 * right now, and ones not split yet. The test fails when an entry is no longer needed, so the list
 * only shrinks; line counts in the comments are from when each entry was added.
 */
export const ALLOWED_LONG_FUNCTIONS: readonly AllowedLongFunction[] = [
  {
    file: "apps/orders/src/server.ts",
    name: "createOrdersService",
    reason: "pending: not split yet (issue 22)",
  }, // 190 lines
  {
    file: "apps/inventory/src/ports/rpc/inventory-service.ts",
    name: "createInventoryServiceHandlers",
    reason: "pending: being changed in another branch now; split it after that lands (issue 22)",
  }, // 116 lines
  {
    file: "libs/discovery/src/discovery.ts",
    name: "createDiscovery",
    reason: "pending: not split yet (issue 22)",
  }, // 116 lines
  {
    file: "apps/inventory/src/server.ts",
    name: "createInventoryService",
    reason: "pending: being changed in another branch now; split it after that lands (issue 22)",
  }, // 111 lines
  {
    file: "apps/orders/src/server.ts",
    name: "createOrdersService > prepare",
    reason: "pending: not split yet (issue 22)",
  }, // 90 lines
  {
    file: "apps/notifications/src/server.ts",
    name: "createNotificationsService",
    reason: "pending: not split yet (issue 22)",
  }, // 88 lines
];
