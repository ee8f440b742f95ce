// runc-capfix is an OCI runtime wrapper around runc for hosts whose kernel
// capability bounding set lacks some capabilities (on our lab machines:
// CAP_SYS_RESOURCE). runc refuses to start a container whose spec asks for a
// capability outside the bounding set ("unable to apply caps: operation not
// permitted"), and privileged containers ask for all of them.
//
// Before calling the real runc, it removes every capability that is not in
// this process' bounding set from
//   - <bundle>/config.json            on `create` and `run`
//   - the --process file               on `exec`
//
// and then execs the real runc with the unchanged argument list.
//
// The real runc is $RUNC_CAPFIX_RUNC, else /usr/sbin/runc, else /usr/bin/runc,
// else `runc` in PATH. Used as dockerd's default runtime on the host and as
// containerd's runc BinaryName inside the kind node image.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Capability names by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// missingCaps returns the set of known capability names absent from this
// process' bounding set.
func missingCaps() (map[string]bool, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		bnd, err := strconv.ParseUint(strings.TrimSpace(line[len("CapBnd:"):]), 16, 64)
		if err != nil {
			return nil, err
		}
		missing := map[string]bool{}
		for i, name := range capNames {
			if bnd&(1<<uint(i)) == 0 {
				missing[name] = true
			}
		}
		return missing, nil
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

// stripCaps removes the missing capabilities from an OCI capabilities object
// (map with bounding/effective/inheritable/permitted/ambient lists). Reports
// whether anything changed.
func stripCaps(caps map[string]any, missing map[string]bool) bool {
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if s, ok := c.(string); ok && missing[s] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// fixFile rewrites path in place; capsAt picks the capabilities object out
// of the decoded document.
func fixFile(path string, missing map[string]bool, capsAt func(map[string]any) map[string]any, extra func(map[string]any) bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	changed := false
	if caps := capsAt(doc); caps != nil && stripCaps(caps, missing) {
		changed = true
	}
	if extra != nil && extra(doc) {
		changed = true
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".capfix"
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// clampOOMScoreAdj raises process.oomScoreAdj to this process' own value
// when it asks for less (lowering needs CAP_SYS_RESOURCE).
func clampOOMScoreAdj(process map[string]any) bool {
	if process == nil {
		return false
	}
	want, ok := process["oomScoreAdj"].(float64)
	if !ok {
		return false
	}
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return false
	}
	own, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || int(want) >= own {
		return false
	}
	process["oomScoreAdj"] = own
	return true
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// Global runc flags that take a value (runc --help).
var globalWithValue = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true,
	"--rootless": true,
}

// flagValue finds "--name v", "--name=v", "-s v" or "-s=v" in args.
func flagValue(args []string, long, short string) string {
	for i, a := range args {
		for _, n := range []string{long, short} {
			if n == "" {
				continue
			}
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(a, n+"=") {
				return a[len(n)+1:]
			}
		}
	}
	return ""
}

func realRunc() string {
	if p := os.Getenv("RUNC_CAPFIX_RUNC"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("runc"); err == nil {
		return p
	}
	return "runc"
}

func fix(args []string) error {
	// Skip global flags to find the subcommand.
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if globalWithValue[args[i]] && !strings.Contains(args[i], "=") {
			i++
		}
		i++
	}
	if i >= len(args) {
		return nil
	}
	sub, rest := args[i], args[i+1:]
	switch sub {
	case "create", "run":
		missing, err := missingCaps()
		if err != nil || len(missing) == 0 {
			return err
		}
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return fixFile(filepath.Join(bundle, "config.json"), missing, func(d map[string]any) map[string]any {
			return asMap(asMap(d["process"])["capabilities"])
		}, func(d map[string]any) bool {
			if !missing["CAP_SYS_RESOURCE"] {
				return false
			}
			return clampOOMScoreAdj(asMap(d["process"]))
		})
	case "exec":
		p := flagValue(rest, "--process", "-p")
		if p == "" {
			return nil // caps given as flags (--cap); nothing to rewrite
		}
		missing, err := missingCaps()
		if err != nil || len(missing) == 0 {
			return err
		}
		return fixFile(p, missing, func(d map[string]any) map[string]any {
			return asMap(d["capabilities"])
		}, nil)
	}
	return nil
}

func main() {
	if err := fix(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "runc-capfix: %v\n", err)
		os.Exit(1)
	}
	runc := realRunc()
	argv := append([]string{runc}, os.Args[1:]...)
	if err := syscall.Exec(runc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-capfix: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}
