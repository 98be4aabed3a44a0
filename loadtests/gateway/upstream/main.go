// Command upstream is the benchmark's tiny, fast upstream: fixed bodies, an SSE stream and a
// flaky endpoint. It must never be the bottleneck, so every body is built once at start-up and
// handlers do no per-request allocation beyond what net/http needs.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func body(n int) []byte {
	// Printable and deterministic so a proxy that mangles bytes is visible in a diff.
	return bytes.Repeat([]byte("agentgate-bench-"), n/16)
}

// chatCompletion is an OpenAI-style chat completion of exactly `size` bytes: the reply of the
// POST scenario, valid JSON so that an LLM proxy (LiteLLM) can parse it as a model's answer.
func chatCompletion(size int) []byte {
	head := `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,` +
		`"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"`
	tail := `"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":16,"completion_tokens":200,"total_tokens":216}}`
	return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
}

func fixed(b []byte) http.HandlerFunc {
	return typed(b, "application/octet-stream")
}

func typed(b []byte, contentType string) http.HandlerFunc {
	length := strconv.Itoa(len(b))
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			// Drain so keep-alive connections are reused after POSTs.
			_, _ = io.Copy(io.Discard, r.Body)
		}
		h := w.Header()
		h["Content-Type"] = []string{contentType}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(b)
	}
}

func intParam(r *http.Request, name string, def, lo, hi int) int {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || v < lo || v > hi {
		return def
	}
	return v
}

// sse sends n events (default 5), `delay` ms apart (default 10): the first one immediately, so
// time-to-first-event measures the proxy, not the upstream.
func sse(w http.ResponseWriter, r *http.Request) {
	n := intParam(r, "n", 5, 1, 10000)
	delay := time.Duration(intParam(r, "delay", 10, 0, 60000)) * time.Millisecond
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "no flush", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	for i := 0; i < n; i++ {
		if i > 0 && delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: {\"seq\": %d}\n\n", i, i); err != nil {
			return
		}
		flusher.Flush()
	}
}

// flaky fails with probability `p` (default 0.2) with 503, or 502 by `status`, for the
// mixed scenario's breaker and retries.
func flaky(ok []byte) http.HandlerFunc {
	good := fixed(ok)
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := strconv.ParseFloat(r.URL.Query().Get("p"), 64)
		if err != nil || p < 0 || p > 1 {
			p = 0.2
		}
		if rand.Float64() < p {
			status := intParam(r, "status", http.StatusServiceUnavailable, 500, 599)
			w.Header().Set("Retry-After", "0")
			http.Error(w, "flaky upstream", status)
			return
		}
		good(w, r)
	}
}

func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, "{\"method\":%q,\"path\":%q,\"query\":%q,\"x_request_id\":%q}",
		r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Request-Id"))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to listen on")
	failRate := flag.Float64("fail-rate", 0, "fail every request with 503 with this probability")
	flag.Parse()

	k1 := body(1024)
	k16 := body(16 * 1024)
	h1k, h16k, hFlaky := fixed(k1), fixed(k16), flaky(k1)
	hChat := typed(chatCompletion(1024), "application/json")
	health := func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }
	// Dispatch on the last path segment so a proxy that keeps a route prefix (e.g.
	// /agents/echo/1k) reaches the same handler as one that strips it.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch p[strings.LastIndexByte(p, '/')+1:] {
		case "1k":
			h1k(w, r)
		case "16k":
			h16k(w, r)
		case "sse":
			sse(w, r)
		case "flaky":
			hFlaky(w, r)
		case "completions": // POST /v1/chat/completions: a fixed 1 KiB JSON reply
			hChat(w, r)
		case "health":
			health(w, r)
		default:
			echo(w, r)
		}
	})
	if *failRate > 0 {
		// A flaky upstream for the mixed scenario: the gateway's retries and breaker see it.
		inner, p := handler, *failRate
		handler = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/health" && rand.Float64() < p {
				w.Header().Set("Retry-After", "0")
				http.Error(w, "flaky upstream", http.StatusServiceUnavailable)
				return
			}
			inner(w, r)
		}
	}
	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Close()
	}()
	log.Printf("upstream listening on %s", *listen)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
