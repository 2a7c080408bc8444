// Command loadgen is the HTTP load generator of bench/live.sh: "server" serves
// small JSON answers, "client" sends requests at a fixed rate over keep-alive
// connections and prints how many completed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen server -addr :8000 | loadgen client -url URL -rate N -duration D")
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
		slog.Error("loadgen", "err", err)
		os.Exit(1)
	}
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	addr := fs.String("addr", ":8000", "listen address")
	fs.Parse(args)
	body := []byte(`{"ok":true,"items":[1,2,3,4,5,6,7,8,9,10],"note":"a small JSON answer of a typical API call"}`)
	return http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
}

// result is what the client prints, one JSON object.
type result struct {
	Rate      int     `json:"rate"`
	Seconds   float64 `json:"seconds"`
	Sent      uint64  `json:"sent"`
	Completed uint64  `json:"completed"`
	Errors    uint64  `json:"errors"`
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:8000/api/items", "request URL")
	rate := fs.Int("rate", 1000, "requests per second in all")
	dur := fs.Duration("duration", 10*time.Second, "how long to send")
	conns := fs.Int("conns", 32, "keep-alive connections (one sender each)")
	fs.Parse(args)
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var sent, done, errs atomic.Uint64
	// Each sender keeps its own schedule: open loop, so a slow answer does not
	// lower the offered rate (a sender that falls behind sends at once).
	interval := time.Duration(float64(time.Second) * float64(*conns) / float64(*rate))
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(interval * time.Duration(w) / time.Duration(*conns))
			for i := 0; ; i++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				next = next.Add(interval)
				sent.Add(1)
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s?w=%d&i=%d", *url, w, i), nil)
				resp, err := c.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					errs.Add(1)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(result{Rate: *rate, Seconds: time.Since(start).Seconds(), Sent: sent.Load(), Completed: done.Load(), Errors: errs.Load()})
}
