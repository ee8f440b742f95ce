"""A fresh real control plane per test, driven through the installed ``cni-migrate`` CLI.

``CliLab`` starts a lab whose kwok nodes and workloads mirror the simulated default world
(``simworld.default_world``), runs the tests' ``NodeAgent`` beside it (kubelet and Cilium
agent stand-in), and runs the CLI as a subprocess with its own ``CNI_MIGRATE_HOME``, the
way a user would. It also mints kubeconfigs for ServiceAccounts (TokenRequest API), so
tests can run the CLI as a less privileged identity, and reads the cluster back with the
admin client to assert end states. Unlike ``tests/scenario``'s ``KubeHarness`` it never
imports the engine: everything the tests check comes from the CLI or the API server.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from migrate.backends import simworld
from tests import labsupport
from tests.realcluster.nodeagent import GRACE, NodeAgent


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


# Cilium's pool for labs of more than 256 nodes: 4,096 /24s, clear of the lab's Calico
# CIDRs (192.168.0.0/16, then 10.64.0.0/10) and of the Service range.
BIG_CILIUM_POOL = "10.128.0.0/12"


class CliLab:
    """One lab, one world, one NodeAgent; ``close()`` always tears all three down."""

    def __init__(
        self,
        tmp: Path,
        *,
        nodes: int = 4,
        pod_delete_delay_ms: int = int(GRACE * 1000),
        seed: int = 1,
        cilium: bool = True,
    ) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.world = simworld.default_world("cli", nodes=nodes, seed=seed)
        if nodes > 256:  # a /24 a node: the default /16 holds 256 (plan with --cilium-pool-cidr POOL)
            self.world["cilium"]["poolCIDR"] = BIG_CILIUM_POOL
        if not cilium:  # no Cilium yet: apply --install-cilium brings the real chart
            self.world["cilium"].update(installed=False, migrationMode=False)
        self.lab = labsupport.lab_module().KubeLab(
            tmp / "lab",
            labsupport.bin_dir(),
            die_with_parent=True,
            kwok_runs_pods=False,  # the NodeAgent starts and removes pods
        )
        self.agent: NodeAgent | None = None
        try:
            self.kubeconfig = self.lab.up(node_specs=labsupport.node_specs(self.world), fixtures=False)
            self.agent = NodeAgent(
                str(self.kubeconfig),
                delete_delay=pod_delete_delay_ms / 1000,
                cilium_pool=self.world["cilium"]["poolCIDR"],
            ).start()
            self.lab.install_fixtures()
            self.lab.apply_manifest(labsupport.workload_manifests(self.world))
            self.api = config.new_client_from_config(str(self.kubeconfig))
            self.core = client.CoreV1Api(self.api)
            self.apps = client.AppsV1Api(self.api)
            self.policy = client.PolicyV1Api(self.api)
            self.wait_settled(timeout=120 + nodes // 2)  # 1,000 nodes: about 2,000 DaemonSet pods to start
        except BaseException:
            self.close()
            raise
        exe = shutil.which("cni-migrate", path=str(Path(sys.executable).parent))
        self.base = [exe] if exe else [sys.executable, "-m", "migrate.cli"]

    def close(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            errors = [entry for entry in self.agent.log if entry[1].endswith("error")]
            if errors:
                print("node agent errors:", *errors[:10], sep="\n  ")
        self.lab.down(keep_logs=True)

    # -- the CLI ---------------------------------------------------------------------------
    def env(self, home: Path | None = None) -> dict[str, str]:
        env = {**os.environ, "CNI_MIGRATE_HOME": str(home or self.home), "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("CNI_MIGRATE_FAILPOINT", None)
        env.pop("KUBECONFIG", None)
        return env

    def argv(self, *args: str, kubeconfig: Path | None = None) -> list[str]:
        return [*self.base, *args, "--kubeconfig", str(kubeconfig or self.kubeconfig)]

    def cli(self, *args: str, home: Path | None = None, kubeconfig: Path | None = None, timeout: float = 300) -> Result:
        proc = subprocess.run(
            self.argv(*args, kubeconfig=kubeconfig),
            cwd=self.tmp,
            env=self.env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, home: Path | None = None, kubeconfig: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args, kubeconfig=kubeconfig),
            cwd=self.tmp,
            env=self.env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def plan(self, *flags: str, out: str = "p.yaml", kubeconfig: Path | None = None) -> Result:
        return self.cli(
            "plan", "--force", "--delete-emptydir-data", *flags, "--out", out, "--overwrite", kubeconfig=kubeconfig
        )

    # -- reading the cluster back -------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return sorted(self.world["nodes"])

    def cordoned(self) -> list[str]:
        return sorted(n.metadata.name for n in self.core.list_node().items if n.spec.unschedulable)

    def controllers_short(self) -> dict[str, tuple[int, int]]:
        """'ns/name' -> (ready, wanted) for every Deployment and StatefulSet of the world."""
        out = {}
        for kind, items in (
            ("Deployment", self.apps.list_deployment_for_all_namespaces().items),
            ("StatefulSet", self.apps.list_stateful_set_for_all_namespaces().items),
        ):
            for obj in items:
                key = f"{kind}/{obj.metadata.namespace}/{obj.metadata.name}"
                out[key] = (obj.status.ready_replicas or 0, obj.spec.replicas or 0)
        return out

    def settled(self) -> bool:
        if any(ready != want for ready, want in self.controllers_short().values()):
            return False
        for ds in self.apps.list_daemon_set_for_all_namespaces().items:
            st = ds.status
            if (st.observed_generation or 0) < ds.metadata.generation or st.number_ready != st.desired_number_scheduled:
                return False
        for pdb in self.policy.list_pod_disruption_budget_for_all_namespaces().items:
            st = pdb.status
            if st is None or (st.observed_generation or 0) < pdb.metadata.generation or not st.expected_pods:
                return False
            if st.current_healthy < st.desired_healthy:
                return False
        return True

    def wait_settled(self, timeout: float = 90) -> None:
        labsupport.wait_for("workloads ready and PDBs satisfied", self.settled, timeout=timeout)

    def watch_pdbs(self) -> Watcher:
        """A started watch on every PodDisruptionBudget (``test_faults.pdb_breaches`` reads it)."""
        return Watcher(
            self.kubeconfig, "list_pod_disruption_budget_for_all_namespaces", api_class=client.PolicyV1Api
        ).start()

    def lease(self) -> dict[str, Any] | None:
        coordination = client.CoordinationV1Api(self.api)
        try:
            lease = coordination.read_namespaced_lease("cni-migrate-executor", "cni-migrate")
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.api.sanitize_for_serialization(lease)  # type: ignore[no-any-return]

    # -- identities -------------------------------------------------------------------------------
    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig for ServiceAccount namespace/name with a token from the TokenRequest API."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }
        token = self.core.create_namespaced_service_account_token(name, namespace, request).status.token
        ca = base64.b64encode((self.lab.pki / "ca.crt").read_bytes()).decode()
        user = f"system:serviceaccount:{namespace}:{name}"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": self.lab.server, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "lab", "user": user}}],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
        return path


class Watcher:
    """Record every object a Kubernetes watch reports, in a background thread.

    A real watch (list, then watch from the list's resourceVersion; re-list when the watch
    expires), not polling, so short-lived states are seen too. ``records`` holds
    (event type, object as plain JSON) in arrival order; the initial list is recorded
    as ``LISTED``.
    """

    def __init__(self, kubeconfig: Path, list_fn: str, api_class: Any = client.CoreV1Api, **kwargs: Any) -> None:
        self._api = api_class(config.new_client_from_config(str(kubeconfig)))
        self._list = getattr(self._api, list_fn)
        self._kwargs = kwargs
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{list_fn}", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError(f"the watch did not start: {self.errors[-3:]}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        sanitize = self._api.api_client.sanitize_for_serialization
        while not self._stop.is_set():
            try:
                listing = self._list(**self._kwargs)
                for item in listing.items:
                    self.records.append(("LISTED", sanitize(item)))
                self._ready.set()
                rv = listing.metadata.resource_version
                while not self._stop.is_set():
                    w = watch.Watch()
                    for event in w.stream(self._list, resource_version=rv, timeout_seconds=2, **self._kwargs):
                        obj = event["raw_object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self.records.append((event["type"], obj))
                        if self._stop.is_set():
                            w.stop()
                            break
            except Exception as exc:  # noqa: BLE001 - keep watching across expiries and API hiccups
                # An expired watch (410) or a dropped connection: re-list and watch again.
                self.errors.append(repr(exc)[:300])
                if self._stop.wait(0.2):
                    return
