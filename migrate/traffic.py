"""The traffic watch (``apply --traffic-watch``): a prober on every node, read as evidence.

A DaemonSet in its own namespace runs, on every node, an HTTP server (agnhost ``netexec``)
and a prober that calls a ClusterIP Service in front of all those servers every
``interval`` seconds, so each prober's requests land on every node over time. Each
prober writes one ConfigMap (``traffic-<node>``) every ``report_every`` seconds with its
cumulative counts and the seconds in which requests failed. Unlike the validation checks,
which probe once, this sees every failure between the swap of a node and the end of its
validation, wherever it happened; those failures are attributed to the node being swapped
(in a parallel wave, to every node of the wave whose window they fall into).

This module is the pure part: the report format, the objects that make up the watch, and
the verdict over a window. The backends deploy, read and remove it; ``TrafficWatch`` is
what the validate step calls.

Report ConfigMap data (all strings)::

    node: <node name>          pod: <prober pod>      started: <epoch s, prober start>
    updated: <epoch s>         requests: <n>          failures: <n>
    buckets: "<epoch>:<failed>:<ok> ..."  (seconds with a failure, oldest first, the last 300)

Times are the nodes' clocks in whole seconds: the watch assumes the cluster's clocks are
within a second or two of this machine's, as NTP keeps them.

Cost: every prober writes its ConfigMap every ``REPORT_EVERY`` seconds (N nodes: N/5
writes a second, which is what bounds the watch: meant for up to a few hundred nodes);
cni-migrate follows the reports and probers with one watch each for the run, so a
validation adds no request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from migrate.ports import ProbeResult

NAMESPACE = "cni-migrate-traffic"
NAME = "cni-migrate-traffic-watch"
APP_LABEL = "app.kubernetes.io/name"
REPORT_LABEL = "cni-migrate.io/traffic-report"
PORT = 8080
CHECK = "traffic-watch"
DEFAULT_MAX_FAILURES = 5  # a drain's endpoint updates cost a request or two; a broken node costs hundreds
INTERVAL = 0.5
REPORT_EVERY = 5
KEEP_BUCKETS = 300

# What cni-migrate needs for the watch, beyond migrate.backends.rbac.PERMISSIONS, checked only
# when it is asked for. The namespace is the watch's own, shipped by deploy/rbac.yaml with
# these rights, so no prober token can touch cni-migrate's journal; the probers' Role lets
# them write their reports there, and granting that Role needs the same rights on ConfigMaps
# (RBAC's escalation check). Removing the watch deletes its objects, not the namespace (which
# holds the Role granting all this).
PERMISSIONS: tuple[tuple[str, str, str, str], ...] = tuple(
    (verb, group, resource, NAMESPACE)
    for group, resource, verbs in (
        ("", "serviceaccounts", ("create", "delete")),
        ("rbac.authorization.k8s.io", "roles", ("create", "delete")),
        ("rbac.authorization.k8s.io", "rolebindings", ("create", "delete")),
        ("", "services", ("create", "delete")),
        ("apps", "daemonsets", ("get", "create", "patch", "delete")),
        ("", "pods", ("list",)),
        ("", "configmaps", ("get", "create", "patch", "list", "watch", "deletecollection")),
    )
    for verb in verbs
)

# The prober, for ``sh`` with ``curl`` (the agnhost image has both). It counts its requests
# in one-second buckets, keeps the seconds that had a failure, and writes its report as a
# JSON merge patch (creating the ConfigMap the first time) with its ServiceAccount's token.
# API, TOKEN and CACERT are overridable for the script's own test.
PROBER_SCRIPT = r"""
set -u
api="${API:-https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}}"
sa=/var/run/secrets/kubernetes.io/serviceaccount
token_file="${TOKEN:-$sa/token}"
cacert="${CACERT:-$sa/ca.crt}"
url="$api/api/v1/namespaces/$NAMESPACE/configmaps"
name="traffic-$NODE_NAME"
started=$(date +%s)
total=0; failed=0; buckets=""; n=0; cur=$started; cur_fail=0; cur_ok=0; last=0
report() {
  b="$buckets"
  if [ "$cur_fail" -gt 0 ]; then b="$b $cur:$cur_fail:$cur_ok"; fi
  data="\"node\":\"$NODE_NAME\",\"pod\":\"$POD_NAME\",\"started\":\"$started\",\"updated\":\"$1\","
  data="$data\"requests\":\"$total\",\"failures\":\"$failed\",\"buckets\":\"${b# }\""
  auth="Authorization: Bearer $(cat "$token_file")"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -m 5 --cacert "$cacert" -H "$auth" -X PATCH \
    -H 'Content-Type: application/merge-patch+json' --data "{\"data\":{$data}}" "$url/$name" 2>/dev/null)
  if [ "$code" = 404 ]; then
    meta="\"metadata\":{\"name\":\"$name\",\"labels\":{\"$REPORT_LABEL\":\"true\"}}"
    curl -sS -o /dev/null -m 5 --cacert "$cacert" -H "$auth" -H 'Content-Type: application/json' \
      --data "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",$meta,\"data\":{$data}}" "$url" 2>/dev/null || true
  fi
}
while :; do
  now=$(date +%s)
  if [ "$now" != "$cur" ]; then
    if [ "$cur_fail" -gt 0 ]; then
      buckets="$buckets $cur:$cur_fail:$cur_ok"; n=$((n + 1))
      if [ "$n" -gt "$KEEP" ]; then buckets="${buckets# }"; buckets=" ${buckets#* }"; n=$((n - 1)); fi
    fi
    cur=$now; cur_fail=0; cur_ok=0
  fi
  if curl -fsS -o /dev/null -m "$TIMEOUT" "http://$TARGET/hostname" 2>/dev/null; then
    cur_ok=$((cur_ok + 1))
  else
    cur_fail=$((cur_fail + 1)); failed=$((failed + 1))
  fi
  total=$((total + 1))
  if [ $((now - last)) -ge "$REPORT_EVERY" ]; then report "$now"; last=$now; fi
  sleep "$INTERVAL"
