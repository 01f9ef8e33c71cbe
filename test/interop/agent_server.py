"""A python proxy-server backend: serves /AgentService/Connect over TLS and
drives each connecting agent through a fixed script.

usage: agent_server.py --cert CERT --key KEY --echo HOST:PORT --greeter HOST:PORT
                       --closed-port N --size BYTES [--server-id ID] [--server-count N]

For every call it reports the method and metadata ("call"), sends the
serverid/servercount response headers, then:
  1. sends DIAL_CLS for a dial it never made (an agent must ignore it);
  2. dials --echo with a random > 2^53, sends --size bytes of DATA and
     collects the echo ("echo"), then CLOSE_REQ until CLOSE_RSP ("closed");
  3. dials 127.0.0.1:--closed-port ("refused");
  4. dials --greeter, which writes a greeting and hangs up: collects DATA
     until the agent's unsolicited CLOSE_RSP ("remote_close");
  5. reports "done" and keeps the stream open until stdin closes.
Packets that do not fit the script are reported as "unexpected".
"""
import argparse
import hashlib
import sys
import threading
from concurrent import futures

from konn_common import (
    Events, ServerStream, chunks, close_dial, close_request, data_packet, describe, dial_request, emit,
    generic_bidi_handler, grpc, payload, pb, read_file,
)

CONNECT_METHOD = "/AgentService/Connect"
ECHO_RANDOM = (1 << 62) + (1 << 53) + 1
REFUSED_RANDOM = (1 << 63) - 1
GREETER_RANDOM = (1 << 53) + 1
CHUNK = 32 * 1024

args = None
_calls = [0]
_lock = threading.Lock()


class Script:
    def __init__(self, n, stream):
        self.n = n
        self.stream = stream

    def next_packet(self, what, accept):
        """The next packet `accept` takes; others are reported as unexpected."""
        while True:
            kind, value = self.stream.events.get(timeout=30)
            if kind == "end":
                emit("fatal", message="call %d: stream ended while waiting for %s (%s)" % (self.n, what, value))
                raise SystemExit
            packet, raw = value
            if accept(packet):
                return packet, raw
            emit("unexpected", call=self.n, waitingFor=what, **describe(packet, raw))

    def dial(self, address, random):
        self.stream.send(dial_request(address, random))
        return self.next_packet(
            "DIAL_RSP", lambda p: p.type == pb.DIAL_RSP and p.dialResponse.random == random)

    def run(self):
        s = self.stream
        s.send(close_dial(987654321))

        # 2. echo
        rsp, raw = self.dial(args.echo, ECHO_RANDOM)
        cid = rsp.dialResponse.connectID
        data = payload(args.size, 11)
        for chunk in chunks(data, CHUNK):
            s.send(data_packet(cid, chunk))
        digest = hashlib.sha256()
        count = 0
        data_ids = set()
        while count < len(data):
            packet, _ = self.next_packet("echo DATA", lambda p: p.type == pb.DATA)
            data_ids.add(str(packet.data.connectID))
            count += len(packet.data.data)
            digest.update(packet.data.data)
        emit("echo", call=self.n, dialResponse=describe(rsp, raw), bytes=count, sha256=digest.hexdigest(),
             sentSha256=hashlib.sha256(data).hexdigest(), dataConnectIDs=sorted(data_ids))
        s.send(close_request(cid))
        packet, raw = self.next_packet("CLOSE_RSP", lambda p: p.type == pb.CLOSE_RSP)
        emit("closed", call=self.n, **describe(packet, raw))

        # 3. closed port
        rsp, raw = self.dial("127.0.0.1:%d" % args.closed_port, REFUSED_RANDOM)
        emit("refused", call=self.n, **describe(rsp, raw))

        # 4. the destination hangs up
        rsp, raw = self.dial(args.greeter, GREETER_RANDOM)
        gid = rsp.dialResponse.connectID
        greeting = b""
        while True:
            packet, praw = self.next_packet(
                "greeting DATA or CLOSE_RSP",
                lambda p: (p.type == pb.DATA and p.data.connectID == gid) or p.type == pb.CLOSE_RSP)
            if packet.type == pb.DATA:
                greeting += packet.data.data
            else:
                break
        emit("remote_close", call=self.n, dialResponse=describe(rsp, raw), greeting=greeting.decode("utf8", "replace"),
             closeResponse=describe(packet, praw))
        emit("done", call=self.n)

        # Stay connected; report anything else the agent sends.
        while True:
            kind, value = s.events.get(timeout=3600)
            if kind == "end":
                emit("call_end", call=self.n, reason=value)
                s.finish()
                return
            emit("unexpected", call=self.n, waitingFor="nothing", **describe(*value))


def on_call(method, metadata, request_iterator, context):
    with _lock:
        _calls[0] += 1
        n = _calls[0]
    emit("call", call=n, method=method, metadata=metadata)
    if method != CONNECT_METHOD:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method %s" % method)
    context.send_initial_metadata((("serverid", args.server_id), ("servercount", str(args.server_count))))
    stream = ServerStream(request_iterator, context, Events())
    threading.Thread(target=lambda: Script(n, stream).run(), daemon=True).start()
    return stream.responses()


def main():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--echo", required=True)
    parser.add_argument("--greeter", required=True)
    parser.add_argument("--closed-port", type=int, required=True)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--server-id", default="py-server-1")
    parser.add_argument("--server-count", type=int, default=1)
    args = parser.parse_args()

    creds = grpc.ssl_server_credentials([(read_file(args.key), read_file(args.cert))])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[generic_bidi_handler(on_call)])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    emit("listening", port=port)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
