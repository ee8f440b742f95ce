"""Real Calico -> real Cilium on the kind cluster, by cni-migrate (issue 11).

On the lab's Calico (e2e/images/calico/build) with the workload and probers running:
``plan --install-cilium`` with the chart of the pinned Cilium module and the lab's values
(``--cilium-values``: local images, no Envoy), ``apply --yes`` (Helm installs Cilium in
migration mode, then every node: cordon, drain, swap, validate, uncordon), then
``finalize --upgrade-cilium --remove-calico``. The tests run in this order and share the
run; each checks what a platform engineer would look at after that stage.

Needs the Calico lab (``--cni auto`` with Calico built, or ``--cni calico``) and Cilium's
images (e2e/images/cilium/build, part of e2e/images/build); skipped otherwise.
"""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import kindlab
import pytest
import yaml

POOL = ipaddress.ip_network("10.245.0.0/16")  # the plan's default Cilium pool
CALICO_POOL = ipaddress.ip_network("192.168.0.0/16")


@pytest.fixture(scope="module")
def run(workload: kindlab.Cluster, lab: kindlab.Lab, artifacts: Path) -> dict[str, Any]:
    """The migration's shared record: the plan path and what each stage saw."""
    if workload.cni != "calico":
        pytest.skip(f"CNI is {workload.cni}: the migration needs the lab's Calico")
    if not kindlab.cilium_available(lab):
        pytest.skip("no Cilium images/chart (e2e/images/cilium/build)")
    from conftest import Timer

    with Timer("kind load image-archive cilium (agent + operator)"):
        for archive in lab.cilium_archives:
            kindlab.load_archive(workload, archive)
    return {"plan": artifacts / "migrate-plan.yaml"}


def cli(
    workload: kindlab.Cluster, artifacts: Path, label: str, *args: str, timeout: float = 300, local: bool = False
) -> Any:
    """cni-migrate against the kind cluster; ``local`` for commands that read only this
    machine's journal (status)."""
    where = () if local else ("--kubeconfig", str(workload.kubeconfig), "--context", workload.context)
    proc = kindlab.cni_migrate(*args, *where, timeout=timeout)
    (artifacts / f"migrate-{label}.txt").write_text(f"$ cni-migrate {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    print(f"\n--- cni-migrate {label} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
    return proc


def images(lab: kindlab.Lab) -> tuple[str, ...]:
    """The lab's helper-pod images (nothing can be pulled here), for apply and finalize."""
    return ("--probe-image", lab.probe_image, "--node-image", lab.node_task_image)


def pod_ips(cluster: kindlab.Cluster, namespace: str) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["status"].get("podIP", "")
        for p in cluster.pods(namespace)
        if not p["spec"].get("hostNetwork") and p["status"].get("phase") == "Running"
    }


def policy_window(cluster: kindlab.Cluster, seconds: float = 10) -> dict[str, tuple[int, int]]:
    """role -> (requests, failures) of the policy clients over the next ``seconds``."""
    before = kindlab.policy_clients(cluster)
    time.sleep(seconds)
    after = kindlab.policy_clients(cluster)
    return {
        role: (s.requests - before[role].requests, s.failures - before[role].failures)
        for role, s in after.items()
        if role in before
    }


def test_plan_names_the_install(run: dict[str, Any], workload: kindlab.Cluster, lab: kindlab.Lab, artifacts: Path):
    proc = cli(
        workload,
        artifacts,
        "plan",
        "plan",
        "--install-cilium",
        "--cilium-chart",
        lab.cilium_chart,
        "--cilium-values",
        lab.cilium_values,
        "-o",
        str(run["plan"]),
    )
    assert proc.returncode == 0, proc.stderr
    plan = yaml.safe_load(run["plan"].read_text())
    install = plan["options"]["installCilium"]
    assert install["chart"] == lab.cilium_chart
    assert install["values"]["image"]["override"].startswith("cni-migrate/cilium:")
    assert install["values"]["l7Proxy"] is False
    findings = {f["check"]: f for f in plan["findings"]}
    assert findings["cilium-installed"]["severity"] == "warning"
    assert "apply installs it in migration mode" in findings["cilium-installed"]["message"]
    assert not [f for f in plan["findings"] if f["severity"] == "blocking"]
    planned = [n["name"] for w in plan["waves"] for n in w["nodes"]]
    assert sorted(planned) == sorted(n["metadata"]["name"] for n in workload.nodes())


