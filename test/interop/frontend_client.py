"""A python frontend (what kube-apiserver's konnectivity-client does) against
a proxy-server's /ProxyService/Proxy.

usage: frontend_client.py TARGET [--ca CA --cert CERT --key KEY]

TARGET is a grpc target: unix:///path/to/socket, or host:port with the TLS
files (mTLS). Commands arrive on stdin as JSON lines, one stream each, and
every command ends with one "result" event carrying its "id":

  {"op": "echo", "address": A, "random": "R", "size": N, "seed": S, "chunk": C}
      DIAL_REQ, then N bytes of DATA (C-byte packets, default 64 KiB) while
      collecting the echo, then CLOSE_REQ until CLOSE_RSP.
  {"op": "echo_many", "echoes": [ECHO, ...]}
      the echo commands at once, each on its own stream of the one channel;
      "results" lists their results in order.
  {"op": "dial_and_cancel", "address": A, "count": N}
      what kube-apiserver's reusable tunnel (CreateGRPCTunnel) does, N times
      in a row on the one channel: a Proxy stream, DIAL_REQ, DIAL_RSP,
      CLOSE_REQ, CLOSE_RSP, then cancel the call (RST_STREAM CANCEL).
      A tunnel dialed on the channel before them (a kubectl exec, say)
      echoes once after them. Reports how many went through, the first
      failure, and whether the early tunnel still echoed.
  {"op": "dial", "address": A, "random": "R"}
      DIAL_REQ, report the first answer, half-close, report how the call ended.
  {"op": "call", "method": M}
      a DIAL_REQ on another method path; report how the call ended.
  {"op": "no_client_cert"}
      (TLS only) the same dial without a client certificate.
"""
import argparse
import hashlib
import json
import threading

from konn_common import (
    ClientStream, Events, chunks, close_request, data_packet, describe, dial_request, emit, fail, grpc,
    metadata_pairs, payload, pb, read_file,
)

PROXY_METHOD = "/ProxyService/Proxy"
CHUNK = 64 * 1024


def rpc_error(err):
    return {"code": err.code().name, "details": err.details()}


def next_packet(events, what):
    kind, value = events.get()
    if kind != "packet":
        fail("%s: expected a packet, the call ended instead (%s)" % (what, rpc_error(value) if kind == "rpc_error" else kind))
    return value


def wait_end(events):
    """Drains the stream to its end; returns how it ended."""
    extra = []
    while True:
        kind, value = events.get()
        if kind == "packet":
            extra.append(describe(*value))
        elif kind == "end":
            return {"status": "OK", "extra": extra}
        elif kind == "rpc_error":
            return dict(status="error", extra=extra, **rpc_error(value))


def op_echo(channel, cmd):
    events = Events()
    stream = ClientStream(channel, PROXY_METHOD, events)
    random = int(cmd["random"])
    stream.send(dial_request(cmd["address"], random))
    rsp, raw = next_packet(events, "DIAL_RSP")
    result = {"dialResponse": describe(rsp, raw)}
    if rsp.type != pb.DIAL_RSP or rsp.dialResponse.error:
        return result
    connect_id = rsp.dialResponse.connectID
    data = payload(cmd["size"], cmd["seed"])
    result["sentSha256"] = hashlib.sha256(data).hexdigest()

    def send_all():
        for chunk in chunks(data, cmd.get("chunk", CHUNK)):
            stream.send(data_packet(connect_id, chunk))

    threading.Thread(target=send_all, daemon=True).start()
    received = hashlib.sha256()
    count = 0
    data_ids = set()
    while count < len(data):
        packet, _ = next_packet(events, "DATA")
        if packet.type != pb.DATA:
            fail("expected DATA while echoing, got %s" % describe(packet))
        data_ids.add(str(packet.data.connectID))
        count += len(packet.data.data)
        received.update(packet.data.data)
    result.update(receivedBytes=count, receivedSha256=received.hexdigest(), dataConnectIDs=sorted(data_ids))
    stream.send(close_request(connect_id))
    packet, raw = next_packet(events, "CLOSE_RSP")
    result["closeResponse"] = describe(packet, raw)
    stream.close_send()
    result["end"] = wait_end(events)
    return result


