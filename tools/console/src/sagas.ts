import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  type GetSagaRequest,
  type GetSagaResponse,
  GetSagaResponseSchema,
  type ListSagasRequest,
  type ListSagasResponse,
  ListSagasResponseSchema,
} from "@meshwork/contracts/meshwork/console/v1/console";
import { OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";

/**
 * The console's saga view: orders' ListSagas and GetSaga, called through the gateway with the
 * page's token like any call from the explorer. The console keeps no credential of its own (the
 * mesh has no default admin identity), so what the page sees is what its login may see, and the
 * gateway's policy, limits and tracing apply to these calls as to any other.
 */
export class SagaView {
  readonly #orders;

  constructor(readonly gatewayUrl: string) {
    this.#orders = createClient(OrderService, createGrpcTransport({ baseUrl: gatewayUrl }));
  }

  #options(token: string) {
    if (!token) {
      throw new ConnectError(
        "sagas are for operators: log in with an account that has the admin role",
        Code.Unauthenticated,
      );
    }
    return { headers: { authorization: `Bearer ${token}` }, timeoutMs: 10_000 };
  }

  async list(req: ListSagasRequest): Promise<ListSagasResponse> {
    const options = this.#options(req.token);
    const res = await this.#orders
      .listSagas({ states: req.states, pageSize: req.pageSize, pageToken: req.pageToken }, options)
      .catch((err: unknown) => this.#failed("ListSagas", err));
    return create(ListSagasResponseSchema, { sagas: res.sagas, nextPageToken: res.nextPageToken });
  }

  async get(req: GetSagaRequest): Promise<GetSagaResponse> {
    const options = this.#options(req.token);
    const res = await this.#orders
      .getSaga({ id: req.id }, options)
      .catch((err: unknown) => this.#failed("GetSaga", err));
    return create(GetSagaResponseSchema, { saga: res.saga });
  }

  /** The mesh's answer with its code, saying where it came from (the page shows the message). */
  #failed(method: string, err: unknown): never {
    const e = ConnectError.from(err);
    throw new ConnectError(
      `orders' ${method} through the gateway at ${this.gatewayUrl}: ${e.rawMessage}`,
      e.code,
    );
  }
}
