package main

// The gRPC frontend of the Go relay floor, as kube-apiserver's gRPC egress
// uses upstream's: ProxyService/Proxy over h2c on a unix socket, one stream
// per dial, konnectivity Packets (proto/konnectivity.proto) encoded and
// decoded by hand. Only what a successful dial, data and close need.

import (
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc"
)

// Packet types and Packet payload field numbers (proto/konnectivity.proto).
const (
	pktDialReq  = 0
	pktDialRsp  = 1
	pktCloseReq = 2
	pktCloseRsp = 3
	pktData     = 4

	fieldDialResponse  = 3
	fieldData          = 4
	fieldCloseResponse = 6
)

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendVarintField(b []byte, num int, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(appendVarint(b, uint64(num)<<3), v)
}

func appendBytesField(b []byte, num int, p []byte) []byte {
	b = appendVarint(appendVarint(b, uint64(num)<<3|2), uint64(len(p)))
	return append(b, p...)
}

func packet(kind uint64, payloadField int, payload []byte) []byte {
	return appendBytesField(appendVarintField(nil, 1, kind), payloadField, payload)
}

func readVarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// walk calls f for each varint (p == nil) or length-delimited field of a message.
func walk(b []byte, f func(num int, v uint64, p []byte)) error {
	for len(b) > 0 {
		key, n := readVarint(b)
		if n == 0 {
			return errors.New("bad varint")
		}
		b = b[n:]
		switch key & 7 {
		case 0:
			v, n := readVarint(b)
			if n == 0 {
				return errors.New("bad varint")
			}
			b = b[n:]
			f(int(key>>3), v, nil)
		case 2:
			l, n := readVarint(b)
			if n == 0 || uint64(len(b)-n) < l {
				return errors.New("bad length")
			}
			f(int(key>>3), 0, b[n:n+int(l)])
			b = b[n+int(l):]
		default:
			return errors.New("unexpected wire type")
		}
	}
	return nil
}

// decodePacket returns the packet type and its payload message.
func decodePacket(m []byte) (uint64, []byte, error) {
	var kind uint64
	var payload []byte
	err := walk(m, func(num int, v uint64, p []byte) {
		if num == 1 {
			kind = v
		} else if p != nil {
			payload = p
		}
	})
	return kind, payload, err
}

// frontendStream is the sink for one dial's DATA from the agent.
type frontendStream struct {
	mu     sync.Mutex
	stream grpc.ServerStream
	id     uint64
	once   sync.Once
}

func (f *frontendStream) send(m []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.stream.SendMsg(&m)
}

func (f *frontendStream) Write(p []byte) (int, error) {
	data := appendBytesField(appendVarintField(nil, 1, f.id), 3, p)
	f.send(packet(pktData, fieldData, data))
	return len(p), nil
}

func (f *frontendStream) Close() error {
	f.once.Do(func() { f.send(packet(pktCloseRsp, fieldCloseResponse, appendVarintField(nil, 2, f.id))) })
	return nil
}

func serveGrpcFrontend(uds string, t *tunnel, c *conns, dial func(string, sink) (uint64, bool)) error {
	handler := func(_ interface{}, stream grpc.ServerStream) error {
		var m []byte
		if err := stream.RecvMsg(&m); err != nil {
			return err
		}
		kind, payload, err := decodePacket(m)
		if err != nil || kind != pktDialReq {
			return errors.New("the first packet must be DIAL_REQ")
		}
		var address string
		var random uint64
		if err := walk(payload, func(num int, v uint64, p []byte) {
			if num == 2 {
				address = string(p)
			} else if num == 3 {
				random = v
			}
		}); err != nil {
			return err
		}
		f := &frontendStream{stream: stream}
		id, ok := dial(address, f)
		f.id = id
		if !ok {
			f.send(packet(pktDialRsp, fieldDialResponse, appendVarintField(appendBytesField(nil, 1, []byte("dial failed")), 3, random)))
			return nil
		}
		f.send(packet(pktDialRsp, fieldDialResponse, appendVarintField(appendVarintField(nil, 2, id), 3, random)))
		for {
			if err := stream.RecvMsg(&m); err != nil {
				break
			}
			kind, payload, err := decodePacket(m)
			if err != nil {
				break
			}
			if kind == pktData {
				var data []byte
				walk(payload, func(num int, _ uint64, p []byte) {
					if num == 3 {
						data = p
					}
				})
				t.send(message(msgData, id, data))
			} else if kind == pktCloseReq {
				break
			}
		}
		if c.remove(id) != nil {
			t.send(message(msgClose, id, nil))
		}
		f.Close()
		return nil
	}
	desc := grpc.ServiceDesc{
		ServiceName: "ProxyService",
		HandlerType: (*interface{})(nil),
		Streams:     []grpc.StreamDesc{{StreamName: "Proxy", Handler: handler, ServerStreams: true, ClientStreams: true}},
	}
	gs := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	gs.RegisterService(&desc, struct{}{})
	front, err := net.Listen("unix", uds)
	if err != nil {
		return err
	}
	go gs.Serve(front)
	return nil
}
