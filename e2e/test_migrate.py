"""Real Calico -> real Cilium on the kind cluster, by cni-migrate (issue 11).

On the lab's Calico (e2e/images/calico/build) with the workload and probers running, the
tests run in this order and share one cluster; each checks what a platform engineer would
look at after that stage:

1. ``plan --install-cilium`` with the chart of the pinned Cilium module and the lab's values
   (``--cilium-values``: local images, no Envoy);
2. ``apply --yes --pause-after-canary`` (Helm installs Cilium in migration mode, then the
   canary: cordon, drain, swap, validate, uncordon), killed with SIGKILL in the middle of the
   canary's swap; ``resume`` finishes the canary and pauses as the plan asked;
3. a broken node: a CiliumNodeConfig of ours that sets ``enable-policy: always`` on the
   second node once it is labelled for migration (Cilium then drops its pods' traffic);
   ``resume`` swaps it, its validation fails, it goes back to Calico on its own: exit 4;
4. ``rollback``: the canary back on Calico too, the whole cluster on Calico again;
5. a second plan (Cilium runs now: nothing to install), ``apply --yes`` over every node
   without a stop;
6. finalize the operator's way for a Cilium its run did not install: ``finalize`` (writes
   the final values), ``helm upgrade`` with them and an agent restart, then ``finalize
   --remove-calico``: policy enforced again, Calico gone.

Needs the Calico lab (``--cni auto`` with Calico built, or ``--cni calico``) and Cilium's
images (e2e/images/cilium/build, part of e2e/images/build); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kindlab
import pytest
import yaml

POOL = ipaddress.ip_network("10.245.0.0/16")  # the plan's default Cilium pool
CALICO_POOL = ipaddress.ip_network("192.168.0.0/16")
MIGRATION_LABEL = "io.cilium.migration/cilium-default"  # what swap-cni sets (Cilium's guide)
BREAK_LABEL = "e2e.cni-migrate.io/break-cilium"
BREAK_CONFIG = "e2e-break-policy"
CONTROL_SECONDS = 300  # about one apply of this lab (runs 4-11: 324-456 s)
SOLO_PDB = Path(__file__).parent / "manifests" / "solo-pdb.yaml"
BROKEN_MS = 2000  # an interruption longer than two probe timeouts: the path is broken


@dataclass
class Run:
    """The migration's shared record: the cluster, where the CLI keeps its state, the plan
    files, and what each stage saw."""

    workload: kindlab.KindCluster
    lab: kindlab.KindLab
    artifacts: Path
    home: Path
    plan: Path
    seen: dict[str, Any] = field(default_factory=dict)

    def cli(self, label: str, *args: str, timeout: float = 300, local: bool = False) -> Any:
        """cni-migrate against the kind cluster; ``local`` for commands that read only this
        machine's journal (status)."""
        proc = kindlab.cni_migrate(*args, *self._where(local), timeout=timeout, home=self.home)
        self._record(label, args, proc.returncode, proc.stdout + proc.stderr)
        return proc

    def popen(self, label: str, *args: str) -> Any:
        return kindlab.cni_migrate_popen(*args, *self._where(False), home=self.home, log=self._log(label))

    def _where(self, local: bool) -> tuple[str, ...]:
        return () if local else ("--kubeconfig", str(self.workload.kubeconfig), "--context", self.workload.context)

    def _log(self, label: str) -> Path:
        return self.artifacts / f"migrate-{label}.txt"

    def _record(self, label: str, args: tuple[str, ...], code: int, output: str) -> None:
        self._log(label).write_text(f"$ cni-migrate {' '.join(args)}\n{output}")
        print(f"\n--- cni-migrate {label} (exit {code})\n{output}")

    def status(self, plan: Path | None = None) -> dict[str, str]:
        proc = self.cli("status", "status", str(plan or self.plan), "-o", "json", local=True)
        assert proc.returncode == 0, proc.stderr
        return {n["name"]: n["state"] for n in json.loads(proc.stdout)["nodes"]}

    def planned(self, plan: Path | None = None) -> list[str]:
        """The plan's nodes in the order it migrates them."""
        record = yaml.safe_load((plan or self.plan).read_text())
        return [n["name"] for w in record["waves"] for n in w["nodes"]]

    @contextlib.contextmanager
    def traced(self, label: str) -> Iterator[kindlab.ProberLogs]:
        """Follow the probers' logs (and sample the machine's CPU, and watch the web and DNS
        Services' endpoints) while a stage runs, then write its timeline: the run's steps
        (audit log), every failed probe request, the CPU's load and every endpoint change,
        to migrate-<label>-timeline.txt."""
        start = time.time()
        try:
            with (
                kindlab.CpuSampler() as cpu,
                kindlab.EndpointWatch(self.workload, [("e2e", "web"), ("kube-system", "kube-dns")]) as endpoints,
                kindlab.ProberLogs(self.workload, self.artifacts / f"prober-logs-{label}") as logs,
            ):
                yield logs
        finally:
            end = time.time()
            events = [e for e in kindlab.audit(self.home) if start <= kindlab.parse_time(e["timestamp"]) <= end]
            failures = [f for f in logs.failures() if start <= kindlab.parse_time(f["ts"]) <= end]
            by_name = kindlab.failures_by_step(failures, events)
            by_ip = kindlab.failures_by_step(failures, events, kind="service-ip")
            head = ["failed requests to the web Service from the probers on other nodes, per step (by name; at its IP)"]
            head += [
                f"  {kindlab.short_node(node):<14} {step:<12} {n:>4} {ip[2]:>4}"
                for (node, step, n), ip in zip(by_name, by_ip, strict=True)
            ]
            counts = kindlab.failure_counts(failures)
            head.append(f"every failed request (all prober pods, restarted ones too): {counts}")
            timeline = kindlab.failure_timeline(failures, events, cpu.lines() + endpoints.lines())
            (self.artifacts / f"migrate-{label}-timeline.txt").write_text("\n".join([*head, "", timeline, ""]))
            print("\n".join(head))

    def steps(self, node: str, step: str, event: str) -> list[dict[str, Any]]:
        return [
            e
            for e in kindlab.audit(self.home)
            if e.get("node") == node and e.get("step") == step and e.get("event") == event
        ]


