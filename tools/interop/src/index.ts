export { createInteropService } from "./fixture.js";
export { file_grpc_testing_test, TestService, UnimplementedService } from "./gen/grpc/testing/test_pb.js";
