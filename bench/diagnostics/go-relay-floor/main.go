// Diagnostic only (not shipped, not part of the build): the thinnest Go relay
// with konnectivity's hops, so that `npm run bench:relay-floor` can show what
// Go and grpc-go (upstream's runtime) reach on the machine being measured.
//
// Shape, as upstream's: the "server" accepts HTTP CONNECT on a unix socket
// (and, with -grpc-uds, ProxyService: grpc_frontend.go), and multiplexes
// every connection over ONE gRPC bidi
// stream (TLS, loopback TCP) opened by the "agent", which dials the
// destination. Messages are a 9-byte header (type, connection id) plus a
// payload, sent with a raw codec: no protobuf, no metrics, no logging, no
// flow control, no validation. Anything upstream does on top of this costs
// more, so this is a floor for a Go implementation, not upstream itself.
//
// Built by bench/diagnostics/node-relay-floor.ts when a Go toolchain and
// grpc-go are found (GOPATH mode; Debian: golang-go golang-google-grpc-dev).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const (
	msgDialReq  = 1 // server → agent: payload is host:port
	msgDialRsp  = 2 // agent → server: payload empty on success, else the error
	msgData     = 3
	msgClose    = 4
	headerBytes = 9
)

// rawCodec passes message bytes through untouched.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	// grpc-go allocates a fresh buffer per received message, so keeping it is safe.
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string   { return "raw" }
func (rawCodec) String() string { return "raw" }

func message(kind byte, id uint64, payload []byte) []byte {
	m := make([]byte, headerBytes+len(payload))
	m[0] = kind
	binary.BigEndian.PutUint64(m[1:headerBytes], id)
	copy(m[headerBytes:], payload)
	return m
}

// tunnel is the one shared stream; grpc-go streams allow one concurrent sender, as upstream's mutex-guarded Send.
type tunnel struct {
	mu     sync.Mutex
	stream grpc.Stream
}

func (t *tunnel) send(m []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.stream.SendMsg(&m)
}

// recv returns the next message's type, connection id and payload.
func (t *tunnel) recv() (byte, uint64, []byte, error) {
	var m []byte
	if err := t.stream.RecvMsg(&m); err != nil {
		return 0, 0, nil, err
	}
	if len(m) < headerBytes {
		return 0, 0, nil, fmt.Errorf("message of %d bytes is shorter than its %d-byte header", len(m), headerBytes)
	}
	return m[0], binary.BigEndian.Uint64(m[1:headerBytes]), m[headerBytes:], nil
}

// sink is where DATA for one connection goes: a socket, or a frontend gRPC stream.
type sink interface {
	Write(p []byte) (int, error)
	Close() error
}

type conns struct {
	mu   sync.Mutex
	byID map[uint64]sink
	dial map[uint64]chan []byte
}

func (c *conns) get(id uint64) sink {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

func (c *conns) remove(id uint64) sink {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn := c.byID[id]
	delete(c.byID, id)
	return conn
}

// pump reads `conn` into DATA messages until it ends, then sends CLOSE.
func pump(t *tunnel, c *conns, id uint64, conn net.Conn, readBytes int) {
	buf := make([]byte, readBytes)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			t.send(message(msgData, id, buf[:n]))
		}
		if err != nil {
			break
		}
	}
	if c.remove(id) != nil {
		t.send(message(msgClose, id, nil))
	}
	conn.Close()
}

// deliver handles DATA and CLOSE, common to both sides. Writing in the
// receive loop blocks every connection behind a slow one, as upstream does.
func deliver(c *conns, kind byte, id uint64, payload []byte) {
	switch kind {
	case msgData:
		if conn := c.get(id); conn != nil {
			conn.Write(payload)
		}
	case msgClose:
		if conn := c.remove(id); conn != nil {
			conn.Close()
		}
	}
}

