package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestFlagValue(t *testing.T) {
	cases := []struct {
		args        []string
		long, short string
		want        string
	}{
		{[]string{"--bundle", "/b", "id"}, "--bundle", "-b", "/b"},
		{[]string{"--bundle=/b", "id"}, "--bundle", "-b", "/b"},
		{[]string{"-b", "/b", "id"}, "--bundle", "-b", "/b"},
		{[]string{"--pid-file", "/p", "id"}, "--bundle", "-b", ""},
		{[]string{"--process", "/tmp/p.json", "--detach", "id"}, "--process", "-p", "/tmp/p.json"},
	}
	for _, c := range cases {
		if got := flagValue(c.args, c.long, c.short); got != c.want {
			t.Errorf("flagValue(%v) = %q, want %q", c.args, got, c.want)
		}
	}
}

func TestFixConfigJSON(t *testing.T) {
	dir := t.TempDir()
	spec := map[string]any{
		"ociVersion": "1.2.0",
		"process": map[string]any{
			"oomScoreAdj": -998,
			"capabilities": map[string]any{
				"bounding":  []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"},
				"effective": []string{"CAP_SYS_RESOURCE"},
				"permitted": []string{"CAP_CHOWN"},
			},
		},
		"root": map[string]any{"path": "rootfs"},
	}
	data, _ := json.Marshal(spec)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := map[string]bool{"CAP_SYS_RESOURCE": true}
	err := fixFile(path, missing, func(d map[string]any) map[string]any {
		return asMap(asMap(d["process"])["capabilities"])
	}, func(d map[string]any) bool { return clampOOMScoreAdj(asMap(d["process"])) })
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(path)
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	caps := asMap(asMap(got["process"])["capabilities"])
	for set, v := range caps {
		for _, c := range v.([]any) {
			if c == "CAP_SYS_RESOURCE" {
				t.Errorf("%s still has CAP_SYS_RESOURCE", set)
			}
		}
	}
	if n := len(caps["bounding"].([]any)); n != 2 {
		t.Errorf("bounding has %d caps, want 2", n)
	}
	if asMap(got["root"])["path"] != "rootfs" {
		t.Errorf("other fields lost: %v", got["root"])
	}
	own, _ := os.ReadFile("/proc/self/oom_score_adj")
	want, _ := strconv.Atoi(strings.TrimSpace(string(own)))
	if adj := asMap(got["process"])["oomScoreAdj"].(float64); want > -998 && int(adj) != want {
		t.Errorf("oomScoreAdj = %v, want %d (ours)", adj, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
}

func TestFixFileUnchangedIsNotRewritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "process.json")
	orig := `{"capabilities": {"bounding": ["CAP_CHOWN"]},   "args": ["sh"]}`
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fixFile(path, map[string]bool{"CAP_SYS_RESOURCE": true}, func(d map[string]any) map[string]any {
		return asMap(d["capabilities"])
	}, nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := os.ReadFile(path); string(out) != orig {
		t.Errorf("file rewritten although nothing changed: %s", out)
	}
}
