"""Ports: the small interfaces the engine talks through. Adapters live elsewhere.

- ``Cluster``: read and write a cluster (``backends.simulated``, ``backends.kubernetes``).
- ``CheckpointStore``: persist run state (``checkpoints.local``, in-cluster store).
- ``ExecutorLock``: at most one executor per cluster (``checkpoints.local.FileLock``, Lease).
- ``Clock``: time and waiting, so tests control time.
- ``EventSink``: where the engine reports what it does; the shell renders it.
The engine imports only this module, never an adapter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from migrate.journal import RunState
from migrate.model import ClusterIdentity, Cni, DeploymentInfo, Inventory, NodeInfo, PodInfo, SurgeRecord


class NodeTask(StrEnum):
    """Node-level work done by a short-lived privileged pod on the node."""

    READ_CNI = "read-cni"  # list /etc/cni/net.d
    RESTORE_CALICO_CNI = "restore-calico-cni"  # set 05-cilium.conflist aside, un-rename Calico's
    REBOOT = "reboot"  # the host's init reboots it, with a bounded sysrq fallback
    REBOOT_RECORD = "reboot-record"  # which way the node's last reboot went


@dataclass(frozen=True)
class ProbeResult:
    """One validation check's outcome, with what was observed and what was expected."""

    check: str
    ok: bool
    observed: str = ""
    expected: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class Cluster(Protocol):
    def identity(self) -> ClusterIdentity: ...

    def inventory(self) -> Inventory: ...

    def missing_permissions(self, extra: Sequence[tuple[str, str, str, str]] = ()) -> tuple[str, ...]:
        """The permissions the run needs (plus ``extra``, e.g. the traffic watch's) that this
        identity lacks (empty: all granted)."""
        ...

    def cilium_config(self) -> dict[str, str]:
        """The running Cilium's configuration (kube-system/cilium-config data); {} if none."""
        ...

    def network_policies(self) -> list[dict[str, Any]]:
        """Every Kubernetes and Calico policy object, with its apiVersion, kind and spec."""
        ...

    def nodes(self) -> list[NodeInfo]: ...

    def get_node(self, name: str) -> NodeInfo: ...

    def pods_on_node(self, name: str) -> list[PodInfo]: ...

    def set_unschedulable(self, name: str, value: bool) -> bool:
        """Cordon/uncordon; True when it changed something."""
        ...

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        """Set (or with None remove) a label; True when it changed something."""
        ...

    def evict(self, pod: PodInfo) -> None:
        """Evict through the Eviction API. Raises EvictionRefused (PDB) or NotFound."""
        ...

    def delete_pod(self, pod: PodInfo) -> None: ...

    # -- surge before evict (migrate.surge, steps/surge.py) ----------------------------------
    def deployment(self, namespace: str, name: str) -> DeploymentInfo:
        """One Deployment as it is now; NotFound when it is gone."""
        ...

    def scale_deployment(self, deployment: DeploymentInfo, replicas: int, surge: SurgeRecord | None) -> DeploymentInfo:
        """Set its replicas and its surge record (None removes it) in one write, only if it
        is unchanged since ``deployment`` was read (its version): ``Conflict`` otherwise."""
        ...

    def surged_deployments(self) -> list[DeploymentInfo]:
        """Every Deployment that carries the surge annotation, readable or not
        (``DeploymentInfo.unreadable_surge``), by namespace/name."""
        ...

    def wait_deployment(
        self, deployment: DeploymentInfo, until: Callable[[DeploymentInfo], bool], timeout: float
    ) -> DeploymentInfo:
        """Wait (watching, not polling) until ``until`` holds for the Deployment as it is;
        return it as last seen (``until`` still false after ``timeout``). NotFound once it
        is deleted."""
        ...

    def set_deletion_cost(self, pod: PodInfo, cost: int) -> None:
        """Set the pod's ``controller.kubernetes.io/pod-deletion-cost``; NotFound if it is gone."""
        ...

    def wait_replicas_ready(self, deployment: DeploymentInfo, count: int, away_from: str, timeout: float) -> int:
        """Wait (watching) until ``count`` of the Deployment's pods are Ready, not being
        deleted and not on node ``away_from``; return how many are (fewer on timeout).
        NotFound once the Deployment itself is deleted."""
        ...

    def wait_pods_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        """Wait (watching, not polling) until these pod UIDs are gone; return those left."""
        ...

    # -- UDP hand-off (migrate.handoff, steps/handoff.py) -----------------------------------
    def check_eviction(self, pod: PodInfo) -> None:
        """Ask the Eviction API without acting (a dry run): raises EvictionRefused or NotFound
        as ``evict`` would; changes nothing."""
        ...

    def hand_off(self, pod: PodInfo, remove: Sequence[str], service: str, record: str) -> None:
        """In one write: remove the label keys ``remove``, set label ``cni-migrate.io/handoff``
        to ``service`` and its annotation to ``record``. NotFound when the pod is gone."""
        ...

    def serving_endpoints(self, namespace: str, services: Sequence[str]) -> list[tuple[str, str]]:
        """(address, node) of every Ready endpoint of these Services now."""
        ...

    def handed_off_pods(self) -> list[tuple[PodInfo, Mapping[str, str]]]:
        """Every pod with the hand-off label, with its annotations."""
        ...

    def wait_endpoint_gone(self, namespace: str, services: Sequence[str], address: str, timeout: float) -> bool:
        """Wait (watching) until no EndpointSlice of these Services lists ``address``, and then
        until every node's datapath has applied that (``migrate.handoff.SETTLE_SECONDS`` on a
        real cluster: kube-proxy's sync; nothing in the simulation); False on timeout."""
        ...

    def cilium_agent(self, node: str) -> PodInfo | None: ...

    def wait_cilium_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        """Wait for a Ready Cilium agent pod on ``node`` other than ``not_uid``."""
        ...

    def node_cni(self, node: str) -> Cni: ...

    def run_node_task(self, node: str, task: NodeTask, timeout: float) -> str: ...

    def wait_node_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        """Wait until ``node`` reports a boot ID other than ``old_boot_id`` and is Ready."""
        ...

    def wait_node_ready(self, node: str, timeout: float) -> NodeInfo:
        """Wait (watching, not polling) until ``node`` is Ready; the node as last seen (not
        Ready when ``timeout`` passed first)."""
        ...

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult: ...

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        """``checks`` on ``node`` in their order, up to and including the first that fails
        (its batch: checks one probe pod answers together come back together)."""
        ...

    def policy_probe(self, timeout: float) -> ProbeResult:
        """After finalize: an allowed and a denied client against a server behind a
        NetworkPolicy; ok only if the first connects and the second is blocked."""
        ...

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete one object; True if it existed."""
        ...

    def ensure_object(self, obj: dict[str, Any]) -> bool:
        """Create ``obj`` or make its spec match (e.g. the CiliumNodeConfig); True if changed."""
        ...

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None: ...

    def start_traffic_watch(self, timeout: float) -> str:
        """Deploy the traffic watch (``migrate.traffic.manifests`` with the probe image), or
        leave it as it is; wait until every prober has reported once. Returns a summary;
        raises ``TemporaryError`` naming the silent probers when some never report."""
        ...

    def traffic_reports(self, after: int, timeout: float, node: str) -> tuple[list[Any], list[str]]:
        """The probers' reports (``migrate.traffic.Report``), read once every prober has
        reported again (within ``timeout``) after epoch second ``after``, ``node``'s own among
        them even while its prober pod is being replaced; and the nodes whose prober did not."""
        ...

    def stop_traffic_watch(self) -> bool:
        """Remove the traffic watch (its namespace); False if there was none."""
        ...

    def cleanup_helper_pods(self, node: str | None = None) -> int:
        """Delete probe and node-task pods a killed run left behind; how many there were."""
        ...


class CheckpointStore(Protocol):
    def load(self) -> RunState | None: ...

    def save(self, state: RunState) -> None: ...

    def archive(self) -> None:
        """Set a finished journal aside so a new plan can start."""
        ...


class ExecutorLock(Protocol):
    def hold(self) -> AbstractContextManager[None]:
        """Hold the lock for the duration; raise LockHeld if someone else has it. A lock
        that can be lost while held (the Lease) ends the run with LeaseLost, never later
        than another executor could take it."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Event:
    """Something the engine did, for the shell to log, display or post as a k8s Event."""

    kind: str  # run-started, step-started, step-finished, node-state, run-finished, wait, surge, handoff, node-back
    plan_id: str
    node: str = ""
    wave: int = 0
    step: str = ""
    phase: str = ""
    outcome: str = ""
    message: str = ""
    duration: float = 0.0


EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class HookContext:
    """What every hook point tells its hooks: one schema, the same keys at every point
    (hooks/README.md, "What a hook receives", documents it per point; a test runs a hook
    at each point and holds what it received to that table). ``to_record`` is the JSON on
    the hook's stdin; ``migrate.hooks`` derives the ``CNI_MIGRATE_*`` variables from it."""

    point: str  # pre-run, pre-node, post-swap, post-node, post-run, on-failure
    plan_id: str
    node: str = ""  # "" at the run's points (pre-run, post-run)
    wave: int | None = None  # None at the run's points
    step: str = ""  # the node step the point follows or precedes, as a step id: "worker-1/swap-cni"
    phase: str = "apply"  # "apply" (moving to Cilium) or "rollback" (on-failure: the node was put back)
    outcome: str = ""  # "" before anything happened (pre-*); "swapped", "migrated", "completed", "failed"
    message: str = ""  # on-failure: why the node failed; "" elsewhere

    def to_record(self) -> dict[str, Any]:
        return {
            "hook": self.point,
            "plan_id": self.plan_id,
            "node": self.node,
            "wave": self.wave,
            "step": self.step,
            "phase": self.phase,
            "outcome": self.outcome,
            "message": self.message,
        }


# Runs the operator's hooks of a point; returns one line per failed hook (empty: all passed
# or none installed). The shell wires ``migrate.hooks``.
HookCaller = Callable[[HookContext], list[str]]


def no_hooks(context: HookContext) -> list[str]:
    return []


class StopFlag:
    """Set by a signal handler or a prompt; steps check it at safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when the flag is set; True if it is."""
        return self._event.wait(seconds)
