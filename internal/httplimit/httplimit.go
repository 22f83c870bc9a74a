// Package httplimit bounds what clients can make an HTTP server hold:
// connections (in total and per source address), time (header, request,
// response and idle timeouts), request rate (a token bucket per source,
// answered with 429) and request bodies (answered with 413).
//
// Connections are admitted by a Listener. When a new connection would
// exceed a bound, the connection that has waited longest without a request
// in progress — a keep-alive connection between requests, or one that has
// not sent its first request yet — is closed to make room (for the
// per-source bound, one of that source's); when every connection is busy
// with a request, the new one is closed at once. Such waiting connections
// cost a well-behaved client only a reconnect, while a flood of idle or
// silent connections cannot lock other clients out. Connections in the
// middle of a request (a slow body, say) are bounded by the read timeout
// and the per-source bound.
package httplimit

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Defaults of the Config fields left zero.
const (
	DefaultReadHeaderTimeout  = 5 * time.Second
	DefaultReadTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 20 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
	DefaultMaxConns           = 4096
	DefaultMaxConnsPerSource  = 1024
	DefaultRate               = 1000
	DefaultMaxBody            = 64 << 10
	DefaultMaxHeaderBytes     = 16 << 10
	DefaultMaxTrackedSources  = 16384
	defaultBurstOverRateRatio = 2
)

// Config sets the bounds. Zero fields take the defaults above; a negative
// Rate turns rate limiting off.
type Config struct {
	// ReadHeaderTimeout bounds the TLS handshake and the reading of a
	// request's header.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of a request's header to
	// the end of its response; it must exceed the longest a handler waits.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request.
	IdleTimeout time.Duration
	// MaxConns bounds the open connections.
	MaxConns int
	// MaxConnsPerSource bounds the open connections from one IP address.
	MaxConnsPerSource int
	// Rate is the number of requests per second one IP address may
	// sustain; negative means unlimited.
	Rate float64
	// Burst is how many requests one IP address may make at once (default
	// twice Rate, at least 1).
	Burst int
	// MaxBody bounds a request body, in bytes.
	MaxBody int64
	// MaxHeaderBytes bounds a request header, in bytes.
	MaxHeaderBytes int
	// MaxTrackedSources bounds the rate limiter's memory: the number of
	// source addresses it remembers (the least recently seen is forgotten).
	MaxTrackedSources int
	// Reject writes a refusal (413, 429); nil writes the JSON object
	// {"code": reason, "error": message}.
	Reject func(w http.ResponseWriter, r *http.Request, status int, reason Reason, message string)
}

// Reason says why a request was refused.
type Reason string

// Reasons passed to Config.Reject (and used as the JSON "code" by default).
const (
	ReasonRateLimited Reason = "rate_limited"
	ReasonTooLarge    Reason = "too_large"
)

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.ReadTimeout, DefaultReadTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerSource == 0 {
		c.MaxConnsPerSource = min(DefaultMaxConnsPerSource, c.MaxConns)
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(c.Rate*defaultBurstOverRateRatio))
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxTrackedSources == 0 {
		c.MaxTrackedSources = DefaultMaxTrackedSources
	}
	return c
}

// Validate reports every inconsistent field of a config with defaults
// applied.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read header timeout", c.ReadHeaderTimeout}, {"read timeout", c.ReadTimeout}, {"write timeout", c.WriteTimeout}, {"idle timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration", d.name, d.v))
		}
	}
	if c.ReadTimeout < c.ReadHeaderTimeout {
		errs = append(errs, fmt.Errorf("read timeout %s is shorter than the read header timeout %s", c.ReadTimeout, c.ReadHeaderTimeout))
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("max connections %d: want at least 1", c.MaxConns))
	}
	if c.MaxConnsPerSource < 1 || c.MaxConnsPerSource > c.MaxConns {
		errs = append(errs, fmt.Errorf("max connections per source %d: want 1 to max connections (%d)", c.MaxConnsPerSource, c.MaxConns))
	}
	if c.Rate > 0 && c.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst %d: want at least 1", c.Burst))
	}
	if c.MaxBody < 1 {
		errs = append(errs, fmt.Errorf("max body %d bytes: want at least 1", c.MaxBody))
	}
	if c.MaxHeaderBytes < 1 {
		errs = append(errs, fmt.Errorf("max header %d bytes: want at least 1", c.MaxHeaderBytes))
	}
	if c.MaxTrackedSources < 1 {
		errs = append(errs, fmt.Errorf("max tracked sources %d: want at least 1", c.MaxTrackedSources))
	}
	return errors.Join(errs...)
}

