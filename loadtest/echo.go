package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const (
	echoBodyMax      = 16 << 20 // bytes; 1000 events are ~250 KB
	echoShutdownWait = 5 * time.Second
)

// echoAnswer is the whole answer to one event, and one item of a batch answer.
const echoAnswer = `{"id":"00000000-0000-0000-0000-000000000000","idempotency_key":"echo","status":"PENDING","duplicate":false}`

// echoHandler answers like Daybook's ingest endpoints with none of its work: it reads the body
// (a batch is decoded just far enough to answer one item per event) and says 202.
func echoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events/ingest", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, echoBodyMax)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, echoAnswer)
	})
	mux.HandleFunc("POST /events/ingest/batch", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, echoBodyMax)).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out bytes.Buffer
		out.Grow(len(`{"items":[]}`) + len(in.Events)*(len(echoAnswer)+1))
		out.WriteString(`{"items":[`)
		for i := range in.Events {
			if i > 0 {
				out.WriteByte(',')
			}
			out.WriteString(echoAnswer)
		}
		out.WriteString(`]}`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(out.Bytes())
	})
	return mux
}

// runEchoBaseline runs cfg's load against a bare net/http server in this process: the reference
// figure for what the load tool and the HTTP stack cost without Daybook behind them.
func runEchoBaseline(ctx context.Context, cfg Config) (rep Report, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Report{}, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: echoHandler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), echoShutdownWait)
		defer cancel()
		shutdownErr := srv.Shutdown(shutdownCtx)
		if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
			shutdownErr = errors.Join(shutdownErr, serveErr)
		}
		if shutdownErr != nil && err == nil {
			err = fmt.Errorf("echo server: %w", shutdownErr)
		}
	}()

	cfg.URL = "http://" + ln.Addr().String()
	target, err := ingestTarget(cfg.URL, cfg.Batch)
	if err != nil {
		return Report{}, err
	}
	client := newHTTPClient(cfg)
	defer client.CloseIdleConnections()
	res := runLoad(ctx, cfg, client, target)
	return buildReport(cfg, target, res, nil, nil), nil
}