@pytest.fixture(scope="module")
def run(workload: kindlab.KindCluster, lab: kindlab.KindLab, artifacts: Path) -> Run:
    if workload.cni != "calico":
        pytest.skip(f"CNI is {workload.cni}: the migration needs the lab's Calico")
    if not kindlab.cilium_available(lab):
        pytest.skip("no Cilium images/chart (e2e/images/cilium/build)")
    from conftest import Timer

    with Timer("kind load image-archive cilium (agent + operator)"):
        for archive in lab.cilium_archives:
            kindlab.load_archive(workload, archive)
    home = artifacts / "migrate-state"  # this cluster's journals and audit log only
    shutil.rmtree(home, ignore_errors=True)
    return Run(workload, lab, artifacts, home, artifacts / "migrate-plan.yaml")


def images(lab: kindlab.KindLab) -> tuple[str, ...]:
    """The lab's helper-pod images (nothing can be pulled here), for apply and finalize."""
    return ("--probe-image", lab.probe_image, "--node-image", lab.node_task_image)


def pod_ips(cluster: kindlab.KindCluster, namespace: str, node: str = "") -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["status"].get("podIP", "")
        for p in cluster.pods(namespace)
        if not p["spec"].get("hostNetwork")
        and p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
        and (not node or p["spec"].get("nodeName") == node)
    }


