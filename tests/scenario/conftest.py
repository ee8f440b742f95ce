"""Scenario fixtures: the same scenario on every backend.

``backend`` yields a harness over a fresh cluster built from the simulated default world:
the simulated cluster itself, or (marked ``realcluster``) a real kube-apiserver with
etcd, controller-manager, scheduler and kwok nodes, the same workloads and PDBs, and the
tests' node agent playing what runs on the nodes. Scenarios use only the harness methods
and the ``Cluster`` port, so they cannot tell the backends apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrate.backends import simworld
from migrate.backends.simulated import SimStore
from migrate.checkpoints import AllLocks
from migrate.checkpoints.local import FileLock, LocalStore
from migrate.cniconf import after_restore
from migrate.executor import Executor, RunConfig
from migrate.model import MIGRATION_LABEL, Cni
from migrate.plan import Plan, PlanOptions, Target
from migrate.planner import build_plan
from migrate.ports import Clock, Event, ExecutorLock, StopFlag, SystemClock


class FakeClock:
    """Time that only moves when someone sleeps: drains time out without waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return datetime(2026, 11, 28, 22, 0, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class Harness:
    name = ""
    cluster: Any
    clock: Clock

    def __init__(self, tmp: Path, target: Target) -> None:
        self.tmp = tmp
        self.target = target
        self.events: list[Event] = []

    def plan(self, **options: Any) -> Plan:
        options.setdefault("force", True)
        options.setdefault("delete_emptydir_data", True)
        return build_plan(self.cluster.inventory(), PlanOptions(**options), self.target)

    def executor(self, plan: Plan, stop: StopFlag | None = None, **kw: Any) -> Executor:
        directory = self.tmp / "runs"
        kw.setdefault("agent_timeout", 60.0)
        kw.setdefault("probe_timeout", 60.0)
        kw.setdefault("probe_retry_gap", 0.0 if self.name == "simulated" else 1.0)
        return Executor(
            plan=plan,
            cluster=self.cluster,
            store=LocalStore(directory),
            lock=kw.pop("lock", None) or self.lock(directory),
            clock=self.clock,
            emit=self.events.append,
            stop=stop or StopFlag(),
            config=RunConfig(**kw),
        )

    def lock(self, directory: Path) -> ExecutorLock:
        """The executor lock as the CLI wires it for a run whose state is in ``directory``."""
        return FileLock(directory)

    def another_executors_lock(self) -> ExecutorLock:
        """The lock a second executor would take: on a simulated cluster, one started from
        the same state home (the home's flock is all a simulated cluster has)."""
        return self.lock(self.tmp / "runs")

    def stopping_after(self, step: str) -> tuple[StopFlag, Any]:
        """A stop flag and an event sink that sets it when the first ``step`` finishes."""
        stop = StopFlag()

        def emit(event: Event) -> None:
            self.events.append(event)
            if event.kind == "step-finished" and event.step == step:
                stop.set("test asked to stop")

        return stop, emit

    def store(self) -> LocalStore:
        return LocalStore(self.tmp / "runs")

    def node_view(self) -> dict[str, tuple[Cni, bool, str | None]]:
        return {
            n.name: (self.cni(n.name), n.unschedulable, n.labels.get(MIGRATION_LABEL)) for n in self.cluster.nodes()
        }

    def snapshot(self) -> dict[str, Any]:
        """What 'changed something' means for idempotency checks: nodes and pod identities."""
        return {"nodes": self.node_view(), "pods": sorted(p.uid for p in self.cluster.inventory().pods)}

    def wait_settled(self) -> None:
        """Until every PDB is satisfied again (controllers may lag on a real cluster)."""

    # backend specifics
    def cni(self, node: str) -> Cni: ...
    def fail_validation(self, node: str, check: str) -> None: ...
    def clear_failures(self) -> None: ...
    def add_pdb(self, pdb: dict[str, Any]) -> None: ...
    def add_node(self, name: str) -> None: ...
    def remove_node(self, name: str) -> None:
        """The node dies and is deleted from the cluster, with the pods bound to it."""

    def restore_calico_by_hand(self, name: str) -> None:
        """An operator puts Calico's conflist back on the node, leaving the label alone."""

    def stop_node(self, name: str) -> None:
        """The node's machine stops (power, panic): NotReady, and nothing runs on it."""

    def start_node(self, name: str) -> None:
        """The stopped machine is back: it starts what waited for it and becomes Ready."""

    def inject(self, op: str, nth: int, error: str) -> None: ...
    def injected(self) -> int: ...
    def record_writes(self) -> None:
        """From now on, note every write that reaches the cluster."""

    def writes(self) -> list[str]:
        """The writes that reached the cluster since ``record_writes``."""
        return []

    def set_cilium_config(self, key: str, value: str) -> None: ...
    def edit_deployment(
        self,
        namespace: str,
        name: str,
        *,
        annotations: dict[str, str | None] | None = None,
        replicas: int | None = None,
    ) -> None:
        """An operator's edit of a Deployment (kubectl annotate / scale; None deletes an
        annotation): not one of the tool's writes."""

    def delete_deployment(self, namespace: str, name: str) -> None:
        """An operator deletes a Deployment (its pods go with it)."""

    def ignore_policy(self) -> None:
        """Make the dataplane ignore NetworkPolicy whatever cilium-config says."""

    def traffic_watch_deployed(self) -> bool: ...


class SimHarness(Harness):
    name = "simulated"
    _before = 0

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, Target("sim", "scenario", "sim://scenario"))
        self.cluster = SimStore(tmp).create("scenario", simworld.default_world("scenario", nodes=6, seed=1))
        self.clock = FakeClock()

    def cni(self, node: str) -> Cni:
        return Cni(simworld.node_cni(self.cluster.world(), node))

    def fail_validation(self, node: str, check: str) -> None:
        self.cluster.update(failValidation={node: [check]})

    def clear_failures(self) -> None:
        self.cluster.update(failValidation={})

    def add_pdb(self, pdb: dict[str, Any]) -> None:
        self.cluster.update(pdbs=[*self.cluster.world()["pdbs"], pdb])

    def add_node(self, name: str) -> None:
        world = self.cluster.world()
        world["nodes"][name] = dict(world["nodes"]["worker-1"], uid=f"uid-{name}", index=len(world["nodes"]))
        self.cluster.update(nodes=world["nodes"])

    def remove_node(self, name: str) -> None:
        world = self.cluster.world()
        del world["nodes"][name]
        pods = {uid: p for uid, p in world["pods"].items() if p["node"] != name}
        self.cluster.update(nodes=world["nodes"], pods=pods)

    def restore_calico_by_hand(self, name: str) -> None:
        world = self.cluster.world()
        world["nodes"][name]["cniFiles"] = after_restore(world["nodes"][name]["cniFiles"])
        self.cluster.update(nodes=world["nodes"])

    def stop_node(self, name: str) -> None:
        self._set_ready(name, False)

    def start_node(self, name: str) -> None:
        self._set_ready(name, True)  # the controllers' reconcile starts its DaemonSet pods

    def _set_ready(self, name: str, ready: bool) -> None:
        world = self.cluster.world()
        world["nodes"][name]["ready"] = ready
        self.cluster.update(nodes=world["nodes"])

    def inject(self, op: str, nth: int, error: str) -> None:
        self.cluster.update(faults=[{"op": op, "nth": nth, "error": error}])

    def set_cilium_config(self, key: str, value: str) -> None:
        world = self.cluster.world()
        overrides = {**(world["cilium"].get("configOverrides") or {}), key: value}
        self.cluster.update(cilium={**world["cilium"], "configOverrides": overrides})

    def ignore_policy(self) -> None:
        self.cluster.update(failValidation={**self.cluster.world()["failValidation"], "*": ["policy"]})

    def edit_deployment(
        self,
        namespace: str,
        name: str,
        *,
        annotations: dict[str, str | None] | None = None,
        replicas: int | None = None,
    ) -> None:
        with self.cluster.file.transaction(write=True) as world:
            wl = next(
                x
                for x in world["workloads"]
                if (x["kind"], x["namespace"], x["name"]) == ("Deployment", namespace, name)
            )
            kept = wl.setdefault("annotations", {})
            for key, value in (annotations or {}).items():
                if value is None:
                    kept.pop(key, None)
                else:
                    kept[key] = value
            if replicas is not None:
                wl["replicas"] = replicas
            wl["version"] = int(wl.get("version", 1)) + 1
            simworld.reconcile(world)

    def delete_deployment(self, namespace: str, name: str) -> None:
        with self.cluster.file.transaction(write=True) as world:
            world["workloads"] = [
                x
                for x in world["workloads"]
                if (x["kind"], x["namespace"], x["name"]) != ("Deployment", namespace, name)
            ]
            world["pods"] = {
                uid: p
                for uid, p in world["pods"].items()
                if not (
                    p["owner"]
                    and (p["owner"]["kind"], p["namespace"], p["owner"]["name"]) == ("Deployment", namespace, name)
                )
            }

    def traffic_watch_deployed(self) -> bool:
        return bool(self.cluster.world().get("trafficWatch"))

    def injected(self) -> int:
        world = self.cluster.world()
        return sum(1 for f in world["faults"] if world["counters"]["op"].get(f["op"], 0) >= f["nth"])

    def _written(self) -> list[str]:
        world = self.cluster.world()
        return [f"{a['op']} {a['target']}" for a in world["actions"]] + [
            f"event {e['node']} {e['reason']}" for e in world["events"]
        ]

    def record_writes(self) -> None:
        self._before = len(self._written())

    def writes(self) -> list[str]:
        return self._written()[self._before :]


