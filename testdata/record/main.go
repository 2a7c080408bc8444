// Command record records the capture fixtures under testdata/captures with
// tcpdump, from real servers and clients on the loopback interface, and writes
// next to each capture what the clients saw (NAME.client.json). It needs root
// and tcpdump, curl and python3:
//
//	go run ./testdata/record -out testdata/captures
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// call is one exchange as the client saw it.
type call struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	// LatencyMS is what the client measured, from writing the request to reading
	// the whole response.
	LatencyMS float64 `json:"latency_ms"`
}

// A made-up agent session token: JWT-shaped, signed by nobody.
const agentToken = "eyJhbGciOiJIUzI1NiJ9.eyJhZ2VudF9pZCI6ImZpeHR1cmUifQ.c2lnbmF0dXJl"

func main() {
	out := flag.String("out", "testdata/captures", "folder for the captures")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	scenarios := []struct {
		name  string
		iface string
		port  int
		run   func(port int) ([]call, error)
	}{
		{"go-api", "lo", 18080, goAPI},
		{"curl-python", "lo", 18081, curlPython},
		{"any-ipv6", "any", 18082, anyIPv6},
	}
	for _, s := range scenarios {
		calls, err := record(filepath.Join(*out, s.name+".pcap"), s.iface, s.port, s.run)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		b, _ := json.MarshalIndent(calls, "", "  ")
		if err := os.WriteFile(filepath.Join(*out, s.name+".client.json"), append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: %d exchanges recorded", s.name, len(calls))
	}
}

// record runs tcpdump on iface for port while run makes traffic. Immediate
// mode, since on some kernels packets wait in a TPACKET_V3 block until it fills.
func record(path, iface string, port int, run func(int) ([]call, error)) ([]call, error) {
	cmd := exec.Command("tcpdump", "-i", iface, "--immediate-mode", "-U", "-s", "65535", "-B", "16384", "-w", path, fmt.Sprintf("tcp port %d", port))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tcpdump: %w", err)
	}
	// tcpdump says "listening on" once its filter is installed.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening on") {
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	calls, err := run(port)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	return calls, err
}

func apiServer(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	user := []byte(`{"id":42,"name":"Ada","email":"ada@example.test"}`)
	mux.HandleFunc("GET /api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(user)
	})
	mux.HandleFunc("DELETE /api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /api/orders", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=s3cr3t; HttpOnly")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order":7,"received":%d}`, len(body))
	})
	mux.HandleFunc("GET /api/items", func(w http.ResponseWriter, r *http.Request) {
		// Flushing before the end makes net/http send a chunked body.
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"page":`+r.URL.Query().Get("page")+`,"items":[`)
		w.(http.Flusher).Flush()
		for i := 0; i < 20; i++ {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, `{"n":%d}`, i)
		}
		fmt.Fprint(w, "]}")
	})
	mux.HandleFunc("GET /api/report", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(`{"rows":[`))
		for i := 0; i < 1500; i++ {
			if i > 0 {
				zw.Write([]byte(","))
			}
			fmt.Fprintf(zw, `{"row":%d,"value":"%08x"}`, i, i*7919)
		}
		zw.Write([]byte("]}"))
		zw.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(b.Bytes())
	})
	mux.HandleFunc("GET /api/cached", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		w.Write([]byte("cached"))
	})
	mux.HandleFunc("POST /api/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, `{"bytes":%d}`, n)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		fmt.Fprintf(w, `{"user":%q}`, r.PostForm.Get("user"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return srv, nil
}

// client makes requests and writes down what it saw.
type client struct {
	base  string
	hc    *http.Client
	calls []call
}

func (c *client) do(method, path string, body io.Reader, header map[string]string) error {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("X-OTAS-Agent-Session-Token", agentToken)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	u, _ := url.Parse(path)
	c.calls = append(c.calls, call{Method: method, Path: u.Path, Status: resp.StatusCode, LatencyMS: float64(time.Since(start)) / 1e6})
	return nil
}

