"""grpc/grpc's interop cases with Python grpcio as the client.

Usage: interop_client.py HOST:PORT [CASE ...]

Generates the grpc.testing stubs from ../proto with grpc_tools (Debian's python3-grpc-tools) into a
temporary directory, runs each case (every case when none is named) and prints one JSON line per
case: {"case": name, "ok": true} or {"case": name, "ok": false, "error": "..."}. Exits 0 when every
case passed.
"""

import json
import os
import sys
import tempfile
import threading
import traceback

import grpc
from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")


def load_stubs():
    out = tempfile.mkdtemp(prefix="interop-stubs-")
    files = [os.path.join("grpc", "testing", f) for f in ("empty.proto", "messages.proto", "test.proto")]
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with {rc}")
    # The stubs live in the package grpc.testing, inside grpcio's own `grpc` package: let that
    # package also find its subpackages in the generated tree.
    grpc.__path__.append(os.path.join(out, "grpc"))
    from grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc  # noqa: E402 (generated just now)

    return empty_pb2, messages_pb2, test_pb2_grpc


empty_pb2, messages_pb2, test_pb2_grpc = load_stubs()
M = messages_pb2

LARGE_REQUEST, LARGE_RESPONSE = 271828, 314159
INPUT_SIZES = [27182, 8, 1828, 45904]
OUTPUT_SIZES = [31415, 9, 2653, 58979]
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
TIMEOUT = 10


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def payload(n):
    return M.Payload(body=b"\0" * n)


def expect_failure(fn, code, message=None):
    try:
        fn()
    except grpc.RpcError as err:
        expect(err.code() == code, f"expected {code}, got {err.code()}: {err.details()!r}")
        if message is not None:
            expect(err.details() == message, f"expected message {message!r}, got {err.details()!r}")
        return
    raise AssertionError(f"the call succeeded; {code} was expected")


