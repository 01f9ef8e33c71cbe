"""A python agent (what upstream's proxy-agent does) against a proxy-server's
/AgentService/Connect over TLS.

usage: agent_peer.py HOST:PORT --ca CA [--agent-id ID] [--identifiers Q]

Without --agent-id no `agentid` metadata is sent, and the peer only reports
how the call was refused ("rejected"). Otherwise it:
  - opens the stream and, before sending anything, waits for the response
    headers and reports them ("headers");
  - answers each DIAL_REQ with DIAL_RSP{random, connectID 1, 2, ...} ("dial_req");
  - echoes DATA on the connection it belongs to;
  - answers CLOSE_REQ with CLOSE_RSP and reports the bytes it echoed ("close_req");
  - reports any other packet ("packet").
stdin commands: "drain" sends a DRAIN packet ("drain_sent"); "close N" sends
an unsolicited CLOSE_RSP for connection N, as when its destination hangs up
("closed"); "flood N" sends 64 KiB DATA packets on connection N, as fast as
the stream takes them, until a CLOSE_REQ for N arrives ("flood_stopped", with
the bytes sent): a destination that never stops sending, behind an agent
without per-connection flow control, as upstream's is; EOF half-closes the
stream and reports how it ended ("finished").
"""
import argparse
import hashlib
import threading
import time

from konn_common import (
    ClientStream, Events, close_response, data_packet, describe, dial_response, drain_packet, emit, fail, grpc,
    metadata_pairs, pb, read_file,
)

CONNECT_METHOD = "/AgentService/Connect"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--agent-id")
    parser.add_argument("--identifiers", default="")
    args = parser.parse_args()

    creds = grpc.ssl_channel_credentials(root_certificates=read_file(args.ca))
    channel = grpc.secure_channel(args.target, creds)
    metadata = [("agentidentifiers", args.identifiers)]
    if args.agent_id is not None:
        metadata.insert(0, ("agentid", args.agent_id))
    events = Events()
    stream = ClientStream(channel, CONNECT_METHOD, events, metadata=metadata)

    # Nothing has been sent yet: a server that waits for a first message
    # before answering with headers would hang here (a Go agent blocks the same way).
    headers = metadata_pairs(stream.initial_metadata())
    if args.agent_id is None:
        kind, value = events.get()
        if kind != "rpc_error":
            fail("expected the call to fail without agentid, got %s" % kind)
        emit(
            "rejected",
            code=value.code().name,
            details=value.details(),
            initialMetadata=headers,
            trailingMetadata=metadata_pairs(stream.call.trailing_metadata()),
        )
        return
    emit("headers", metadata=headers, packetsBeforeHeaders=events.q.qsize())

    events.follow_stdin()
    next_id = 0
    conns = {}  # connectID -> [bytes echoed, sha256]
    floods = {}  # connectID -> [stop event, bytes sent]

    def flood(cid, state):
        chunk = bytes(64 * 1024)
        while not state[0].is_set():
            # grpc takes one message at a time as HTTP/2 flow control allows; keep only a few waiting.
            if stream.queued() > 8:
                time.sleep(0.001)
                continue
            stream.send(data_packet(cid, chunk))
            state[1] += len(chunk)
    while True:
        kind, value = events.get(timeout=60)
        if kind == "cmd":
            if value == "drain":
                stream.send(drain_packet())
                emit("drain_sent")
            elif value.startswith("flood "):
                cid = int(value.split()[1])
                state = floods[cid] = [threading.Event(), 0]
                threading.Thread(target=flood, args=(cid, state), daemon=True).start()
            elif value.startswith("close "):
                cid = int(value.split()[1])
                conns.pop(cid, None)
                stream.send(close_response(cid))
                emit("closed", connectID=str(cid))
            elif value == "eof":
                stream.close_send()
                kind, value = events.get()
                while kind == "packet":
                    emit("packet", **describe(*value))
                    kind, value = events.get()
                emit("finished", how=kind, code=value.code().name if kind == "rpc_error" else "OK")
                return
            continue
        if kind in ("end", "rpc_error"):
            emit("finished", how=kind, code=value.code().name if kind == "rpc_error" else "OK",
                 details=value.details() if kind == "rpc_error" else "")
            return
        packet, raw = value
        if packet.type == pb.DIAL_REQ:
            next_id += 1
            conns[next_id] = [0, hashlib.sha256()]
            emit("dial_req", connectID=str(next_id), **describe(packet, raw))
            stream.send(dial_response(packet.dialRequest.random, connect_id=next_id))
        elif packet.type == pb.DATA and packet.data.connectID in conns:
            entry = conns[packet.data.connectID]
            entry[0] += len(packet.data.data)
            entry[1].update(packet.data.data)
            stream.send(data_packet(packet.data.connectID, packet.data.data))
        elif packet.type == pb.CLOSE_REQ and packet.closeRequest.connectID in floods:
            cid = packet.closeRequest.connectID
            state = floods.pop(cid)
            state[0].set()
            conns.pop(cid, None)
            emit("flood_stopped", bytes=state[1], **describe(packet, raw))
            stream.send(close_response(cid))
        elif packet.type == pb.CLOSE_REQ and packet.closeRequest.connectID in conns:
            cid = packet.closeRequest.connectID
            echoed, digest = conns.pop(cid)
            emit("close_req", bytes=echoed, sha256=digest.hexdigest(), **describe(packet, raw))
            stream.send(close_response(cid))
        else:
            emit("packet", **describe(packet, raw))


if __name__ == "__main__":
    main()
