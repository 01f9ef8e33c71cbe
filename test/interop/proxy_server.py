"""A python proxy-server frontend: serves /ProxyService/Proxy on a unix socket.

Used to check what our client library puts on the wire. Every call and every
non-DATA packet is reported as a JSON line. What the server does with a
DIAL_REQ depends on the host part of its address:

  echo.interop     DIAL_RSP with connectID ECHO_CONNECT_ID (> 2^53), echo every DATA,
                   answer CLOSE_REQ with CLOSE_RSP and report bytes + sha256
  refused.interop  DIAL_RSP with a Go-style "connection refused" error
  dialcls.interop  DIAL_CLS for the dial (the server gives up on it)
  anything else    no answer at all (the client must time out or be aborted,
                   and tell us with DIAL_CLS)

usage: proxy_server.py unix:///path/to/socket
"""
import hashlib
import sys
import threading
from concurrent import futures

from konn_common import (
    Events, ServerStream, close_dial, close_response, data_packet, describe, dial_response, emit,
    generic_bidi_handler, grpc, pb,
)

ECHO_CONNECT_ID = (1 << 60) + 7
PROXY_METHOD = "/ProxyService/Proxy"

_next_stream = [0]
_lock = threading.Lock()


def serve_stream(n, stream):
    random = None
    echoed = 0
    digest = hashlib.sha256()
    while True:
        kind, value = stream.events.get(timeout=60)
        if kind == "end":
            emit("stream_end", stream=n, reason=value)
            stream.finish()
            return
        packet, raw = value
        if packet.type != pb.DATA:
            emit("packet", stream=n, **describe(packet, raw))
        if packet.type == pb.DIAL_REQ:
            random = packet.dialRequest.random
            host = packet.dialRequest.address.rsplit(":", 1)[0]
            if host == "echo.interop":
                stream.send(dial_response(random, connect_id=ECHO_CONNECT_ID))
            elif host == "refused.interop":
                stream.send(dial_response(random, error="dial tcp 127.0.0.1:9: connect: connection refused"))
            elif host == "dialcls.interop":
                stream.send(close_dial(random))
        elif packet.type == pb.DATA:
            echoed += len(packet.data.data)
            digest.update(packet.data.data)
            stream.send(data_packet(packet.data.connectID, packet.data.data))
        elif packet.type == pb.CLOSE_REQ:
            emit("echo_summary", stream=n, bytes=echoed, sha256=digest.hexdigest())
            stream.send(close_response(packet.closeRequest.connectID))


def on_call(method, metadata, request_iterator, context):
    with _lock:
        _next_stream[0] += 1
        n = _next_stream[0]
    emit("call", stream=n, method=method, metadata=metadata)
    if method != PROXY_METHOD:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method %s" % method)
    stream = ServerStream(request_iterator, context, Events())
    threading.Thread(target=serve_stream, args=(n, stream), daemon=True).start()
    return stream.responses()


def main():
    target = sys.argv[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), handlers=[generic_bidi_handler(on_call)])
    server.add_insecure_port(target)
    server.start()
    emit("listening", target=target)
    sys.stdin.read()  # run until the node test closes our stdin
    server.stop(0)


if __name__ == "__main__":
    main()
