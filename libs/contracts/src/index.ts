import type { DescFile } from "@bufbuild/protobuf";
import { file_grpc_health_v1_health } from "./gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "./gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_meshwork_api_v1_access } from "./gen/meshwork/api/v1/access_pb.js";
import { file_meshwork_common_v1_money } from "./gen/meshwork/common/v1/money_pb.js";
import { file_meshwork_inventory_v1_inventory } from "./gen/meshwork/inventory/v1/inventory_pb.js";
import { file_meshwork_notifications_v1_notifications } from "./gen/meshwork/notifications/v1/notifications_pb.js";
import { file_meshwork_orders_v1_events } from "./gen/meshwork/orders/v1/events_pb.js";
import { file_meshwork_orders_v1_orders } from "./gen/meshwork/orders/v1/orders_pb.js";
import { file_meshwork_payments_v1_events } from "./gen/meshwork/payments/v1/events_pb.js";
import { file_meshwork_payments_v1_payments } from "./gen/meshwork/payments/v1/payments_pb.js";
import { file_meshwork_users_v1_events } from "./gen/meshwork/users/v1/events_pb.js";
import { file_meshwork_users_v1_users } from "./gen/meshwork/users/v1/users_pb.js";

/**
 * Every Meshwork contract file, for code that works on the whole mesh at once: the gateway's
 * route table, `meshctl`, tests that walk every method. Services import the one file they serve
 * through its subpath, e.g. `@meshwork/contracts/meshwork/users/v1/users`.
 */
export const meshworkFiles: readonly DescFile[] = [
  file_meshwork_api_v1_access,
  file_meshwork_users_v1_users,
  file_meshwork_users_v1_events,
  file_meshwork_common_v1_money,
  file_meshwork_inventory_v1_inventory,
  file_meshwork_payments_v1_payments,
  file_meshwork_payments_v1_events,
  file_meshwork_orders_v1_orders,
  file_meshwork_orders_v1_events,
  file_meshwork_notifications_v1_notifications,
];

/**
 * The infrastructure contracts every service serves beside its own (health and reflection).
 */
export const platformFiles: readonly DescFile[] = [
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];
