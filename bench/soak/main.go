// Command soak is the load of bench/soak.sh: "server" answers HTTP/1.1 with a
// mix of framings, "client" sends a steady mix of traffic for a duration and
// prints what it completed. The mix is chosen to exercise every way a
// connection can end in the sniffer, so that a leak in any of them shows as a
// rising curve over a long run:
//
//   - keep-alive GET and POST (most traffic; streams live for the whole run),
//   - a new connection per request, closed with FIN (stream churn),
//   - connections that send half a request head and are then reset or just
//     left idle until the sniffer's idle timeout ends them,
//   - a little garbage on the HTTP port.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: soak server -addr :8000 | soak client -addr HOST:PORT -rate N -duration D")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		slog.Error("soak", "err", err)
		os.Exit(1)
	}
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	addr := fs.String("addr", ":8000", "listen address")
	fs.Parse(args)
	small := []byte(`{"ok":true,"items":[1,2,3,4,5,6,7,8,9,10]}`)
	big := bytes.Repeat([]byte("x"), 24<<10)
	srv := &http.Server{
		Addr: *addr,
		// Half-sent heads are held by the server for at most this long; the
		// sniffer has to forget them on its own schedule.
		ReadHeaderTimeout: 90 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			switch {
			case strings.HasPrefix(r.URL.Path, "/chunked"):
				// No Content-Length and a flush: net/http answers chunked.
				w.Write(small)
				w.(http.Flusher).Flush()
				w.Write(small)
			case strings.HasPrefix(r.URL.Path, "/big"):
				w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				w.Write(big)
			default:
				w.Header().Set("Content-Length", strconv.Itoa(len(small)))
				w.Write(small)
			}
		}),
	}
	return srv.ListenAndServe()
}

type counts struct {
	KeepAlive, Churn, Abandoned, Garbage, Errors atomic.Uint64
	// byEndpoint counts completed exchanges by "METHOD /path-prefix", to
	// compare with the sniffer's endpoint table.
	mu         sync.Mutex
	byEndpoint map[string]uint64
}

func (c *counts) done(method, path string) {
	c.mu.Lock()
	c.byEndpoint[method+" "+path]++
	c.mu.Unlock()
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "server address")
	rate := fs.Int("rate", 200, "requests per second in all")
	dur := fs.Duration("duration", time.Minute, "how long to send")
	conns := fs.Int("conns", 8, "keep-alive connections")
	fs.Parse(args)

	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	ka := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	c := counts{byEndpoint: map[string]uint64{}}
	var wg sync.WaitGroup
	// 70% of the rate on keep-alive connections, 20% one connection each,
	// 10% abandoned or garbage connections.
	every := func(share float64, fn func(i int)) {
		perSec := float64(*rate) * share
		if perSec <= 0 {
			return
		}
		interval := time.Duration(float64(time.Second) / perSec)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					wg.Add(1)
					go func() { defer wg.Done(); fn(i) }()
				}
			}
		}()
	}
	paths := []string{"/api/items", "/chunked/list", "/big/blob"}
	every(0.7, func(i int) {
		p := paths[i%len(paths)]
		var resp *http.Response
		var err error
		method := "GET"
		if i%4 == 0 {
			method = "POST"
			resp, err = ka.Post("http://"+*addr+p+"?i="+strconv.Itoa(i), "application/json", strings.NewReader(`{"q":"soak","n":`+strconv.Itoa(i)+`}`))
		} else {
			resp, err = ka.Get("http://" + *addr + p + "?i=" + strconv.Itoa(i))
		}
		if err != nil {
			c.Errors.Add(1)
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			c.Errors.Add(1)
			return
		}
		c.KeepAlive.Add(1)
		c.done(method, p)
	})
	every(0.2, func(i int) {
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := cl.Get("http://" + *addr + "/api/once?i=" + strconv.Itoa(i))
		if err != nil {
			c.Errors.Add(1)
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			c.Errors.Add(1)
			return
		}
		c.Churn.Add(1)
		c.done("GET", "/api/once")
	})
	every(0.1, func(i int) {
		conn, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err != nil {
			c.Errors.Add(1)
			return
		}
		defer conn.Close()
		switch i % 4 {
		case 0: // garbage, then the server answers 400 and closes
			conn.Write([]byte("\x16\x03\x01\x02\x00garbage\r\n\r\n"))
			io.Copy(io.Discard, conn)
			c.Garbage.Add(1)
		case 1: // half a head, then RST
			conn.Write([]byte("GET /abandoned HTTP/1.1\r\nHost: x\r\n"))
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Millisecond)
			conn.(*net.TCPConn).SetLinger(0)
			c.Abandoned.Add(1)
		default: // half a head, then silence until the server gives up (90 s)
			conn.Write([]byte("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"))
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Second):
			}
			c.Abandoned.Add(1)
		}
	})
	<-ctx.Done()
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"keepalive": c.KeepAlive.Load(), "churn": c.Churn.Load(), "abandoned": c.Abandoned.Load(),
		"garbage": c.Garbage.Load(), "errors": c.Errors.Load(), "completed_by_endpoint": c.byEndpoint,
	})
}