func goAPI(port int) ([]call, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv, err := apiServer(addr)
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown(context.Background())
	tr := &http.Transport{DisableCompression: true, ExpectContinueTimeout: time.Second, MaxIdleConnsPerHost: 1}
	c := &client{base: "http://" + addr, hc: &http.Client{Transport: tr}}
	steps := []func() error{
		func() error {
			return c.do("GET", "/api/users/42", nil, map[string]string{"Authorization": "Bearer fixture-bearer-token"})
		},
		func() error {
			return c.do("POST", "/api/orders", strings.NewReader(`{"sku":"A-1","qty":2,"card":"4111111111111111"}`), map[string]string{"Content-Type": "application/json"})
		},
		func() error { return c.do("GET", "/api/items?page=2&token=abc", nil, nil) },
		func() error { return c.do("GET", "/api/report", nil, map[string]string{"Accept-Encoding": "gzip"}) },
		func() error { return c.do("HEAD", "/api/users/42", nil, nil) },
		func() error { return c.do("DELETE", "/api/users/42", nil, nil) },
		func() error { return c.do("GET", "/api/cached", nil, map[string]string{"If-None-Match": `"v1"`}) },
		func() error {
			return c.do("POST", "/api/upload", strings.NewReader(strings.Repeat("u", 5000)), map[string]string{"Expect": "100-continue", "Content-Type": "text/plain"})
		},
		func() error {
			return c.do("POST", "/login", strings.NewReader("user=ada&password=hunter2"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		},
		func() error { return c.do("GET", "/missing", nil, nil) },
		func() error { return c.do("GET", "/api/users/7", nil, map[string]string{"Connection": "close"}) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	// Three pipelined requests, the middle one a HEAD, written before any answer.
	pipelined, err := pipeline(addr, []string{"/api/users/1", "/api/users/2", "/api/users/3"}, []string{"GET", "HEAD", "GET"})
	if err != nil {
		return nil, err
	}
	return append(c.calls, pipelined...), nil
}

// pipeline writes every request on one connection before reading a response.
func pipeline(addr string, paths, methods []string) ([]call, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var b strings.Builder
	for i, p := range paths {
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nX-OTAS-Agent-Session-Token: %s\r\n\r\n", methods[i], p, addr, agentToken)
	}
	start := time.Now()
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	var calls []call
	for i, p := range paths {
		req, _ := http.NewRequest(methods[i], p, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, fmt.Errorf("pipelined response %d: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		calls = append(calls, call{Method: methods[i], Path: p, Status: resp.StatusCode, LatencyMS: float64(time.Since(start)) / 1e6})
	}
	return calls, nil
}

func curlPython(port int) ([]call, error) {
	dir, err := os.MkdirTemp("", "otas-fixture")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><title>fixture</title><p>hello</p>\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"fixture":true,"values":[1,2,3]}`+"\n"), 0o644)
	srv := exec.Command("python3", "-m", "http.server", "--bind", "127.0.0.1", fmt.Sprint(port))
	srv.Dir = dir
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start python3 http.server: %w", err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://")); err == nil {
			c.Close()
			break
		}
		if i > 50 {
			return nil, fmt.Errorf("python3 http.server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var calls []call
	for _, r := range []struct {
		method, path string
		args         []string
	}{
		{"GET", "/", nil},
		{"GET", "/data.json", []string{"-H", "X-OTAS-Agent-Session-Token: " + agentToken}},
		{"GET", "/missing.txt", nil},
		{"HEAD", "/data.json", []string{"-I"}},
		{"GET", "/data.json", []string{"--http1.0"}},
	} {
		args := append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"}, r.args...)
		out, err := exec.Command("curl", append(args, base+r.path)...).Output()
		if err != nil {
			return nil, fmt.Errorf("curl %s: %w", r.path, err)
		}
		var status int
		var secs float64
		fmt.Sscan(string(out), &status, &secs)
		calls = append(calls, call{Method: r.method, Path: r.path, Status: status, LatencyMS: secs * 1000})
	}
	return calls, nil
}

func anyIPv6(port int) ([]call, error) {
	addr := fmt.Sprintf("[::1]:%d", port)
	srv, err := apiServer(addr)
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown(context.Background())
	c := &client{base: "http://" + addr, hc: &http.Client{Transport: &http.Transport{DisableCompression: true}}}
	for _, p := range []string{"/api/users/1", "/api/items?page=1", "/api/cached"} {
		if err := c.do("GET", p, nil, nil); err != nil {
			return nil, err
		}
	}
	if err := c.do("POST", "/api/orders", strings.NewReader(`{"sku":"B-2"}`), map[string]string{"Content-Type": "application/json"}); err != nil {
		return nil, err
	}
	return c.calls, nil
}