def test_apply_moves_every_node_to_cilium(
    run: dict[str, Any], workload: kindlab.Cluster, lab: kindlab.Lab, artifacts: Path
):
    before = pod_ips(workload, "e2e")
    assert before and all(ipaddress.ip_address(ip) in CALICO_POOL for ip in before.values()), before
    kindlab.reset_probers(workload)
    start = time.monotonic()
    proc = cli(
        workload,
        artifacts,
        "apply",
        "apply",
        str(run["plan"]),
        "--yes",
        "--helm",
        lab.helm,
        *images(lab),
        timeout=3600,
    )
    took = time.monotonic() - start
    during = kindlab.prober_summary(workload)
    (artifacts / "migrate-probers.txt").write_text(during.table())
    print(f"\napply took {took:.0f} s; the probers during the run:\n{during.table()}")
    assert proc.returncode == 0, proc.stderr

    status = json.loads(cli(workload, artifacts, "status", "status", str(run["plan"]), "-o", "json", local=True).stdout)
    assert {n["name"]: n["state"] for n in status["nodes"]} == {
        n["metadata"]["name"]: "migrated" for n in workload.nodes()
    }
    assert status["prepare"] == {"install-cilium": "succeeded"}
    # Cilium's agents own every node now: a CiliumNode with a block of the plan's pool each,
    # and every pod of the workload was restarted onto an address from it.
    for node in workload.json("get", "ciliumnodes")["items"]:
        cidrs = node["spec"]["ipam"].get("podCIDRs") or []
        assert cidrs and all(ipaddress.ip_network(c).subnet_of(POOL) for c in cidrs), node["metadata"]["name"]
    after = pod_ips(workload, "e2e")
    assert after and all(ipaddress.ip_address(ip) in POOL for ip in after.values()), after
    assert not any(n["spec"].get("unschedulable") for n in workload.nodes())
    # And traffic flows on Cilium alone: every prober reaches the web Service, its peers and
    # the cluster DNS for 15 s without one failed request.
    kindlab.reset_probers(workload)
    time.sleep(15)
    settled = kindlab.prober_summary(workload)
    print(f"\nafter the run:\n{settled.table()}")
    assert settled.requests() > 0 and settled.failed() == 0, settled.failures_lines()
    run["migrated"] = True


def test_policy_is_not_enforced_during_the_window(run: dict[str, Any], workload: kindlab.Cluster):
    """What the plan warned about: Cilium runs with policyEnforcementMode never until finalize."""
    if not run.get("migrated"):
        pytest.skip("apply did not finish")
    window = policy_window(workload)
    print(f"\npolicy clients before finalize (requests, failures): {window}")
    assert window["allowed-client"][0] > 0 and window["allowed-client"][1] == 0, window
    assert window["denied-client"][0] > 0 and window["denied-client"][1] == 0, window


def test_finalize_enforces_policy_and_removes_calico(
    run: dict[str, Any], workload: kindlab.Cluster, lab: kindlab.Lab, artifacts: Path
):
    if not run.get("migrated"):
        pytest.skip("apply did not finish")
    proc = cli(
        workload,
        artifacts,
        "finalize",
        "finalize",
        str(run["plan"]),
        "--upgrade-cilium",
        "--remove-calico",
        "--helm",
        lab.helm,
        *images(lab),
        "--yes",
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
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
    kindlab.reset_probers(workload)
    time.sleep(10)
    settled = kindlab.prober_summary(workload)
    assert settled.requests() > 0 and settled.failed() == 0, settled.failures_lines()
