// labpod is the e2e suite's workload and prober, one static binary:
//
//	labpod serve [-listen :8080]
//	    HTTP server: GET / answers {"pod","node","ip","time"}; /healthz.
//	labpod probe [-listen :8080] [-interval 200ms] [-timeout 1s]
//	             [-peers <headless service DNS name>] [-target URL]...
//	    Serves like `serve` (so probers are each other's peers) and, every
//	    interval, GETs every target: each -target URL (typically Services) and
//	    http://<ip>:<port>/ for every address the -peers name resolves to
//	    (re-resolved every 5 s). Every failure is logged as one JSON line on
//	    stdout with its timestamp; GET /stats answers per target: requests,
//	    failures, the longest interruption (from sending a request that fails to
//	    sending one that succeeds, timeouts counted from the send) and
//	    the one in progress; POST /reset starts the counts afresh (after the
//	    warm-up: the first probes race DNS and endpoints).
//
// Pod identity comes from the downward API: POD_NAME, NODE_NAME, POD_IP.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type identity struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	IP   string `json:"ip"`
}

func self() identity {
	host, _ := os.Hostname()
	id := identity{Pod: os.Getenv("POD_NAME"), Node: os.Getenv("NODE_NAME"), IP: os.Getenv("POD_IP")}
	if id.Pod == "" {
		id.Pod = host
	}
	return id
}

// targetStats is what /stats reports per target.
type targetStats struct {
	Requests        int64       `json:"requests"`
	Failures        int64       `json:"failures"`
	LastError       string      `json:"last_error,omitempty"`
	LongestOutageMs int64       `json:"longest_outage_ms"`
	OutageSince     time.Time   `json:"outage_since,omitzero"`
	LongestFrom     time.Time   `json:"longest_outage_from,omitzero"`
	lastOK          time.Time   // when the latest successful request was sent
	pending         []time.Time // failed requests not yet followed by a success
}

type prober struct {
	mu      sync.Mutex
	stats   map[string]*targetStats
	started time.Time
	client  *http.Client
	id      identity
}

// record counts one request to target, sent at sent. An interruption runs from the
// sending of a failed request to the sending of a later request that succeeds, so a
// request that fails by timing out counts from when it was sent, not from when the
// timeout fired. Requests run concurrently and are recorded as they end, out of order:
// failures wait in pending until a success sent after them is recorded; a failure
// recorded after a later success ends at the latest success (at most one timeout late).
func (p *prober) record(target string, sent time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats[target]
	if s == nil {
		s = &targetStats{}
		p.stats[target] = s
	}
	s.Requests++
	if err != nil {
		s.Failures++
		s.LastError = err.Error()
		if !s.lastOK.IsZero() && sent.Before(s.lastOK) {
			s.interruption(sent, s.lastOK)
		} else {
			s.pending = append(s.pending, sent)
		}
		s.OutageSince = earliest(s.pending)
		line, _ := json.Marshal(map[string]any{
			"ts": sent.UTC().Format(time.RFC3339Nano), "event": "failure",
			"failed_at": time.Now().UTC().Format(time.RFC3339Nano),
			"from_pod":  p.id.Pod, "from_node": p.id.Node, "target": target, "error": err.Error(),
		})
		fmt.Println(string(line))
		return
	}
	if sent.After(s.lastOK) {
		s.lastOK = sent
	}
	var before, after []time.Time
	for _, f := range s.pending {
		if f.Before(sent) {
			before = append(before, f)
		} else {
			after = append(after, f)
		}
	}
	if len(before) > 0 {
		s.interruption(earliest(before), sent)
	}
	s.pending = after
	s.OutageSince = earliest(after)
}

