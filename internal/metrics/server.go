package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	http *http.Server
	addr string
	// done is closed when the serving goroutine has returned; serveErr is its
	// error, if it failed for another reason than being shut down.
	done     chan struct{}
	serveErr error
}

// Serve listens on addr (host:port; port 0 picks one) before returning, so an
// address in use or not allowed fails here, and serves in the background until
// ctx ends or Shutdown is called:
//
//	/metrics  the gatherer's metrics in the Prometheus text format
//	/healthz  200 "ok" while the process runs
//	/readyz   200 "ready" when ready reports true, else 503 with its reason
//
// ready may be nil (always ready).
func Serve(ctx context.Context, addr string, gatherer prometheus.Gatherer, ready func() (bool, string)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics server: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil {
			if ok, reason := ready(); !ok {
				if reason == "" {
					reason = "not ready"
				}
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, reason+"\n")
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	s := &Server{
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
		},
		addr: ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = fmt.Errorf("metrics server on %s: %w", s.addr, err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			// The caller's context is over; give scrapes in flight a moment.
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s.Shutdown(shutdownCtx)
		case <-s.done:
		}
	}()
	return s, nil
}

// Addr is the address listened on, with the port chosen when 0 was asked for.
func (s *Server) Addr() string { return s.addr }

// Shutdown stops accepting connections, waits for requests in flight (until
// ctx ends), and returns the serving error, if any. It may be called more than
// once.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	select {
	case <-s.done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("metrics server on %s: shut down: %w", s.addr, err)
	}
	return s.serveErr
}