def summary(kind, value):
    """An event from a ClientStream, as a report shows it."""
    if kind == "packet":
        return describe(*value)
    return rpc_error(value) if kind == "rpc_error" else kind


def op_dial_and_cancel(channel, cmd):
    long_events = Events()
    long_stream = ClientStream(channel, PROXY_METHOD, long_events)
    long_stream.send(dial_request(cmd["address"], 1 << 40))
    rsp, _ = next_packet(long_events, "DIAL_RSP of the early tunnel")
    long_id = rsp.dialResponse.connectID
    result = op_dial_and_cancel_loop(channel, cmd)
    long_stream.send(data_packet(long_id, b"still there?"))
    kind, value = long_events.get()
    if kind == "packet" and value[0].type == pb.DATA:
        result["earlyTunnel"] = {"echoed": value[0].data.data.decode()}
    else:
        result["earlyTunnel"] = {"failed": summary(kind, value)}
    long_stream.call.cancel()
    return result


def op_dial_and_cancel_loop(channel, cmd):
    done = 0
    for i in range(cmd["count"]):
        events = Events()
        stream = ClientStream(channel, PROXY_METHOD, events)
        stream.send(dial_request(cmd["address"], i + 1))
        kind, value = events.get()
        if kind != "packet" or value[0].type != pb.DIAL_RSP or value[0].dialResponse.error:
            failure = summary(kind, value)
            return {"done": done, "failure": {"dial": i + 1, "at": "DIAL_RSP", "got": failure}}
        connect_id = value[0].dialResponse.connectID
        stream.send(close_request(connect_id))
        kind, value = events.get()
        if kind != "packet" or value[0].type != pb.CLOSE_RSP:
            failure = summary(kind, value)
            return {"done": done, "failure": {"dial": i + 1, "at": "CLOSE_RSP", "got": failure}}
        stream.call.cancel()
        done += 1
    return {"done": done}


def op_dial(channel, cmd, method=PROXY_METHOD):
    events = Events()
    stream = ClientStream(channel, method, events)
    stream.send(dial_request(cmd.get("address", "127.0.0.1:1"), int(cmd.get("random", "1"))))
    kind, value = events.get()
    result = {}
    if kind == "packet":
        result["first"] = describe(*value)
        stream.close_send()
        result["end"] = wait_end(events)
    elif kind == "rpc_error":
        result["end"] = dict(status="error", extra=[], **rpc_error(value))
        result["initialMetadata"] = metadata_pairs(stream.call.initial_metadata())
        result["trailingMetadata"] = metadata_pairs(stream.call.trailing_metadata())
    else:
        result["end"] = {"status": "OK", "extra": []}
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    def open_channel(with_client_cert=True):
        if not args.ca:
            return grpc.insecure_channel(args.target)
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(args.ca),
            private_key=read_file(args.key) if with_client_cert else None,
            certificate_chain=read_file(args.cert) if with_client_cert else None,
        )
        return grpc.secure_channel(args.target, creds)

    channel = open_channel()
    emit("ready", grpcVersion=grpc.__version__)
    events = Events()
    events.follow_stdin()
    while True:
        _, line = events.get(timeout=120)
        if line == "eof":
            break
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "echo":
            result = op_echo(channel, cmd)
        elif op == "echo_many":
            results = [None] * len(cmd["echoes"])

            def run(i, echo):
                results[i] = op_echo(channel, echo)

            threads = [threading.Thread(target=run, args=(i, e)) for i, e in enumerate(cmd["echoes"])]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            result = {"results": results}
        elif op == "dial_and_cancel":
            result = op_dial_and_cancel(channel, cmd)
        elif op == "dial":
            result = op_dial(channel, cmd)
        elif op == "call":
            result = op_dial(channel, cmd, method=cmd["method"])
        elif op == "no_client_cert":
            bare = open_channel(with_client_cert=False)
            result = op_dial(bare, cmd)
            bare.close()
        else:
            fail("unknown op %r" % op)
        emit("result", id=cmd.get("id"), op=op, **result)
    channel.close()


if __name__ == "__main__":
    main()
