package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRecordLongestOutage(t *testing.T) {
	p := &prober{stats: map[string]*targetStats{}}
	t0 := time.Unix(1000, 0)
	fail := errors.New("connection refused")
	p.record("a", t0, nil)
	p.record("a", t0.Add(200*time.Millisecond), fail)
	p.record("a", t0.Add(400*time.Millisecond), fail)
	p.record("a", t0.Add(600*time.Millisecond), nil) // outage 400 ms
	p.record("a", t0.Add(800*time.Millisecond), fail)
	p.record("a", t0.Add(1000*time.Millisecond), nil) // outage 200 ms
	p.record("a", t0.Add(1200*time.Millisecond), fail)
	s := p.stats["a"]
	if s.Requests != 7 || s.Failures != 4 {
		t.Fatalf("requests/failures = %d/%d, want 7/4", s.Requests, s.Failures)
	}
	if s.LongestOutageMs != 400 || !s.LongestFrom.Equal(t0.Add(200*time.Millisecond)) {
		t.Errorf("longest = %d ms from %v, want 400 ms from t0+200ms", s.LongestOutageMs, s.LongestFrom)
	}
	if !s.OutageSince.Equal(t0.Add(1200 * time.Millisecond)) {
		t.Errorf("outage in progress since %v", s.OutageSince)
	}
}

func TestRecordOutOfOrder(t *testing.T) {
	// Requests overlap: one sent at 200 ms times out (recorded at 1.2 s) after one sent at
	// 400 ms succeeded; the interruption is 200..400 ms, not from the timeout on.
	p := &prober{stats: map[string]*targetStats{}}
	t0 := time.Unix(1000, 0)
	fail := errors.New("timeout")
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	p.record("a", ms(0), nil)
	p.record("a", ms(400), nil)
	p.record("a", ms(200), fail)
	s := p.stats["a"]
	if !s.OutageSince.IsZero() || s.LongestOutageMs != 200 || !s.LongestFrom.Equal(ms(200)) {
		t.Fatalf("after a late timeout: since %v, longest %d ms from %v", s.OutageSince, s.LongestOutageMs, s.LongestFrom)
	}
	// Two failures recorded latest first; a success sent between them ends the first
	// interruption (600..700), the second runs until a success sent after it (800..1100).
	p.record("a", ms(800), fail)
	p.record("a", ms(600), fail)
	if !s.OutageSince.Equal(ms(600)) {
		t.Fatalf("outage since %v, want t0+600ms", s.OutageSince)
	}
	p.record("a", ms(700), nil)
	if !s.OutageSince.Equal(ms(800)) || s.LongestOutageMs != 200 {
		t.Fatalf("after 700: since %v, longest %d ms", s.OutageSince, s.LongestOutageMs)
	}
	p.record("a", ms(1100), nil)
	if s.LongestOutageMs != 300 || !s.LongestFrom.Equal(ms(800)) || !s.OutageSince.IsZero() {
		t.Errorf("longest %d ms from %v, since %v", s.LongestOutageMs, s.LongestFrom, s.OutageSince)
	}
}

func TestProbeStatus(t *testing.T) {
	ok := httptest.NewServer(serveMux(identity{Pod: "p"}))
	defer ok.Close()
	bad := httptest.NewServer(http.NotFoundHandler())
	defer bad.Close()
	p := &prober{stats: map[string]*targetStats{}, client: &http.Client{Timeout: time.Second}}
	p.probe(t.Context(), ok.URL+"/")
	p.probe(t.Context(), bad.URL+"/")
	if s := p.stats[ok.URL+"/"]; s.Failures != 0 {
		t.Errorf("ok target failed: %+v", s)
	}
	if s := p.stats[bad.URL+"/"]; s.Failures != 1 || s.LastError != "status 404" {
		t.Errorf("404 target: %+v", s)
	}
}

func TestReset(t *testing.T) {
	p := &prober{stats: map[string]*targetStats{}}
	p.record("a", time.Now(), errors.New("x"))
	rec := httptest.NewRecorder()
	p.handleReset(rec, httptest.NewRequest(http.MethodPost, "/reset", nil))
	if len(p.stats) != 0 || rec.Code != http.StatusOK {
		t.Errorf("after reset: %d targets, status %d", len(p.stats), rec.Code)
	}
}

func TestAddressOf(t *testing.T) {
	got, host, err := addressOf(context.Background(), "http://localhost:8080/x")
	if err != nil || host != "localhost" || got != "http://127.0.0.1:8080/x" {
		t.Fatalf("addressOf = %q, %q, %v", got, host, err)
	}
	if _, host, err := addressOf(context.Background(), "http://no-such-host.invalid/"); err == nil || host != "no-such-host.invalid" {
		t.Fatalf("an unresolvable host: %q, %v", host, err)
	}
}
