"""Shared helpers for the python interop peers.

The node tests compile proto/konnectivity.proto with grpc_tools.protoc into a
directory named by the KONN_INTEROP_GEN environment variable; this module puts
it on sys.path and exposes the generated modules as `pb` and `pb_grpc`.

Peers talk to the node test through stdout (one JSON object per line, see
`emit`) and, where a peer needs to be told when to act, stdin (one command
per line). int64 values are always emitted as decimal strings, because JSON
numbers lose precision above 2^53 in JavaScript.
"""
import hashlib
import json
import os
import queue
import sys
import threading

GEN_DIR = os.environ.get("KONN_INTEROP_GEN")
if not GEN_DIR:
    sys.stderr.write("KONN_INTEROP_GEN must name the directory holding the generated konnectivity_pb2 modules\n")
    sys.exit(2)
sys.path.insert(0, GEN_DIR)

import grpc  # noqa: E402
import konnectivity_pb2 as pb  # noqa: E402
import konnectivity_pb2_grpc as pb_grpc  # noqa: E402

TYPE_NAMES = {v.number: v.name for v in pb.PacketType.DESCRIPTOR.values}

_emit_lock = threading.Lock()


def emit(event, **fields):
    """One JSON line on stdout for the node test."""
    line = json.dumps(dict(event=event, **fields), sort_keys=True)
    with _emit_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def fail(message):
    """Reports a failure the node test turns into an assertion error, then exits 1."""
    emit("fatal", message=message)
    sys.exit(1)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def metadata_pairs(md):
    """gRPC metadata as [[key, value], ...] (binary values hex-encoded)."""
    out = []
    for item in md or ():
        key, value = item[0], item[1]
        if isinstance(value, bytes):
            value = value.hex()
        out.append([key, value])
    return out


def has_field_on_wire(raw, field_number):
    """True when the top-level message `raw` carries `field_number` at all.

    A tiny protobuf wire walker, independent of the generated code, so the
    test can tell an omitted proto3 default (DIAL_REQ's type 0) from an
    explicit zero.
    """
    i = 0
    n = len(raw)
    while i < n:
        key, i = _varint(raw, i)
        num, wire_type = key >> 3, key & 7
        if num == field_number:
            return True
        if wire_type == 0:
            _, i = _varint(raw, i)
        elif wire_type == 2:
            length, i = _varint(raw, i)
            i += length
        elif wire_type == 1:
            i += 8
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError("unexpected wire type %d" % wire_type)
    return False