func runServer(uds, grpcUDS, certPath, keyPath string, readBytes int) error {
	creds, err := credentials.NewServerTLSFromFile(certPath, keyPath)
	if err != nil {
		return err
	}
	c := &conns{byID: map[uint64]sink{}, dial: map[uint64]chan []byte{}}
	agent := make(chan *tunnel, 1)
	handler := func(_ interface{}, stream grpc.ServerStream) error {
		t := &tunnel{stream: stream}
		agent <- t
		for {
			kind, id, payload, err := t.recv()
			if err != nil {
				return err
			}
			if kind == msgDialRsp {
				c.mu.Lock()
				ch := c.dial[id]
				delete(c.dial, id)
				c.mu.Unlock()
				if ch != nil {
					ch <- payload
				}
				continue
			}
			deliver(c, kind, id, payload)
		}
	}
	desc := grpc.ServiceDesc{
		ServiceName: "floor.Relay",
		HandlerType: (*interface{})(nil),
		Streams:     []grpc.StreamDesc{{StreamName: "Connect", Handler: handler, ServerStreams: true, ClientStreams: true}},
	}
	gs := grpc.NewServer(grpc.Creds(creds), grpc.CustomCodec(rawCodec{}))
	gs.RegisterService(&desc, struct{}{})
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go gs.Serve(backend)
	fmt.Println(backend.Addr().(*net.TCPAddr).Port)
	t := <-agent
	var nextID uint64
	// dial asks the agent for a connection to address; on success `to` receives its DATA from then on.
	dial := func(address string, to sink) (uint64, bool) {
		id := atomic.AddUint64(&nextID, 1)
		reply := make(chan []byte, 1)
		c.mu.Lock()
		c.dial[id] = reply
		c.mu.Unlock()
		t.send(message(msgDialReq, id, []byte(address)))
		if failure := <-reply; len(failure) > 0 {
			return id, false
		}
		c.mu.Lock()
		c.byID[id] = to
		c.mu.Unlock()
		return id, true
	}
	if grpcUDS != "" {
		if err := serveGrpcFrontend(grpcUDS, t, c, dial); err != nil {
			return err
		}
	}
	front, err := net.Listen("unix", uds)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		client, err := front.Accept()
		if err != nil {
			return err
		}
		go func(client net.Conn) {
			reader := bufio.NewReader(client)
			line, err := reader.ReadString('\n')
			if err != nil {
				client.Close()
				return
			}
			for {
				header, err := reader.ReadString('\n')
				if err != nil {
					client.Close()
					return
				}
				if header == "\r\n" {
					break
				}
			}
			fields := strings.Fields(line)
			if len(fields) < 2 || reader.Buffered() > 0 {
				client.Close()
				return
			}
			id, ok := dial(fields[1], client)
			if !ok {
				client.Write([]byte("HTTP/1.1 502 Bad Gateway\r\n\r\n"))
				client.Close()
				return
			}
			client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
			pump(t, c, id, client, readBytes)
		}(client)
	}
}

func runAgent(serverPort, caPath, serverName string, readBytes int) error {
	creds, err := credentials.NewClientTLSFromFile(caPath, serverName)
	if err != nil {
		return err
	}
	cc, err := grpc.Dial("127.0.0.1:"+serverPort, grpc.WithTransportCredentials(creds), grpc.WithBlock())
	if err != nil {
		return err
	}
	streamDesc := &grpc.StreamDesc{StreamName: "Connect", ServerStreams: true, ClientStreams: true}
	stream, err := cc.NewStream(context.Background(), streamDesc, "/floor.Relay/Connect", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	t := &tunnel{stream: stream}
	c := &conns{byID: map[uint64]sink{}}
	for {
		kind, id, payload, err := t.recv()
		if err != nil {
			return nil // the server is gone: the run is over
		}
		if kind != msgDialReq {
			deliver(c, kind, id, payload)
			continue
		}
		go func(id uint64, address string) {
			conn, err := net.Dial("tcp", address)
			if err != nil {
				t.send(message(msgDialRsp, id, []byte(err.Error())))
				return
			}
			c.mu.Lock()
			c.byID[id] = conn
			c.mu.Unlock()
			t.send(message(msgDialRsp, id, nil))
			pump(t, c, id, conn, readBytes)
		}(id, string(payload))
	}
}

func main() {
	role := flag.String("role", "", "server or agent")
	uds := flag.String("uds", "", "server: unix socket for HTTP CONNECT")
	grpcUDS := flag.String("grpc-uds", "", "server: unix socket for the gRPC frontend (ProxyService), if any")
	cert := flag.String("cert", "", "server: TLS certificate")
	key := flag.String("key", "", "server: TLS key")
	port := flag.String("server-port", "", "agent: the server's gRPC port on 127.0.0.1")
	ca := flag.String("ca", "", "agent: CA that signed the server's certificate")
	serverName := flag.String("server-name", "127.0.0.1", "agent: name to verify in the server's certificate")
	readBytes := flag.Int("read-bytes", 32*1024, "bytes per socket read (upstream reads 4 KiB)")
	flag.Parse()
	var err error
	switch *role {
	case "server":
		err = runServer(*uds, *grpcUDS, *cert, *key, *readBytes)
	case "agent":
		err = runAgent(*port, *ca, *serverName, *readBytes)
	default:
		err = fmt.Errorf("-role must be server or agent")
	}
	if err != nil && err != io.EOF {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