class KubeHarness(Harness):
    name = "kubernetes"

    def __init__(self, tmp: Path) -> None:
        from migrate.backends.kubernetes import KubernetesCluster
        from tests import labsupport
        from tests.realcluster.nodeagent import NodeAgent

        self.world = simworld.default_world("scenario", nodes=6, seed=1)
        self.lab = labsupport.lab_module().KubeLab(
            tmp / "lab", labsupport.bin_dir(), die_with_parent=True, kwok_runs_pods=False
        )
        try:
            kubeconfig = self.lab.up(node_specs=labsupport.node_specs(self.world), fixtures=False)
            self.agent = NodeAgent(str(kubeconfig)).start()
            self.lab.install_fixtures()
            self.lab.apply_manifest(labsupport.workload_manifests(self.world))
            self.lab.apply_manifest(labsupport.policy_manifests(self.world))
            self.cluster = KubernetesCluster.connect(kubeconfig=str(kubeconfig), retry_seconds=20)
            super().__init__(tmp, Target("kubernetes", self.cluster.context_name, self.cluster.server))
            self.clock = SystemClock()
            self.wait_settled(expected_pods=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        proxy = getattr(self, "proxy", None)
        if proxy is not None:
            proxy.stop()
        agent = getattr(self, "agent", None)
        if agent is not None:
            agent.stop()
            errors = [entry for entry in agent.log if entry[1].endswith("error")]
            if errors:
                print("node agent errors:", *errors[:10], sep="\n  ")
        self.lab.down(keep_logs=True)

    def wait_settled(self, expected_pods: bool = False) -> None:
        from tests.labsupport import wait_for

        want = sum(w["replicas"] for w in self.world["workloads"] if w["kind"] != "DaemonSet")

        def settled() -> bool:
            inv = self.cluster.inventory()
            owned = [p for p in inv.pods if p.owner and not p.daemonset and p.ready and not p.deleting]
            if expected_pods and len(owned) < want:
                return False
            if any(p.deleting for p in inv.pods):
                return False  # a pod still terminating (the node agent's grace): not settled yet
            return all(p.expected_pods and p.current_healthy >= p.desired_healthy for p in inv.pdbs)

        wait_for("workloads ready and PDBs satisfied", settled, timeout=90)

    def cni(self, node: str) -> Cni:
        return self.agent.cni(node)

    def traffic_watch_deployed(self) -> bool:
        from kubernetes import client

        from migrate import traffic

        apps = client.AppsV1Api(self.cluster.api)
        names = [d.metadata.name for d in apps.list_namespaced_daemon_set(traffic.NAMESPACE).items]
        return traffic.NAME in names

    def fail_validation(self, node: str, check: str) -> None:
        self.agent.failures[node].add(check)

    def clear_failures(self) -> None:
        self.agent.failures.clear()

    def add_pdb(self, pdb: dict[str, Any]) -> None:
        from tests.labsupport import pdb_manifest

        self.lab.apply_manifest([pdb_manifest(pdb)])

    def add_node(self, name: str) -> None:
        self.lab.add_nodes([self.lab_module.NodeSpec(name=name)])

    def remove_node(self, name: str) -> None:
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(str(self.lab.kubeconfig)))
        api.delete_node(name)
        for pod in api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items:
            api.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)

    def restore_calico_by_hand(self, name: str) -> None:
        with self.agent._lock:
            self.agent.files[name] = after_restore(self.agent.files[name])

    def stop_node(self, name: str) -> None:
        self.agent.stop_node(name)
        self.lab.stop_node(name)

    def start_node(self, name: str) -> None:
        # Not waited for: whoever runs next waits for the node Ready itself.
        self.lab.start_node(name, wait=False)
        self.agent.start_node(name)

    @property
    def lab_module(self) -> Any:
        from tests.labsupport import lab_module

        return lab_module()

    def lock(self, directory: Path) -> ExecutorLock:
        """As the CLI wires it on a real cluster: the state home's flock and the cluster's Lease."""
        return AllLocks(FileLock(directory), self.cluster.lease())

    def another_executors_lock(self) -> ExecutorLock:
        """An executor on another machine: its own state home (flock), the same cluster's Lease."""
        return self.lock(self.tmp / "another-machine" / "runs")

    def inject(self, op: str, nth: int, error: str) -> None:
        """Put the fault proxy between the harness and the API server: the ``nth`` request
        of ``op`` gets HTTP ``error``. Plans made from now on bind the proxy's address."""
        from tests.realcluster.faultproxy import EVICTION, NODE, Rule

        paths = {"evict": ("POST", EVICTION), "patch-node": ("PATCH", NODE)}
        if op not in paths:
            raise AssertionError(f"no fault proxy rule for {op!r} yet")
        method, path = paths[op]
        rule = Rule("status", status=int(error), method=method, path=path, times=1, skip=nth - 1)
        self._through_proxy([rule], seed=nth)

    def record_writes(self) -> None:
        """Put a proxy that only counts between the harness and the API server (a plan made
        from now on binds its address)."""
        self._through_proxy([], seed=0)

    def writes(self) -> list[str]:
        assert self.proxy.log, "no request went through the proxy: it would see no write either"
        # An access review (the permission check) is a question: the API server stores nothing.
        return [
            f"{method} {path}"
            for method, path in self.proxy.log
            if method != "GET" and not path.startswith("/apis/authorization.k8s.io/")
        ]

    def _through_proxy(self, rules: list[Any], seed: int) -> None:
        from migrate.backends.kubernetes import KubernetesCluster
        from tests.realcluster.faultproxy import FaultProxy

        self.proxy = FaultProxy.for_lab(self.lab, self.tmp / "proxy", rules, seed=seed).start()
        self.proxy.arm()
        self.cluster = KubernetesCluster.connect(kubeconfig=str(self.proxy.kubeconfig), retry_seconds=20)
        self.target = Target("kubernetes", self.cluster.context_name, self.cluster.server)

    def set_cilium_config(self, key: str, value: str) -> None:
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(str(self.lab.kubeconfig)))
        api.patch_namespaced_config_map("cilium-config", "kube-system", {"data": {key: value}})

    def ignore_policy(self) -> None:
        self.agent.ignore_policy = True

    def edit_deployment(
        self,
        namespace: str,
        name: str,
        *,
        annotations: dict[str, str | None] | None = None,
        replicas: int | None = None,
    ) -> None:
        from kubernetes import client, config

        # Straight to the API server (not through a recording proxy): the operator's write.
        apps = client.AppsV1Api(config.new_client_from_config(str(self.lab.kubeconfig)))
        body: dict[str, Any] = {"metadata": {"annotations": annotations or {}}}
        if replicas is not None:
            body["spec"] = {"replicas": replicas}
        apps.patch_namespaced_deployment(name, namespace, body)

    def delete_deployment(self, namespace: str, name: str) -> None:
        from kubernetes import client, config

        apps = client.AppsV1Api(config.new_client_from_config(str(self.lab.kubeconfig)))
        apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")

    def injected(self) -> int:
        proxy = getattr(self, "proxy", None)
        return sum(proxy.counts.values()) if proxy is not None else 0


@pytest.fixture(params=["simulated", pytest.param("kubernetes", marks=pytest.mark.realcluster)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "simulated":
        yield SimHarness(tmp_path)
        return
    harness = KubeHarness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()
