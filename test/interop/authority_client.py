"""A python frontend that sends a unix socket path as :authority, as
kube-apiserver's konnectivity-client did with grpc-go before ~1.57 (the dial
target became the authority).

usage: authority_client.py TARGET AUTHORITY COUNT SIZE [DIAL_ADDRESS]

Opens ONE channel to TARGET with grpc.default_authority=AUTHORITY and makes
COUNT /ProxyService/Proxy calls on it one after the other (so the HPACK
dynamic table entry for the authority is added once and then referenced),
then COUNT more at the same time. Each call: DIAL_REQ, SIZE bytes of DATA
echoed back and checked, CLOSE_REQ until CLOSE_RSP, half-close, end. One
"result" event per call (ok, or the gRPC error), then "done".
"""
import sys
import threading

from konn_common import ClientStream, Events, chunks, close_request, data_packet, dial_request, emit, grpc, payload, pb

PROXY_METHOD = "/ProxyService/Proxy"


def one_call(channel, index, size, address):
    events = Events()
    stream = ClientStream(channel, PROXY_METHOD, events)
    random = 1000 + index

    def expect(packet_type, what):
        kind, value = events.get()
        if kind == "rpc_error":
            raise RuntimeError("%s|%s" % (value.code().name, value.details()))
        if kind != "packet" or value[0].type != packet_type:
            raise RuntimeError("UNEXPECTED|%s: got %s" % (what, kind))
        return value[0]

    try:
        stream.send(dial_request(address, random))
        rsp = expect(pb.DIAL_RSP, "dial response").dialResponse
        if rsp.error or rsp.random != random:
            raise RuntimeError("UNEXPECTED|dial answered %r" % rsp)
        connect_id = rsp.connectID
        data = payload(size, index)
        for part in chunks(data, 64 * 1024):
            stream.send(data_packet(connect_id, part))
        echoed = bytearray()
        while len(echoed) < size:
            echoed += expect(pb.DATA, "echoed data").data.data
        if bytes(echoed) != data:
            raise RuntimeError("UNEXPECTED|echo differs")
        stream.send(close_request(connect_id))
        expect(pb.CLOSE_RSP, "close response")
        stream.close_send()
        kind, value = events.get()
        if kind != "end":
            raise RuntimeError("UNEXPECTED|call ended with %s" % kind)
        emit("result", index=index, ok=True, connectID=str(connect_id))
    except RuntimeError as err:
        code, _, details = str(err).partition("|")
        emit("result", index=index, ok=False, code=code, details=details)


def main():
    target, authority, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    address = sys.argv[5] if len(sys.argv) > 5 else "10.0.0.1:80"
    channel = grpc.insecure_channel(target, options=[("grpc.default_authority", authority)])
    emit("ready")
    for i in range(count):
        one_call(channel, i, size, address)
    threads = [threading.Thread(target=one_call, args=(channel, count + i, size, address)) for i in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    channel.close()
    emit("done")


if __name__ == "__main__":
    main()