func earliest(ts []time.Time) time.Time {
	var first time.Time
	for _, t := range ts {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

func (s *targetStats) interruption(from, to time.Time) {
	if d := to.Sub(from).Milliseconds(); d > s.LongestOutageMs {
		s.LongestOutageMs = d
		s.LongestFrom = from
	}
}

func (p *prober) probe(ctx context.Context, target string) { p.probeAs(ctx, target, target) }

// probeAs GETs url and records the result under key (a Service probed at the address its
// name resolved to is recorded under the name: "svcip:<URL>").
func (p *prober) probeAs(ctx context.Context, address, key string) {
	sent := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, address, nil)
	if err == nil {
		var resp *http.Response
		resp, err = p.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
	}
	p.record(key, sent, err)
}

func (p *prober) handleStats(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	out := map[string]any{"self": p.id, "since": p.started.UTC(), "targets": p.stats}
	data, err := json.MarshalIndent(out, "", "  ")
	p.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
}

func (p *prober) handleReset(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	p.stats = map[string]*targetStats{}
	p.started = time.Now()
	p.mu.Unlock()
	w.Write([]byte("ok\n"))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func serveMux(id identity) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			identity
			Time time.Time `json:"time"`
		}{id, time.Now().UTC()})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return mux
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: labpod serve|probe [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "HTTP listen address")
	interval := fs.Duration("interval", 200*time.Millisecond, "probe interval (probe)")
	timeout := fs.Duration("timeout", time.Second, "per-request timeout (probe)")
	peers := fs.String("peers", "", "DNS name whose addresses are peers (probe)")
	peerPort := fs.Int("peer-port", 8080, "port of the peers (probe)")
	var targets multiFlag
	fs.Var(&targets, "target", "URL to probe; repeatable (probe)")
	var byAddress multiFlag
	fs.Var(&byAddress, "resolve-target", "URL to probe at the address its host resolves to "+
		"(re-resolved every 5 s, recorded as svcip:<URL>): the datapath without DNS; repeatable (probe)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	id := self()
	mux := serveMux(id)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)

	switch args[0] {
	case "serve":
	case "probe":
		p := &prober{
			stats:   map[string]*targetStats{},
			started: time.Now(),
			id:      id,
			client: &http.Client{Timeout: *timeout, Transport: &http.Transport{
				DisableKeepAlives: true, // every probe opens a connection: that is what breaks
			}},
		}
		mux.HandleFunc("/stats", p.handleStats)
		mux.HandleFunc("POST /reset", p.handleReset)
		go p.loop(ctx, *interval, targets, byAddress, *peers, *peerPort)
	default:
		return fmt.Errorf("unknown command %q (serve|probe)", args[0])
	}
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

func (p *prober) loop(ctx context.Context, interval time.Duration, targets, byAddress []string, peers string, peerPort int) {
	var peerURLs []string
	var resolved time.Time
	addressed := map[string]string{} // resolve-target URL -> the same URL at its host's address
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if (peers != "" || len(byAddress) > 0) && time.Since(resolved) > 5*time.Second {
			ok := true // a failed lookup is tried again at the next tick
			if peers != "" {
				if ips, err := net.DefaultResolver.LookupHost(ctx, peers); err == nil {
					sort.Strings(ips)
					peerURLs = peerURLs[:0]
					for _, ip := range ips {
						if ip == p.id.IP {
							continue
						}
						peerURLs = append(peerURLs, "http://"+net.JoinHostPort(ip, fmt.Sprint(peerPort))+"/")
					}
				} else {
					ok = false
					p.record("dns:"+peers, time.Now(), err)
				}
			}
			for _, target := range byAddress {
				if u, host, err := addressOf(ctx, target); err == nil {
					addressed[target] = u
				} else {
					ok = false
					p.record("dns:"+host, time.Now(), err)
				}
			}
			if ok {
				resolved = time.Now()
			}
		}
		for _, target := range byAddress {
			if u := addressed[target]; u != "" {
				go p.probeAs(ctx, u, "svcip:"+target)
			}
		}
		for _, t := range append(append([]string{}, targets...), peerURLs...) {
			go p.probe(ctx, t)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// addressOf resolves target's host and returns target with the host replaced by its
// first address (a Service name: its ClusterIP), and the host.
func addressOf(ctx context.Context, target string) (string, string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", target, err
	}
	host := u.Hostname()
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return "", host, err
	}
	sort.Strings(ips)
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(ips[0], port)
	} else {
		u.Host = ips[0]
		if strings.Contains(ips[0], ":") {
			u.Host = "[" + ips[0] + "]"
		}
	}
	return u.String(), host, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "labpod:", err)
		os.Exit(1)
	}
}