done
"""


@dataclass(frozen=True)
class Report:
    """One prober's report: cumulative counts and the seconds that had a failure."""

    node: str
    updated: int
    requests: int
    failures: int
    buckets: tuple[tuple[int, int, int], ...] = ()  # (epoch second, failed, ok)
    pod: str = ""

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> Report:
        buckets = []
        for item in (data.get("buckets") or "").split():
            t, failed, ok = (int(x) for x in item.split(":"))
            buckets.append((t, failed, ok))
        return cls(
            node=data.get("node", ""),
            updated=int(data.get("updated") or 0),
            requests=int(data.get("requests") or 0),
            failures=int(data.get("failures") or 0),
            buckets=tuple(buckets),
            pod=data.get("pod", ""),
        )

    def to_data(self) -> dict[str, str]:
        return {
            "node": self.node,
            "pod": self.pod,
            "updated": str(self.updated),
            "requests": str(self.requests),
            "failures": str(self.failures),
            "buckets": " ".join(f"{t}:{f}:{o}" for t, f, o in self.buckets),
        }


@dataclass(frozen=True)
class Interruption:
    """What the probers saw in one window: failed requests, by the node that sent them, and
    the longest run of seconds in which one prober's requests all failed."""

    failed: int
    longest_gap: int
    by_prober: Mapping[str, int] = field(default_factory=dict)
    reporting: tuple[str, ...] = ()  # nodes whose prober's report was read
    silent: tuple[str, ...] = ()  # nodes whose prober did not report again during the wait

    def describe(self) -> str:
        worst = sorted(self.by_prober.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        where = f" (from {', '.join(f'{n}: {c}' for n, c in worst)})" if worst else ""
        silent = f"; no fresh report from {', '.join(self.silent)}" if self.silent else ""
        return (
            f"{self.failed} failed probe request(s) seen by {len(self.reporting)} prober(s){where}, "
            f"longest interruption {self.longest_gap}s{silent}"
        )


def interruption(reports: Sequence[Report], since: int, until: int, silent: Sequence[str] = ()) -> Interruption:
    """Failures the reports hold for seconds in [since, until] (inclusive, epoch seconds)."""
    failed = 0
    by_prober: dict[str, int] = {}
    longest = 0
    for report in reports:
        run = 0
        previous = None
        mine = 0
        for t, fails, ok in report.buckets:
            if t < since or t > until:
                continue
            mine += fails
            # A second with failures and no success continues an interruption; a second with
            # a success in it ends one (counted as a partial second).
            run = run + 1 if (previous is not None and t == previous + 1 and ok == 0) else 1
            longest = max(longest, run)
            previous = t if ok == 0 else None
        if mine:
            by_prober[report.node] = mine
            failed += mine
    reporting = tuple(sorted(r.node for r in reports))
    return Interruption(failed, longest, by_prober, reporting, tuple(sorted(silent)))


def verdict(node: str, seen: Interruption, max_failures: int) -> ProbeResult:
    """The traffic-watch check of ``node``: no more than ``max_failures`` failed requests in its
    window, and its own prober still reports (a node whose pods cannot reach the API server
    cannot tell us what it saw)."""
    ok = seen.failed <= max_failures and node in seen.reporting and node not in seen.silent
    expected = f"at most {max_failures} failed probe request(s) and a fresh report from {node}'s prober"
    return ProbeResult(
        CHECK, ok, seen.describe(), expected, {"failed": seen.failed, "longestGapSeconds": seen.longest_gap}
    )


def manifests(image: str, *, interval: float = INTERVAL, report_every: int = REPORT_EVERY) -> list[dict[str, Any]]:
    """The watch's objects, namespace first: the probers' ServiceAccount and the Role that
    lets them write their reports (ConfigMaps in this namespace only), the Service they call
    and the DaemonSet. The namespace is the watch's own (deploy/rbac.yaml ships it with
    cni-migrate's rights there), so no prober token can touch cni-migrate's journal; removing
    the watch deletes every object but the namespace."""
    labels = {APP_LABEL: NAME}
    meta = {"namespace": NAMESPACE, "labels": labels}
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NAMESPACE", "value": NAMESPACE},
        {"name": "TARGET", "value": f"{NAME}.{NAMESPACE}.svc:{PORT}"},
        {"name": "INTERVAL", "value": f"{interval:g}"},
        {"name": "TIMEOUT", "value": "1"},
        {"name": "REPORT_EVERY", "value": str(report_every)},
        {"name": "KEEP", "value": str(KEEP_BUCKETS)},
        {"name": "REPORT_LABEL", "value": REPORT_LABEL},
    ]
    small = {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": NAME, **meta},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": NAME, **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, **meta},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": NAME, **meta},
            "spec": {
                "selector": {"matchLabels": labels},
                # The swap restarts the prober on each node like any other pod: no rolling
                # update of its own may compete with that.
                "updateStrategy": {"type": "OnDelete"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "tolerations": [{"operator": "Exists"}],
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "server",
                                "image": image,
                                "args": ["netexec", f"--http-port={PORT}"],
                                "ports": [{"containerPort": PORT}],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 2},
                                "resources": small,
                            },
                            {
                                "name": "prober",
                                "image": image,
                                "command": ["sh", "-c", PROBER_SCRIPT],
                                "env": env,
                                "resources": small,
                            },
                        ],
                    },
                },
            },
        },
    ]


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass
class TrafficWatch:
    """What the validate step asks: did the probers see more than ``max_failures`` failed
    requests between ``since`` (the node's swap started) and the fresh reports that answer
    (every prober's, the node's own included)? ``read`` is the backend's
    ``traffic_reports``: it waits (bounded) until every prober has reported after the
    window's end, and names those that did not."""

    read: Callable[[int, float, str], tuple[list[Report], list[str]]]
    now: Callable[[], datetime]
    max_failures: int = DEFAULT_MAX_FAILURES
    timeout: float = 2 * REPORT_EVERY + 5
    seen: dict[str, Interruption] = field(default_factory=dict)  # per node, for the run's report

    def check(self, node: str, since: datetime) -> ProbeResult:
        asked = epoch(self.now())
        reports, silent = self.read(asked, self.timeout, node)
        # The window ends when the evidence is in, not when it was asked for: the node's own
        # prober, restarted by its swap, may only start counting during the wait, and what it
        # sees then belongs to this node's window, not to the next node's.
        seen = interruption(reports, epoch(since), max(asked, epoch(self.now())), silent)
        self.seen[node] = seen
        return verdict(node, seen, self.max_failures)
