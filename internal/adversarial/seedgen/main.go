// Command seedgen writes the committed seed corpora of the fuzz targets
// (testdata/fuzz/FuzzXxx/ in each package, Go's corpus file format) from the
// recorded fixture captures and the hostile cases of package adversarial, so
// each fuzz run starts from real packets and real HTTP rather than from the
// few inline f.Add seeds. Run from the module root:
//
//	go run ./internal/adversarial/seedgen
package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/internal/adversarial"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "seedgen:", err)
		os.Exit(1)
	}
}

// encode writes values in Go's fuzz corpus format ("go test fuzz v1").
func encode(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case uint8:
			fmt.Fprintf(&b, "byte(%s)\n", strconv.QuoteRune(rune(v)))
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		default:
			panic(fmt.Sprintf("type %T", v))
		}
	}
	return b.Bytes()
}

func write(dir, target string, vals ...any) error {
	data := encode(vals...)
	sum := sha256.Sum256(data)
	d := filepath.Join(dir, "testdata", "fuzz", target)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, fmt.Sprintf("seed-%x", sum[:8])), data, 0o644)
}

// linkIndex is the position of t in the FuzzDecode link type list.
func linkIndex(t layers.LinkType) uint8 {
	for i, l := range capture.SupportedLinkTypes() {
		if l == t {
			return uint8(i)
		}
	}
	return 0
}

// fixturePackets returns up to n packets of a capture, TCP payload first.
func fixturePackets(path string, n int) ([][]byte, layers.LinkType, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, 0, err
	}
	var out [][]byte
	for len(out) < n {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.NoCopy)
		if tcp, ok := p.TransportLayer().(*layers.TCP); ok && (len(tcp.Payload) > 0 || tcp.SYN) {
			out = append(out, append([]byte(nil), data...))
		}
	}
	return out, r.LinkType(), nil
}

func run() error {
	// capture: real packets of every fixture, with their link type.
	for _, fx := range []string{"go-api", "curl-python", "any-ipv6"} {
		pkts, lt, err := fixturePackets(filepath.Join("testdata", "captures", fx+".pcap"), 4)
		if err != nil {
			return err
		}
		for _, p := range pkts {
			if err := write("capture", "FuzzDecode", p, linkIndex(lt)); err != nil {
				return err
			}
		}
	}

	// httpparse: both directions of hostile and tricky conversations.
	pairs := [][2]string{
		{"POST /clte HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"GET /te HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\nabcdefgh"},
		{"GET /bc HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{"POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\nGET /after HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"},
		{adversarial.TLSClientHello, adversarial.TLSServerHello},
		{adversarial.HTTP2Preface, "\x00\x00\x00\x04\x00\x00\x00\x00\x00"},
		{"GET /huge HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\nhhhh"},
		{"GET /h HTTP/1.1\r\nX-A: " + strings.Repeat("a", 300) + "\r\n", ""},
		{"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n"},
		{"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\n\r\nclose-delimited"},
		{"CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03\x01", "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03"},
	}
	var pipe, pipeResp strings.Builder
	for i := range 50 {
		fmt.Fprintf(&pipe, "GET /p?i=%d HTTP/1.1\r\n\r\n", i)
		fmt.Fprintf(&pipeResp, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", i%10)
	}
	pairs = append(pairs, [2]string{pipe.String(), pipeResp.String()})
	for i, p := range pairs {
		for _, target := range []string{"FuzzStream", "FuzzSplitInvariance"} {
			if err := write("httpparse", target, []byte(p[0]), []byte(p[1]), uint64(i+1)); err != nil {
				return err
			}
		}
	}

	// reassembly: 8-byte ops, see FuzzAssembler.
	op := func(flags byte, off uint32, n uint16) []byte {
		return []byte{flags, byte(off), byte(off >> 8), byte(off >> 16), byte(off >> 24), byte(n), byte(n >> 8), 0}
	}
	join := func(ops ...[]byte) []byte { return bytes.Join(ops, nil) }
	asm := [][]byte{
		// Handshake, data both ways, FINs.
		join(op(0x02, 0, 0), op(0x03, 0, 0), op(0, 0, 1460), op(0, 1460, 1460), op(1, 0, 500), op(0x04, 2920, 0), op(0x05, 500, 0)),
		// Duplicates of every segment.
		join(op(0, 0, 100), op(0, 0, 100), op(0, 100, 100), op(0, 100, 100), op(1, 0, 50), op(1, 0, 50)),
		// Reverse order.
		join(op(0, 400, 100), op(0, 300, 100), op(0, 200, 100), op(0, 100, 100), op(0, 0, 100)),
		// Gap given up after time passes, then the missing bytes late.
		join(op(0, 0, 100), op(0, 200, 100), op(0xe0, 300, 100), op(0xe0, 400, 100), op(0, 100, 100)),
		// RST then reuse of the 4-tuple.
		join(op(0x02, 0, 0), op(0, 0, 10), op(0x08, 10, 0), op(0x02, 1000, 0), op(0, 1000, 10)),
	}
	for i, a := range asm {
		if err := write("reassembly", "FuzzAssembler", a, uint32(0xfffffff0+i), uint32(i*1000)); err != nil {
			return err
		}
	}

	// config: every kind of value and error.
	for _, y := range []string{
		"interface: [eth0, lo]\nport: 8000,8080-8089\noutput: [\"jsonl:/var/log/otas/events.jsonl\", otas]\nidle-timeout: 2m\nmax-body: 102400\npromisc: true\n",
		"sdk-key-file: /run/secrets/otas\nspool-dir: /var/lib/otas-sniff\nspool-max-bytes: 1073741824\n",
		"port: [1, 2]\n",
		"max-body: 1e3\n",
		"promisc: yes\n",
		"idle-timeout: 30\n",
		"unknown-setting: 1\nmax-bdy: 2\n",
		"---\nport: 1\n---\nport: 2\n",
		"port: !!binary aGVsbG8=\n",
		"<<: {port: 1}\n",
	} {
		if err := write("internal/config", "FuzzApply", y, ""); err != nil {
			return err
		}
	}

	// forwarder: header, query, JSON and scheme variations around the secret.
	for _, r := range [][5]string{
		{"X-Otas-Agent-Session-Token", "x", "token=a;token=b", `{"Token":1}`, "BEARER"},
		{"Content-Type", "text/plain", "a=%26&b", `[{"secret":[{"x":"y"}]}]`, "Bearer"},
		{"Authorization", "Basic eA==", "password", `"x"`, "Digest"},
		{"X-Forwarded-For", "1.2.3.4", "a=b&&&=&", `{"a":"\u0070assword"}`, "Token"},
	} {
		if err := write("forwarder", "FuzzRedactSecrets", r[0], r[1], r[2], r[3], r[4]); err != nil {
			return err
		}
	}
	for _, j := range []string{
		`{"user":{"password":"p","profile":{"api_key":12,"tags":["token",{"secret":null}]}}}`,
		`[{"Authorization":"Bearer abc.def"},{"card":"4111 1111 1111 1111"},4111111111111111]`,
		`{"a":"\u0074oken","\u0074oken":"x","b":"\ud83d\ude00","c":-1.5e+10}`,
		"{\"deep\":" + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "}",
		` { "password" : { "nested" : [ true , false , null ] } } `,
	} {
		if err := write("forwarder", "FuzzRedactJSON", j); err != nil {
			return err
		}
	}
	return nil
}