// Limiter enforces a Config on the servers it builds.
type Limiter struct {
	cfg   Config
	conns *connTable
	rates *rateTable
	now   func() time.Time
}

// New returns a Limiter for cfg (defaults applied).
func New(cfg Config) (*Limiter, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http limits: %w", err)
	}
	l := &Limiter{cfg: cfg, now: time.Now}
	l.conns = newConnTable(cfg.MaxConns, cfg.MaxConnsPerSource)
	if cfg.Rate > 0 {
		l.rates = newRateTable(cfg.Rate, cfg.Burst, cfg.MaxTrackedSources)
	}
	return l, nil
}

// Config returns the limiter's configuration, defaults applied.
func (l *Limiter) Config() Config { return l.cfg }

// Server returns an http.Server serving h within the limits. Serve it on a
// listener returned by Listener (wrapped in TLS or not).
func (l *Limiter) Server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           l.Handler(h),
		ReadHeaderTimeout: l.cfg.ReadHeaderTimeout,
		ReadTimeout:       l.cfg.ReadTimeout,
		WriteTimeout:      l.cfg.WriteTimeout,
		IdleTimeout:       l.cfg.IdleTimeout,
		MaxHeaderBytes:    l.cfg.MaxHeaderBytes,
		ConnState:         l.ConnState,
	}
}

// Listener admits the connections of inner within the connection bounds.
// The server serving it must report connection states through ConnState
// (Server does).
func (l *Limiter) Listener(inner net.Listener) net.Listener {
	return &listener{Listener: inner, t: l.conns}
}

// ConnState tracks which connections are waiting between requests; use it
// as http.Server.ConnState.
func (l *Limiter) ConnState(c net.Conn, s http.ConnState) {
	tc := unwrap(c)
	if tc == nil {
		return
	}
	switch s {
	case http.StateActive, http.StateHijacked:
		l.conns.setBusy(tc, true)
	case http.StateIdle:
		l.conns.setBusy(tc, false)
	}
}

// Handler applies the per-source rate limit and the body bound to h. A
// body beyond the bound fails to read with *http.MaxBytesError; a request
// declaring a longer body is refused with 413 before h runs.
func (l *Limiter) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.rates != nil {
			src := sourceOf(r.RemoteAddr)
			if ok, wait := l.rates.allow(src, l.now()); !ok {
				secs := max(1, int((wait+time.Second-1)/time.Second))
				w.Header().Set("Retry-After", fmt.Sprint(secs))
				l.reject(w, r, http.StatusTooManyRequests, ReasonRateLimited, fmt.Sprintf(
					"rate limited: more than %g requests per second (burst %d) from %s; retry after %ds", l.cfg.Rate, l.cfg.Burst, src, secs))
				l.conns.countRateLimited()
				return
			}
		}
		if r.ContentLength > l.cfg.MaxBody {
			l.conns.countTooLarge()
			l.reject(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, TooLargeMessage(l.cfg.MaxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, l.cfg.MaxBody)
		h.ServeHTTP(w, r)
	})
}

// TooLargeMessage is the refusal of a body beyond limit bytes.
func TooLargeMessage(limit int64) string {
	return fmt.Sprintf("request body too large: at most %d bytes accepted", limit)
}

func (l *Limiter) reject(w http.ResponseWriter, r *http.Request, status int, reason Reason, msg string) {
	if l.cfg.Reject != nil {
		l.cfg.Reject(w, r, status, reason, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"code\": %q, \"error\": %q}\n", reason, msg)
}

// Stats counts what the limiter did.
type Stats struct {
	// Open is the number of open connections, Busy those with a request
	// in progress.
	Open, Busy int
	// Accepted, Evicted and Refused count connections: admitted, closed to
	// make room for a newer one, closed at once because every connection
	// was busy.
	Accepted, Evicted, Refused uint64
	// RateLimited and TooLarge count requests refused with 429 and 413.
	RateLimited, TooLarge uint64
	// Sources is the number of source addresses the rate limiter tracks.
	Sources int
}

// Stats returns the current counts.
func (l *Limiter) Stats() Stats {
	s := l.conns.stats()
	if l.rates != nil {
		s.Sources = l.rates.len()
	}
	return s
}

// sourceOf returns the IP address of a host:port address (the whole
// string if it has no port).
func sourceOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