class Cases:
    def __init__(self, target):
        self.channel = grpc.insecure_channel(target)
        self.stub = test_pb2_grpc.TestServiceStub(self.channel)
        self.unimplemented = test_pb2_grpc.UnimplementedServiceStub(self.channel)

    def empty_unary(self):
        expect(self.stub.EmptyCall(empty_pb2.Empty(), timeout=TIMEOUT) == empty_pb2.Empty(), "not empty")

    def large_unary(self):
        res = self.stub.UnaryCall(
            M.SimpleRequest(response_size=LARGE_RESPONSE, payload=payload(LARGE_REQUEST)), timeout=TIMEOUT
        )
        expect(res.payload.body == b"\0" * LARGE_RESPONSE, f"payload of {len(res.payload.body)} bytes")

    def client_compressed_unary(self):
        def call(compressed, compression):
            req = M.SimpleRequest(
                response_size=LARGE_RESPONSE,
                payload=payload(LARGE_REQUEST),
                expect_compressed=M.BoolValue(value=compressed),
            )
            return self.stub.UnaryCall(req, timeout=TIMEOUT, compression=compression)

        expect_failure(lambda: call(True, grpc.Compression.NoCompression), grpc.StatusCode.INVALID_ARGUMENT)
        for compressed, compression in ((True, grpc.Compression.Gzip), (False, grpc.Compression.NoCompression)):
            res = call(compressed, compression)
            expect(len(res.payload.body) == LARGE_RESPONSE, f"payload of {len(res.payload.body)} bytes")

    def server_compressed_unary(self):
        for compressed in (True, False):
            res = self.stub.UnaryCall(
                M.SimpleRequest(
                    response_size=LARGE_RESPONSE,
                    payload=payload(LARGE_REQUEST),
                    response_compressed=M.BoolValue(value=compressed),
                ),
                timeout=TIMEOUT,
            )
            expect(len(res.payload.body) == LARGE_RESPONSE, f"payload of {len(res.payload.body)} bytes")

    def client_streaming(self):
        reqs = (M.StreamingInputCallRequest(payload=payload(n)) for n in INPUT_SIZES)
        res = self.stub.StreamingInputCall(reqs, timeout=TIMEOUT)
        expect(res.aggregated_payload_size == 74922, f"aggregated {res.aggregated_payload_size}")

    def client_compressed_streaming(self):
        def probe():
            req = M.StreamingInputCallRequest(payload=payload(27182), expect_compressed=M.BoolValue(value=True))
            return self.stub.StreamingInputCall(iter([req]), timeout=TIMEOUT)

        expect_failure(probe, grpc.StatusCode.INVALID_ARGUMENT)
        reqs = [
            M.StreamingInputCallRequest(payload=payload(n), expect_compressed=M.BoolValue(value=True))
            for n in (27182, 45904)
        ]
        res = self.stub.StreamingInputCall(iter(reqs), timeout=TIMEOUT, compression=grpc.Compression.Gzip)
        expect(res.aggregated_payload_size == 73086, f"aggregated {res.aggregated_payload_size}")

    def server_streaming(self):
        req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=n) for n in OUTPUT_SIZES])
        sizes = [len(r.payload.body) for r in self.stub.StreamingOutputCall(req, timeout=TIMEOUT)]
        expect(sizes == OUTPUT_SIZES, f"sizes {sizes}")

    def server_compressed_streaming(self):
        req = M.StreamingOutputCallRequest(
            response_parameters=[
                M.ResponseParameters(size=31415, compressed=M.BoolValue(value=True)),
                M.ResponseParameters(size=92653, compressed=M.BoolValue(value=False)),
            ]
        )
        sizes = [len(r.payload.body) for r in self.stub.StreamingOutputCall(req, timeout=TIMEOUT)]
        expect(sizes == [31415, 92653], f"sizes {sizes}")

    def ping_pong(self):
        pipe = Pipe()
        answers = self.stub.FullDuplexCall(pipe, timeout=TIMEOUT)
        for n_in, n_out in zip(INPUT_SIZES, OUTPUT_SIZES):
            pipe.put(M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=n_out)], payload=payload(n_in)))
            got = next(answers)
            expect(len(got.payload.body) == n_out, f"answer of {len(got.payload.body)} bytes, expected {n_out}")
        pipe.close()
        expect(next(answers, None) is None, "an answer after the last request")
        expect(answers.code() == grpc.StatusCode.OK, f"status {answers.code()}")

    def empty_stream(self):
        answers = self.stub.FullDuplexCall(iter([]), timeout=TIMEOUT)
        expect(list(answers) == [], "answers to no request")
        expect(answers.code() == grpc.StatusCode.OK, f"status {answers.code()}")

    def custom_metadata(self):
        metadata = (("x-grpc-test-echo-initial", "test_initial_metadata_value"), ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"))

        def check(call):
            initial = dict(call.initial_metadata())
            trailing = dict(call.trailing_metadata())
            expect(initial.get("x-grpc-test-echo-initial") == "test_initial_metadata_value", f"initial {initial}")
            expect(trailing.get("x-grpc-test-echo-trailing-bin") == b"\xab\xab\xab", f"trailing {trailing}")

        req = M.SimpleRequest(response_size=LARGE_RESPONSE, payload=payload(LARGE_REQUEST))
        _, call = self.stub.UnaryCall.with_call(req, metadata=metadata, timeout=TIMEOUT)
        check(call)
        stream_req = M.StreamingOutputCallRequest(
            response_parameters=[M.ResponseParameters(size=LARGE_RESPONSE)], payload=payload(LARGE_REQUEST)
        )
        answers = self.stub.FullDuplexCall(iter([stream_req]), metadata=metadata, timeout=TIMEOUT)
        sizes = [len(r.payload.body) for r in answers]
        expect(sizes == [LARGE_RESPONSE], f"sizes {sizes}")
        check(answers)

    def status_code_and_message(self):
        status = M.EchoStatus(code=2, message="test status message")
        expect_failure(
            lambda: self.stub.UnaryCall(M.SimpleRequest(response_status=status), timeout=TIMEOUT),
            grpc.StatusCode.UNKNOWN,
            "test status message",
        )
        expect_failure(
            lambda: list(self.stub.FullDuplexCall(iter([M.StreamingOutputCallRequest(response_status=status)]), timeout=TIMEOUT)),
            grpc.StatusCode.UNKNOWN,
            "test status message",
        )

    def special_status_message(self):
        status = M.EchoStatus(code=2, message=SPECIAL_MESSAGE)
        expect_failure(
            lambda: self.stub.UnaryCall(M.SimpleRequest(response_status=status), timeout=TIMEOUT),
            grpc.StatusCode.UNKNOWN,
            SPECIAL_MESSAGE,
        )

    def unimplemented_method(self):
        expect_failure(lambda: self.stub.UnimplementedMethod(empty_pb2.Empty(), timeout=TIMEOUT), grpc.StatusCode.UNIMPLEMENTED)

    def unimplemented_service(self):
        expect_failure(
            lambda: self.unimplemented.UnimplementedCall(empty_pb2.Empty(), timeout=TIMEOUT), grpc.StatusCode.UNIMPLEMENTED
        )

    def cancel_after_begin(self):
        pipe = Pipe()
        future = self.stub.StreamingInputCall.future(pipe, timeout=TIMEOUT)
        future.cancel()
        pipe.close()
        expect(future.cancelled(), "the call was not cancelled")
        # grpcio answers result() of a cancelled call with FutureCancelledError; its status is code().
        expect(future.code() == grpc.StatusCode.CANCELLED, f"status {future.code()}")

    def cancel_after_first_response(self):
        pipe = Pipe()
        answers = self.stub.FullDuplexCall(pipe, timeout=TIMEOUT)
        pipe.put(M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=31415)], payload=payload(27182)))
        got = next(answers)
        expect(len(got.payload.body) == 31415, f"answer of {len(got.payload.body)} bytes")
        answers.cancel()
        pipe.close()
        expect_failure(lambda: next(answers), grpc.StatusCode.CANCELLED)

    def timeout_on_sleeping_server(self):
        pipe = Pipe()
        answers = self.stub.FullDuplexCall(pipe, timeout=0.001)
        pipe.put(M.StreamingOutputCallRequest(payload=payload(27182)))
        try:
            expect_failure(lambda: next(answers), grpc.StatusCode.DEADLINE_EXCEEDED)
        finally:
            pipe.close()


class Pipe:
    """A request iterator the case feeds one message at a time (ping-pong)."""

    _END = object()

    def __init__(self):
        self._items = []
        self._cv = threading.Condition()

    def put(self, item):
        with self._cv:
            self._items.append(item)
            self._cv.notify()

    def close(self):
        self.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        with self._cv:
            while not self._items:
                self._cv.wait()
            item = self._items.pop(0)
        if item is self._END:
            raise StopIteration
        return item


ALL = [name for name in vars(Cases) if not name.startswith("_")]


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cases = Cases(argv[1])
    names = argv[2:] or ALL
    failed = 0
    for name in names:
        try:
            getattr(cases, name)()
            print(json.dumps({"case": name, "ok": True}), flush=True)
        except Exception as err:  # a failed case is reported, the others still run
            failed += 1
            detail = f"{type(err).__name__}: {err}" if isinstance(err, AssertionError) else traceback.format_exc(limit=3)
            print(json.dumps({"case": name, "ok": False, "error": detail}), flush=True)
    cases.channel.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