def _varint(raw, i):
    shift = 0
    result = 0
    while True:
        b = raw[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def describe(packet, raw=None):
    """A JSON-friendly view of a Packet: type name, payload fields, raw bytes."""
    d = {"type": TYPE_NAMES.get(packet.type, str(packet.type)), "payload": packet.WhichOneof("payload")}
    if packet.HasField("dialRequest"):
        r = packet.dialRequest
        d.update(protocol=r.protocol, address=r.address, random=str(r.random))
    elif packet.HasField("dialResponse"):
        r = packet.dialResponse
        d.update(error=r.error, connectID=str(r.connectID), random=str(r.random))
    elif packet.HasField("data"):
        r = packet.data
        d.update(connectID=str(r.connectID), error=r.error, length=len(r.data))
    elif packet.HasField("closeRequest"):
        d.update(connectID=str(packet.closeRequest.connectID))
    elif packet.HasField("closeResponse"):
        r = packet.closeResponse
        d.update(error=r.error, connectID=str(r.connectID))
    elif packet.HasField("closeDial"):
        d.update(random=str(packet.closeDial.random))
    if raw is not None:
        d["hasTypeField"] = has_field_on_wire(raw, 1)
        if not packet.HasField("data"):
            d["raw"] = raw.hex()
    return d


def dial_request(address, random, protocol="tcp"):
    return pb.Packet(type=pb.DIAL_REQ, dialRequest=pb.DialRequest(protocol=protocol, address=address, random=random))


def dial_response(random, connect_id=0, error=""):
    return pb.Packet(type=pb.DIAL_RSP, dialResponse=pb.DialResponse(random=random, connectID=connect_id, error=error))


def data_packet(connect_id, data):
    return pb.Packet(type=pb.DATA, data=pb.Data(connectID=connect_id, data=data))


def close_request(connect_id):
    return pb.Packet(type=pb.CLOSE_REQ, closeRequest=pb.CloseRequest(connectID=connect_id))


def close_response(connect_id, error=""):
    return pb.Packet(type=pb.CLOSE_RSP, closeResponse=pb.CloseResponse(connectID=connect_id, error=error))


def close_dial(random):
    return pb.Packet(type=pb.DIAL_CLS, closeDial=pb.CloseDial(random=random))


def drain_packet():
    return pb.Packet(type=pb.DRAIN, drain=pb.Drain())


def payload(size, seed):
    """Deterministic pseudo-random bytes (sha256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def chunks(data, size):
    for off in range(0, len(data), size):
        yield data[off:off + size]


class Events:
    """One queue for everything a peer reacts to: packets, stream end, stdin commands."""

    def __init__(self):
        self.q = queue.Queue()

    def put(self, kind, value=None):
        self.q.put((kind, value))

    def get(self, timeout=15.0):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            fail("timed out after %.0f s waiting for the next event" % timeout)

    def follow_stdin(self):
        """Each stdin line becomes a ("cmd", line) event; EOF becomes ("cmd", "eof")."""

        def pump():
            for line in sys.stdin:
                line = line.strip()
                if line:
                    self.put("cmd", line)
            self.put("cmd", "eof")

        threading.Thread(target=pump, daemon=True).start()


class ClientStream:
    """A client-side bidi stream driven by a queue instead of a generator.

    Responses are delivered as ("packet", (Packet, raw bytes)) events, then
    ("end", None) or ("rpc_error", grpc.RpcError). The call is made with raw
    byte (de)serializers so the peer sees exactly the bytes on the wire.
    """

    def __init__(self, channel, method, events, metadata=None):
        self.events = events
        self._out = queue.Queue()
        multicallable = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
        self.call = multicallable(self._requests(), metadata=metadata)
        threading.Thread(target=self._pump, daemon=True).start()

    def _requests(self):
        while True:
            item = self._out.get()
            if item is None:
                return
            yield item

    def _pump(self):
        try:
            for raw in self.call:
                packet = pb.Packet.FromString(raw)
                self.events.put("packet", (packet, raw))
            self.events.put("end", None)
        except grpc.RpcError as err:
            self.events.put("rpc_error", err)

    def send(self, packet):
        self._out.put(packet.SerializeToString())

    def queued(self):
        """Messages handed to `send` that grpc has not taken yet."""
        return self._out.qsize()

    def close_send(self):
        self._out.put(None)

    def initial_metadata(self, timeout=10.0):
        """Waits for the response headers (grpc's call.initial_metadata() has no timeout)."""
        box = queue.Queue()
        threading.Thread(target=lambda: box.put(self.call.initial_metadata()), daemon=True).start()
        try:
            return box.get(timeout=timeout)
        except queue.Empty:
            fail("no response headers within %.0f s" % timeout)


class ServerStream:
    """Server side of a bidi stream for a generic handler with raw bytes.

    `handler(stream)` runs in its own thread; it receives events through
    `stream.events` and answers with `stream.send`.
    """

    def __init__(self, request_iterator, context, events):
        self.context = context
        self.events = events
        self._out = queue.Queue()
        threading.Thread(target=self._pump, args=(request_iterator,), daemon=True).start()

    def _pump(self, request_iterator):
        try:
            for raw in request_iterator:
                self.events.put("packet", (pb.Packet.FromString(raw), raw))
            self.events.put("end", None)
        except Exception as err:  # the RPC was cancelled or the connection dropped
            self.events.put("end", repr(err))

    def send(self, packet):
        self._out.put(packet.SerializeToString())

    def finish(self):
        self._out.put(None)

    def responses(self):
        while True:
            item = self._out.get()
            if item is None:
                return
            yield item


def generic_bidi_handler(on_call):
    """A grpc.GenericRpcHandler that accepts every method as a bidi stream of raw bytes.

    `on_call(method, metadata, request_iterator, context)` returns an iterator
    of raw response messages. Routing by method is left to `on_call`, so the
    peer can report exactly which method path arrived.
    """

    class Handler(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            method = handler_call_details.method
            metadata = metadata_pairs(handler_call_details.invocation_metadata)

            def behaviour(request_iterator, context):
                return on_call(method, metadata, request_iterator, context)

            return grpc.stream_stream_rpc_method_handler(behaviour, request_deserializer=None, response_serializer=None)

    return Handler()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()