def in_pool(ips: dict[str, str], pool: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return bool(ips) and all(ip and ipaddress.ip_address(ip) in pool for ip in ips.values())


def node_pods_settle(
    cluster: kindlab.KindCluster, node: str, pool: ipaddress.IPv4Network | ipaddress.IPv6Network, timeout: float = 180
) -> dict[str, str]:
    """The e2e pods on ``node`` once all run with an address from ``pool``. The swap and the
    rollback delete the pods of the other CNI; their controllers re-create them meanwhile
    (the DaemonSet's prober comes back on its own node a few seconds after the step)."""
    deadline = time.monotonic() + timeout
    while True:
        ips = pod_ips(cluster, "e2e", node)
        pending = [
            p["metadata"]["name"]
            for p in cluster.pods("e2e")
            if p["spec"].get("nodeName") == node and p["status"].get("phase") == "Pending"
        ]
        if in_pool(ips, pool) and not pending:
            return ips
        assert time.monotonic() < deadline, f"pods on {node} not all on {pool} after {timeout:g} s: {ips}, {pending}"
        time.sleep(2)


def node_labels(cluster: kindlab.KindCluster) -> dict[str, dict[str, str]]:
    return {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in cluster.nodes()}


def assert_probers_clean(run: Run, label: str, seconds: float = 15) -> None:
    """Reset the probers, let them probe for ``seconds``: requests, and no target interrupted
    for longer than ``BROKEN_MS`` (to a peer that is gone by then, e.g. the old address of a
    prober the last step restarted, a failed request is expected and not counted)."""
    kindlab.reset_probers(run.workload)
    time.sleep(seconds)
    seen = kindlab.prober_summary(run.workload)
    gone = seen.departed(kindlab.prober_ips(run.workload))
    (run.artifacts / f"migrate-probers-{label}.txt").write_text(seen.table())
    print(f"\nprobers, {seconds:g} s {label}:\n{seen.table()}\npeers gone meanwhile (not counted): {gone}")
    assert seen.requests() > 0, seen.table()
    # Traffic flows: no target interrupted for more than two probe timeouts. A lone 1 s
    # timeout among ~1,300 requests is the 2 cores saturated (runs 7-10: 1-2 per check in
    # some runs, to targets no step touched); a broken path fails every request to it.
    broken = seen.interrupted(BROKEN_MS, exclude_targets=gone)
    assert not broken, broken
    print(f"lone failures (not counted): {seen.failures_lines(exclude_targets=gone)}")


def node_named(cluster: kindlab.KindCluster, name: str) -> dict[str, Any]:
    return next(n for n in cluster.nodes() if n["metadata"]["name"] == name)


def cluster_pods_settle(cluster: kindlab.KindCluster, pool: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    """Every node's e2e pods (a prober on each) run with an address from ``pool``."""
    for node in cluster.nodes():
        node_pods_settle(cluster, node["metadata"]["name"], pool)


def policy_window(cluster: kindlab.KindCluster, seconds: float = 10) -> dict[str, tuple[int, int]]:
    """role -> (requests, failures) of the policy clients over the next ``seconds``."""
    before = kindlab.policy_clients(cluster)
    time.sleep(seconds)
    after = kindlab.policy_clients(cluster)
    return {
        role: (s.requests - before[role].requests, s.failures - before[role].failures)
        for role, s in after.items()
        if role in before
    }


def test_plan_names_the_install(run: Run):
    lab, workload = run.lab, run.workload
    proc = run.cli(
        "plan",
        "plan",
        "--install-cilium",
        "--cilium-chart",
        lab.cilium_chart,
        "--cilium-values",
        lab.cilium_values,
        "--out",
        str(run.plan),
        "--overwrite",  # the artifacts directory outlives a run
    )
    assert proc.returncode == 0, proc.stderr
    plan = yaml.safe_load(run.plan.read_text())
    install = plan["options"]["installCilium"]
    assert install["chart"] == lab.cilium_chart
    assert install["values"]["image"]["override"].startswith("cni-migrate/cilium:")
    assert install["values"]["l7Proxy"] is False
    findings = {f["check"]: f for f in plan["findings"]}
    assert findings["cilium-installed"]["severity"] == "warning"
    assert "apply installs it in migration mode" in findings["cilium-installed"]["message"]
    assert not [f for f in plan["findings"] if f["severity"] == "blocking"]
    assert sorted(run.planned()) == sorted(n["metadata"]["name"] for n in workload.nodes())
    assert len(plan["waves"]) > 1 and plan["waves"][0]["canary"], "the tests below need a canary and a second wave"
    run.seen["planned"] = True


def test_kill_mid_swap_then_resume_finishes_the_canary(run: Run):
    """Scenario 2: SIGKILL in the middle of the canary's swap-cni; resume completes it."""
    if not run.seen.get("planned"):
        pytest.skip("no plan")
    workload, lab = run.workload, run.lab
    canary = run.planned()[0]
    assert in_pool(pod_ips(workload, "e2e"), CALICO_POOL)
    kindlab.reset_probers(workload)
    args = ("--yes", "--pause-after-canary", "--helm", lab.helm, *images(lab))
    with run.traced("canary"):
        apply = run.popen("apply-killed", "apply", str(run.plan), *args)
        try:
            deadline = time.monotonic() + 900  # Helm's install, then the canary's cordon and drain
            while not run.steps(canary, "swap-cni", "step-started"):
                assert apply.poll() is None, (run.artifacts / "migrate-apply-killed.txt").read_text()
                assert time.monotonic() < deadline, "the canary's swap never started"
                time.sleep(0.2)
            time.sleep(5)  # the label is set and the agent restarting: a swap takes 30-50 s here
        finally:
            apply.send_signal(signal.SIGKILL)
            apply.wait(timeout=30)
        assert apply.returncode == -signal.SIGKILL
        assert not run.steps(canary, "swap-cni", "step-finished"), "the kill did not land mid-swap"
        assert run.status()[canary] == "in-progress"

        resumed = run.cli("resume", "resume", str(run.plan), *args, timeout=1800)
    assert resumed.returncode == 5, resumed.stderr  # paused after the canary, resumable
    assert "paused after the canary wave" in resumed.stdout + resumed.stderr
    states = run.status()
    assert states[canary] == "migrated" and all(s == "pending" for n, s in states.items() if n != canary), states
    # The end state of an uninterrupted canary: swapped once, on Cilium, back in service.
    assert len(run.steps(canary, "swap-cni", "step-finished")) == 1
    node = node_named(workload, canary)
    assert not node["spec"].get("unschedulable") and node["metadata"]["labels"].get(MIGRATION_LABEL) == "true"
    node_pods_settle(workload, canary, POOL)
    during = kindlab.prober_summary(workload)
    (run.artifacts / "migrate-probers-canary.txt").write_text(during.table())
    print(f"\nprobers during the killed apply and its resume:\n{during.table()}")
    run.seen["canary"] = canary


def break_config(node_label: str) -> str:
    """Ours, not Cilium's: on a node labelled for migration and with ``node_label``, the
    agent enforces policy always; with no policy allowing it, its pods' traffic is dropped."""
    return yaml.safe_dump(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNodeConfig",
            "metadata": {"name": BREAK_CONFIG, "namespace": "kube-system"},
            "spec": {
                "nodeSelector": {"matchLabels": {MIGRATION_LABEL: "true", node_label: "true"}},
                "defaults": {"enable-policy": "always"},
            },
        }
    )


def test_failed_validation_rolls_the_node_back(run: Run):
    """Scenario 3: the second node's Cilium is broken; validation fails, it goes back to Calico."""
    if not run.seen.get("canary"):
        pytest.skip("the canary was not migrated")
    workload, lab = run.workload, run.lab
    target = run.planned()[1]
    workload.kubectl("label", "node", target, f"{BREAK_LABEL}=true", "--overwrite")
    workload.kubectl("apply", "-f", "-", input=break_config(BREAK_LABEL))
    try:
        proc = run.cli("resume-broken", "resume", str(run.plan), "--yes", *images(lab), timeout=1800)
    finally:
        workload.kubectl("-n", "kube-system", "delete", "ciliumnodeconfig", BREAK_CONFIG, "--ignore-not-found")
        workload.kubectl("label", "node", target, f"{BREAK_LABEL}-")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output
    assert f"validation of {target} failed" in output, output
    states = run.status()
    assert states[run.seen["canary"]] == "migrated" and states[target] == "failed", states
    # Put back on its own: uncordoned, unlabelled, its pods on Calico addresses again.
    node = node_named(workload, target)
    assert not node["spec"].get("unschedulable") and MIGRATION_LABEL not in node["metadata"]["labels"]
    node_pods_settle(workload, target, CALICO_POOL)
    assert len(run.steps(target, "restore-cni", "step-finished")) == 1
    assert_probers_clean(run, "after-failed-validation")
    run.seen["failed"] = target


def test_rollback_puts_every_node_back_on_calico(run: Run):
    """Scenario 4: after the partial run, ``rollback`` undoes the canary too."""
    if not run.seen.get("failed"):
        pytest.skip("the partial run did not happen")
    workload, lab = run.workload, run.lab
    proc = run.cli("rollback", "rollback", str(run.plan), "--yes", *images(lab), timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = run.status()
    assert states[run.seen["canary"]] == "rolled-back", states
    assert not {n: s for n, s in states.items() if s in ("migrated", "in-progress")}, states
    labels = node_labels(workload)
    assert not [n for n, marks in labels.items() if MIGRATION_LABEL in marks], labels
    assert not any(n["spec"].get("unschedulable") for n in workload.nodes())
    cluster_pods_settle(workload, CALICO_POOL)
    assert_probers_clean(run, "after-rollback")
    run.seen["rolled-back"] = True


def test_apply_moves_every_node_to_cilium(run: Run):
    """Scenario 1: a new plan (Cilium runs in migration mode since the first run), applied
    over every node without a stop."""
    if not run.seen.get("rolled-back"):
        pytest.skip("the cluster is not back on Calico")
    workload, lab = run.workload, run.lab
    # Surge before evict, measured: solo (one replica) gets a budget that allows no eviction.
    workload.kubectl("apply", "-f", str(SOLO_PDB))
    run.plan = run.artifacts / "migrate-plan-2.yaml"
    proc = run.cli("plan-2", "plan", "--out", str(run.plan), "--overwrite")  # as above: last run's artifacts
    assert proc.returncode == 0, proc.stderr
    surges = {n["name"]: n.get("surge", []) for w in yaml.safe_load(run.plan.read_text())["waves"] for n in w["nodes"]}
    solo_host = next(
        p["spec"]["nodeName"] for p in workload.json("get", "pods", "-n", "e2e", "-l", "app=solo")["items"]
    )
    assert "e2e/solo" in surges[solo_host], surges
    assert in_pool(pod_ips(workload, "e2e"), CALICO_POOL)
    # The control window: the same probers as long as an apply takes here, no migration step.
    kindlab.reset_probers(workload)
    with kindlab.ProberLogs(workload, run.artifacts / "prober-logs-control") as control_logs:
        control_from = time.time()
        time.sleep(CONTROL_SECONDS)
    control = [f for f in control_logs.failures() if kindlab.parse_time(f["ts"]) >= control_from]
    kindlab.reset_probers(workload)
    start = time.monotonic()
    with run.traced("apply") as logs:
        started = time.time()
        # Not yet with --traffic-watch: its prober script needs curl, and the lab's probe image
        # (busybox + agnhost, e2e/images/probe) has none; run 13 (2026-12-07) stopped on
        # "4 of 4 probers sent no report within 120s" before any node (issue 26, part 3).
        proc = run.cli("apply", "apply", str(run.plan), "--yes", *images(lab), timeout=3600)
    # Every drain that surged solo: no request to its Service failed from the other nodes.
    events = [e for e in kindlab.audit(run.home) if kindlab.parse_time(e["timestamp"]) >= started]
    failures = [f for f in logs.failures() if kindlab.parse_time(f["ts"]) >= started]
    surged = {e["node"] for e in events if e.get("event") == "surge"}
    solo = {
        kind: {(node, step): n for node, step, n in kindlab.failures_by_step(failures, events, kind=kind)}
        for kind in ("solo", "solo-ip")
    }
    lines = [
        f"{node} drain: solo by name {solo['solo'].get((node, 'drain'), 0)}, "
        f"at its IP {solo['solo-ip'].get((node, 'drain'), 0)}"
        for node in sorted(surged)
    ]
    (run.artifacts / "migrate-surge.txt").write_text("\n".join(lines) + "\n")
    report, totals = kindlab.control_report(failures, events, control, CONTROL_SECONDS)
    (run.artifacts / "migrate-control.txt").write_text("\n".join(report) + "\n")
    (run.artifacts / "migrate-control.json").write_text(json.dumps(totals, indent=1))
    print(f"\nthe apply beside a {CONTROL_SECONDS} s control window:", *report, sep="\n  ")
    print("\nsolo's failed requests from the other nodes while its drains surged:", *lines, sep="\n  ")
    took = time.monotonic() - start
    during = kindlab.prober_summary(workload)
    (run.artifacts / "migrate-probers.txt").write_text(during.table())
    print(f"\napply took {took:.0f} s; the probers during the run (since each one's restart):\n{during.table()}")
    assert proc.returncode == 0, proc.stderr

    assert run.status() == {n["metadata"]["name"]: "migrated" for n in workload.nodes()}
    # Cilium's agents own every node now: a CiliumNode with a block of the plan's pool each,
    # and every pod of the workload was restarted onto an address from it.
    for node in workload.json("get", "ciliumnodes")["items"]:
        cidrs = node["spec"]["ipam"].get("podCIDRs") or []
        assert cidrs and all(ipaddress.ip_network(c).subnet_of(POOL) for c in cidrs), node["metadata"]["name"]
    assert not any(n["spec"].get("unschedulable") for n in workload.nodes())
    cluster_pods_settle(workload, POOL)
    # And traffic flows on Cilium alone: every prober reaches the web Service, its peers and
    # the cluster DNS for 15 s, no target interrupted (lone timeouts of a saturated machine aside).
    assert_probers_clean(run, "after-apply")
    run.seen["migrated"] = True
    # The surge's goal (issue 26): solo never down at its Service while a drain moved it.
    assert solo_host in surged, surged
    assert all(solo["solo-ip"].get((node, "drain"), 0) == 0 for node in surged), lines


def test_policy_is_not_enforced_during_the_window(run: Run):
    """What the plan warned about: Cilium runs with policyEnforcementMode never until finalize."""
    if not run.seen.get("migrated"):
        pytest.skip("apply did not finish")
    window = policy_window(run.workload)
    print(f"\npolicy clients before finalize (requests, failures): {window}")
    assert window["allowed-client"][0] > 0 and window["allowed-client"][1] == 0, window
    assert window["denied-client"][0] > 0 and window["denied-client"][1] == 0, window


def test_finalize_enforces_policy_and_removes_calico(run: Run):
    """The second plan's run installed nothing, so finalize takes the operator's path for a
    Cilium it did not install (``--upgrade-cilium`` upgrades only its own run's install):
    finalize writes the final values and holds the policy check back; the operator upgrades
    the release with them and restarts the agents; ``finalize --remove-calico`` then proves
    policy is enforced and removes Calico."""
    if not run.seen.get("migrated"):
        pytest.skip("apply did not finish")
    workload, lab = run.workload, run.lab
    proc = run.cli("finalize", "finalize", str(run.plan), *images(lab), "--yes", timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert "check-policy: not yet" in proc.stdout, proc.stdout
    values = run.plan.with_name(run.plan.stem + ".cilium-final-values.yaml")
    final = yaml.safe_load(values.read_text())
    assert final["policyEnforcementMode"] == "default" and final["cni"]["customConf"] is False, final
    kindlab.run(
        [lab.helm, "upgrade", "cilium", lab.cilium_chart, "-n", "kube-system", "--reuse-values", "-f", str(values)],
        env=workload.env(),
        timeout=600,
    )
    workload.kubectl("-n", "kube-system", "rollout", "restart", "daemonset/cilium")
    workload.kubectl("-n", "kube-system", "rollout", "status", "daemonset/cilium", "--timeout=600s", timeout=660)
    proc = run.cli("finalize-remove", "finalize", str(run.plan), "--remove-calico", *images(lab), "--yes", timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert "check-policy: NetworkPolicy enforced" in proc.stdout and "remove-calico: removed Calico" in proc.stdout
    config = workload.json("-n", "kube-system", "get", "configmap", "cilium-config")["data"]
    assert config["enable-policy"] == "default" and config["custom-cni-conf"] == "false", config
    daemonsets = {d["metadata"]["name"] for d in workload.json("-n", "kube-system", "get", "daemonsets")["items"]}
    assert "calico-node" not in daemonsets and "cilium" in daemonsets, daemonsets
    # The policy pair again: Cilium now admits the allowed client and drops the denied one.
    deadline = time.monotonic() + 60
    while True:
        window = policy_window(workload, 8)
        denied, allowed = window.get("denied-client", (0, 0)), window.get("allowed-client", (0, 0))
        if denied[0] and denied[1] == denied[0] and allowed[0] and allowed[1] == 0:
            break
        assert time.monotonic() < deadline, f"policy not enforced after finalize: {window}"
    print(f"\npolicy clients after finalize (requests, failures): {window}")
    assert_probers_clean(run, "after-finalize", 10)
