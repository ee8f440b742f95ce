"""The migration plan: the reviewed artifact that is the only input to ``apply``.

A plan is pure data: waves of nodes, the steps per node, preflight findings, the options
it was built with and a snapshot of the cluster it was built from (identity and node
UIDs), so ``apply`` can refuse a plan for another cluster or a stale one.

Record schema (``to_record``), schema ``cni-migrate.io/v1``::

    apiVersion: cni-migrate.io/v1
    kind: MigrationPlan
    metadata: {id: <12 hex>, checksum: sha256:<64 hex>}
    target: {backend: sim|kubernetes, name: <sim name or kube context>, server: <url>}
    cluster: {fingerprint, kubeSystemUID, server, nodes: [{name, uid}], ciliumNodeConfigAPI}
    options: {maxUnavailable, canary, drainTimeoutSeconds, force, deleteEmptydirData,
              excludeNodes: [..], ciliumPoolCIDR, (reboot, installCilium, nodeParallelism,
              surge: false, maxSurge, handoff: false: written only when set)}
    findings: [{check, severity, message, fix, subjects: [..]}]
    waves: [{index, canary, nodes: [{name, controlPlane, keepCordoned, surge: [ns/name] (when any),
             handoff: [{deployment: ns/name, services: [name], labels: [key]}] (when any),
             steps: [{id, kind}]}]}]
    excluded: [{name, reason}]

The checksum covers everything but ``metadata``; the plan id is its first 12 hex digits.
The same inventory and options always give a byte-identical file (no timestamps).
A checksum proves integrity, not soundness: ``from_record`` also refuses a plan the planner
could not have made (``unsound``: a node in no wave or in two, a wave over maxUnavailable,
the control plane before the workers...), so a file edited and summed again is caught.

One file (some 550 lines) on purpose: the record schema, the checksum, the soundness check
and the options all meet in ``Plan.from_record``; split apart, each piece would import the
others back (a circle) or every caller would import from three places for one artifact.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from migrate.errors import BadInput
from migrate.model import ClusterIdentity

SCHEMA = "cni-migrate.io/v1"
KIND = "MigrationPlan"


class StepKind(StrEnum):
    """The closed set of things the executor does to a node."""

    CORDON = "cordon"
    DRAIN = "drain"
    SWAP_CNI = "swap-cni"
    VALIDATE = "validate"
    UNCORDON = "uncordon"
    RESTORE_CNI = "restore-cni"

    @property
    def inverse(self) -> StepKind | None:
        """The step that undoes this one; None when nothing needs undoing."""
        return _INVERSE.get(self)


_INVERSE = {
    StepKind.CORDON: StepKind.UNCORDON,
    StepKind.UNCORDON: StepKind.CORDON,
    StepKind.SWAP_CNI: StepKind.RESTORE_CNI,
    StepKind.RESTORE_CNI: StepKind.SWAP_CNI,
}

FORWARD_STEPS = (
    StepKind.CORDON,
    StepKind.DRAIN,
    StepKind.SWAP_CNI,
    StepKind.VALIDATE,
    StepKind.UNCORDON,
)
# Put a node back on Calico: keep it cordoned, move its pods off (they restart on
# Calico elsewhere), restore the CNI configuration, then let pods back.
ROLLBACK_STEPS = (StepKind.CORDON, StepKind.DRAIN, StepKind.RESTORE_CNI, StepKind.UNCORDON)


class Severity(StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One preflight result: what is wrong, how bad, and how to fix it."""

    check: str
    severity: Severity
    message: str
    fix: str = ""
    subjects: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "message": self.message,
            "fix": self.fix,
            "subjects": list(self.subjects),
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Finding:
        return cls(
            check=str(r["check"]),
            severity=Severity(r["severity"]),
            message=str(r["message"]),
            fix=str(r.get("fix", "")),
            subjects=tuple(str(s) for s in r.get("subjects", ())),
        )


# Cilium's cluster-pool IPAM hands each node a block of this size (the migration values set
# clusterPoolIPv4MaskSize to it): the pool must hold one block per node of the cluster.
NODE_POOL_PREFIX = 24


@dataclass(frozen=True)
class PlanOptions:
    max_unavailable: int = 1
    canary: int = 1
    drain_timeout_seconds: int = 300
    force: bool = False
    delete_emptydir_data: bool = False
    exclude_nodes: tuple[str, ...] = ()
    cilium_pool_cidr: str = "10.245.0.0/16"
    reboot: bool = False  # reboot each node after its swap (and its rollback)
    # apply installs Cilium with Helm before the first node: chart reference (a name in
    # Cilium's repository, a local chart, or oci://) and version; "" = Cilium runs already.
    install_cilium_chart: str = ""
    install_cilium_version: str = ""
    # The site's own Helm values under cni-migrate's (plan --cilium-values): image mirrors,
    # resources, operator replicas. Never a key the migration sets (cilium.site_values).
    install_cilium_values: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # How many nodes of a wave go through drain..uncordon at once: 0 is the whole wave (as
    # many as max-unavailable lets out of service together), 1 is one after another.
    node_parallelism: int = 0
    # Surge before evict (migrate.surge): a drain that would strand a Deployment brings its
    # replacements up first; max_surge caps the extra pods of one wave (0: no cap).
    surge: bool = True
    max_surge: int = 0
    # UDP hand-off (migrate.handoff): a drain takes a UDP Service's backend out of the
    # Service while it still answers, and stops it only once its endpoint is gone.
    handoff: bool = True

    def __post_init__(self) -> None:
        if self.max_unavailable < 1:
            raise BadInput("--max-unavailable must be at least 1")
        if self.node_parallelism < 0:
            raise BadInput("--node-parallelism must not be negative (0: the whole wave at once)")
        if self.canary < 0:
            raise BadInput("--canary must not be negative")
        if self.max_surge < 0:
            raise BadInput("--max-surge must not be negative (0: no cap)")
        if self.drain_timeout_seconds < 1:
            raise BadInput("--drain-timeout must be at least 1 second")
        try:
            pool = ipaddress.ip_network(self.cilium_pool_cidr)
        except ValueError as exc:
            raise BadInput(f"--cilium-pool-cidr {self.cilium_pool_cidr!r} is not a CIDR") from exc
        if pool.version != 4:
            raise BadInput(
                f"--cilium-pool-cidr {pool} is IPv6: the migration runs Cilium's IPv4 cluster pool; give an IPv4 range"
            )
        if pool.prefixlen > NODE_POOL_PREFIX:
            raise BadInput(
                f"--cilium-pool-cidr {pool} is smaller than one node's block (/{NODE_POOL_PREFIX}); "
                f"give at least a /{NODE_POOL_PREFIX}, and a /{NODE_POOL_PREFIX} for every node"
            )

    def to_record(self) -> dict[str, Any]:
        return {
            "maxUnavailable": self.max_unavailable,
            "canary": self.canary,
            "drainTimeoutSeconds": self.drain_timeout_seconds,
            "force": self.force,
            "deleteEmptydirData": self.delete_emptydir_data,
            "excludeNodes": list(self.exclude_nodes),
            "ciliumPoolCIDR": self.cilium_pool_cidr,
            # Options added after the schema's first release are written only when set, so
            # plan files made before them keep their checksum (and id) with this version.
            **({"reboot": True} if self.reboot else {}),
            **(
                {
                    "installCilium": {
                        "chart": self.install_cilium_chart,
                        "version": self.install_cilium_version,
                        **({"values": dict(self.install_cilium_values)} if self.install_cilium_values else {}),
                    }
                }
                if self.install_cilium_chart
                else {}
            ),
            **({"nodeParallelism": self.node_parallelism} if self.node_parallelism else {}),
            **({} if self.surge else {"surge": False}),
            **({"maxSurge": self.max_surge} if self.max_surge else {}),
            **({} if self.handoff else {"handoff": False}),
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> PlanOptions:
        return cls(
            max_unavailable=_whole(r["maxUnavailable"], "option maxUnavailable"),
            canary=_whole(r["canary"], "option canary"),
            drain_timeout_seconds=_whole(r["drainTimeoutSeconds"], "option drainTimeoutSeconds"),
            force=_flag(r["force"], "option force"),
            delete_emptydir_data=_flag(r["deleteEmptydirData"], "option deleteEmptydirData"),
            exclude_nodes=tuple(str(n) for n in r.get("excludeNodes", ())),
            cilium_pool_cidr=str(r["ciliumPoolCIDR"]),
            reboot=_flag(r.get("reboot", False), "option reboot"),
            install_cilium_chart=str((r.get("installCilium") or {}).get("chart", "")),
            install_cilium_version=str((r.get("installCilium") or {}).get("version", "")),
            install_cilium_values=_values_record((r.get("installCilium") or {}).get("values") or {}),
            node_parallelism=_whole(r.get("nodeParallelism", 0), "option nodeParallelism"),
            surge=_flag(r.get("surge", True), "option surge"),
            max_surge=_whole(r.get("maxSurge", 0), "option maxSurge"),
            handoff=_flag(r.get("handoff", True), "option handoff"),
        )


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    node: str


def step_id(node: str, kind: StepKind, phase: str = "apply") -> str:
    """Stable step ids: ``<node>/<kind>`` forward, ``<node>/rollback/<kind>`` backward."""
    return f"{node}/{kind.value}" if phase == "apply" else f"{node}/{phase}/{kind.value}"


@dataclass(frozen=True)
class NodePlan:
    name: str
    control_plane: bool = False
    keep_cordoned: bool = False  # the node was cordoned before the run: leave it so
    # Deployments (namespace/name) its drain surges before evicting (migrate.surge)
    surge: tuple[str, ...] = ()
    # Deployments whose pods its drain hands off from their UDP Services (migrate.handoff)
    handoff: tuple[Handoff, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(Step(step_id(self.name, k), k, self.name) for k in FORWARD_STEPS)

    @property
    def rollback_steps(self) -> tuple[Step, ...]:
        return tuple(Step(step_id(self.name, k, "rollback"), k, self.name) for k in ROLLBACK_STEPS)


@dataclass(frozen=True)
class Handoff:
    """A Deployment whose pods a node's drain takes out of their UDP Services before it
    stops them (``migrate.handoff``): the Services (in its namespace) and the label keys
    whose removal takes a pod out of every one of them."""

    deployment: str  # namespace/name
    services: tuple[str, ...]
    labels: tuple[str, ...]

    def to_record(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "services": list(self.services), "labels": list(self.labels)}

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Handoff:
        return cls(
            _str(r["deployment"]),
            tuple(_str(x) for x in r["services"]),
            tuple(_str(x) for x in r["labels"]),
        )


@dataclass(frozen=True)
class Wave:
    index: int
    nodes: tuple[NodePlan, ...]
    canary: bool = False


@dataclass(frozen=True)
class Target:
    """How to reach the cluster again: a sim name, or a kube context and server."""

    backend: str  # "sim" | "kubernetes"
    name: str
    server: str = ""


@dataclass(frozen=True)
class ClusterSnapshot:
    fingerprint: str
    kube_system_uid: str
    server: str
    nodes: tuple[tuple[str, str], ...]  # (name, uid), sorted by name
    node_config_api: str = "cilium.io/v2"  # the CiliumNodeConfig apiVersion the cluster serves

    @functools.cached_property
    def nodes_by_name(self) -> dict[str, str]:
        """name -> UID of every node the cluster had when the plan was made (excluded ones too)."""
        return dict(self.nodes)


@dataclass(frozen=True)
class Plan:
    target: Target
    cluster: ClusterSnapshot
    options: PlanOptions
    waves: tuple[Wave, ...]
    findings: tuple[Finding, ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()  # (node, reason)
    schema: str = SCHEMA

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.BLOCKING)

    @functools.cached_property
    def nodes(self) -> tuple[NodePlan, ...]:
        return tuple(n for w in self.waves for n in w.nodes)

    @functools.cached_property
    def _index(self) -> dict[str, tuple[NodePlan, int]]:
        return {n.name: (n, w.index) for w in self.waves for n in w.nodes}

    def node(self, name: str) -> NodePlan | None:
        found = self._index.get(name)
        return found[0] if found else None

    def wave_of(self, name: str) -> int:
        return self._index[name][1]

    # Computed once: a plan is immutable, and its id names every event of a run (at 5,000
    # nodes the body's canonical JSON takes a tenth of a second or more each time).
    @functools.cached_property
    def checksum(self) -> str:
        return checksum(self._body())

    @functools.cached_property
    def id(self) -> str:
        return self.checksum.split(":", 1)[1][:12]

    def _body(self) -> dict[str, Any]:
        return {
            "target": {
                "backend": self.target.backend,
                "name": self.target.name,
                "server": self.target.server,
            },
            "cluster": {
                "fingerprint": self.cluster.fingerprint,
                "kubeSystemUID": self.cluster.kube_system_uid,
                "server": self.cluster.server,
                "nodes": [{"name": n, "uid": u} for n, u in self.cluster.nodes],
                "ciliumNodeConfigAPI": self.cluster.node_config_api,
            },
            "options": self.options.to_record(),
            "findings": [f.to_record() for f in self.findings],
            "excluded": [{"name": n, "reason": r} for n, r in self.excluded],
            "waves": [
                {
                    "index": w.index,
                    "canary": w.canary,
                    "nodes": [
                        {
                            "name": n.name,
                            "controlPlane": n.control_plane,
                            "keepCordoned": n.keep_cordoned,
                            **({"surge": list(n.surge)} if n.surge else {}),
                            **({"handoff": [h.to_record() for h in n.handoff]} if n.handoff else {}),
                            "steps": [{"id": s.id, "kind": s.kind.value} for s in n.steps],
                        }
                        for n in w.nodes
                    ],
                }
                for w in self.waves
            ],
        }

    def to_record(self) -> dict[str, Any]:
        body = self._body()
        if "checksum" not in self.__dict__:  # the first record of a new plan: one body, not two
            self.__dict__["checksum"] = checksum(body)
        return {
            "apiVersion": self.schema,
            "kind": KIND,
            "metadata": {"id": self.id, "checksum": self.checksum},
            **body,
        }

    @classmethod
    def from_record(cls, record: Any) -> Plan:
        """Parse and verify a plan record; every defect is a one-line ``BadInput``."""
        if not isinstance(record, Mapping):
            raise BadInput("plan file is not a MigrationPlan document (expected a mapping)")
        if record.get("kind") != KIND:
            raise BadInput(f"plan file is not a MigrationPlan (kind: {record.get('kind')!r})")
        if record.get("apiVersion") != SCHEMA:
            raise BadInput(
                f"plan schema {record.get('apiVersion')!r} is not supported (this version "
                f"reads {SCHEMA}); re-run 'cni-migrate plan'"
            )
        try:
            plan = _parse_body(record)
            declared = record["metadata"]["checksum"]
        except BadInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Any structural defect (missing key, wrong type, bad enum) is bad input.
            raise BadInput(f"plan file is malformed: {_describe(exc)}") from exc
        if declared != plan.checksum:
            raise BadInput("plan file checksum does not match its content (edited by hand?)")
        problems = unsound(plan)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BadInput(
                f"plan file is unsound: {problems[0]}{more}; make a new plan with 'cni-migrate plan' "
                "instead of editing one"
            )
        return plan


def unsound(plan: Plan) -> list[str]:
    """Why a plan is not one the planner could have made, most telling first; empty for a
    sound plan. The checksum proves a plan file is the one written, not that it is right: a
    file edited and summed again by hand could drop a node from its waves (the run would
    call itself complete with that node still on Calico), list one twice, or take more
    nodes out of service at once than its options allow. Pure; every plan
    ``migrate.planner.build_plan`` makes passes (tests/unit/test_plan_structure.py)."""
    problems: list[str] = []
    options = plan.options
    snapshot = plan.cluster.nodes_by_name
    excluded = dict(plan.excluded)

    # Every node of the snapshot once: in one wave slot, or excluded.
    where: dict[str, int] = {}
    for wave in plan.waves:
        for node in wave.nodes:
            if node.name not in where:
                where[node.name] = wave.index
            elif where[node.name] == wave.index:
                problems.append(f"node {node.name} is listed twice in wave {wave.index}")
            else:
                problems.append(f"node {node.name} is listed twice (waves {where[node.name]} and {wave.index})")
    problems += [
        f"node {n} is listed twice in the cluster snapshot"
        for n, count in Counter(n for n, _ in plan.cluster.nodes).items()
        if count > 1
    ]
    problems += [
        f"node {n} is excluded twice" for n, count in Counter(n for n, _ in plan.excluded).items() if count > 1
    ]
    for name, index in where.items():
        if name not in snapshot:
            problems.append(f"node {name} of wave {index} is not in the cluster snapshot")
        elif name in excluded:
            problems.append(f"node {name} of wave {index} is also excluded ({excluded[name]})")
    problems += [f"excluded node {n} is not in the cluster snapshot" for n in excluded if n not in snapshot]
    problems += [
        f"node {n} is in the cluster snapshot but in no wave and not excluded"
        for n in snapshot
        if n not in where and n not in excluded
    ]
    problems += [
        f"option excludeNodes names {n}, which the plan does not exclude"
        for n in options.exclude_nodes
        if n not in excluded
    ]

    # Waves 1..n, none empty, none taking more nodes out of service than the options allow.
    misnumbered = next((i for i, w in enumerate(plan.waves, 1) if w.index != i), None)
    if misnumbered is not None:
        problems.append(
            f"waves are not numbered 1..{len(plan.waves)} in order "
            f"(wave {misnumbered} is numbered {plan.waves[misnumbered - 1].index})"
        )
    for wave in plan.waves:
        if not wave.nodes:
            problems.append(f"wave {wave.index} has no nodes")
        elif not wave.canary and len(wave.nodes) > options.max_unavailable:
            problems.append(
                f"wave {wave.index} has {len(wave.nodes)} nodes, more than maxUnavailable {options.max_unavailable}"
            )

    # The canary: wave 1, workers only, at most ``canary`` of them (not bound by
    # maxUnavailable: --canary 3 --max-unavailable 1 makes a canary wave of 3).
    canaries = [w for w in plan.waves if w.canary]
    if len(canaries) > 1:
        problems.append(f"waves {', '.join(str(w.index) for w in canaries)} are all canary waves; only wave 1 may be")
    elif canaries and canaries[0] is not plan.waves[0]:
        problems.append(f"wave {canaries[0].index} is the canary wave; only wave 1 may be")
    for wave in canaries:
        if len(wave.nodes) > options.canary:
            problems.append(
                f"canary wave {wave.index} has {len(wave.nodes)} node(s), more than option canary {options.canary}"
            )
        problems += [
            f"control-plane node {n.name} is in the canary wave {wave.index}; the canary is workers only"
            for n in wave.nodes
            if n.control_plane
        ]
    if options.canary and not canaries and any(not n.control_plane for n in plan.nodes):
        problems.append(f"option canary is {options.canary} but no wave is a canary wave")

    # The control plane last, one node per wave.
    first_control: int | None = None
    for wave in plan.waves:
        control = [n.name for n in wave.nodes if n.control_plane]
        if control and len(wave.nodes) > 1:
            problems.append(
                f"control-plane node {control[0]} shares wave {wave.index} with other nodes; "
                "control-plane nodes go one per wave"
            )
        if control and first_control is None:
            first_control = wave.index
        elif not control and wave.nodes and first_control is not None:
            problems.append(
                f"wave {wave.index} of workers comes after control-plane wave {first_control}; "
                "the control plane goes last"
            )

    # Surges: only when the options allow them, each a namespace/name.
    for node in plan.nodes:
        if node.surge and not options.surge:
            problems.append(f"node {node.name} surges {node.surge[0]} but option surge is off")
        problems += [f"node {node.name} surges {d!r}, not a namespace/name" for d in node.surge if d.count("/") != 1]
        if node.handoff and not options.handoff:
            problems.append(f"node {node.name} hands off {node.handoff[0].deployment} but option handoff is off")
        for h in node.handoff:
            if h.deployment.count("/") != 1 or not h.services or not h.labels:
                problems.append(
                    f"node {node.name} hands off {h.deployment!r} without a namespace/name, Service or label"
                )
    return problems


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _parse_body(r: Mapping[str, Any]) -> Plan:
    waves = []
    for w in r["waves"]:
        nodes = []
        for n in w["nodes"]:
            node = NodePlan(
                name=_str(n["name"]),
                control_plane=_flag(n["controlPlane"], "controlPlane"),
                keep_cordoned=_flag(n["keepCordoned"], "keepCordoned"),
                surge=tuple(_str(d) for d in n.get("surge", ())),
                handoff=tuple(Handoff.from_record(h) for h in n.get("handoff", ())),
            )
            declared = [(s["id"], StepKind(s["kind"])) for s in n["steps"]]
            if declared != [(s.id, s.kind) for s in node.steps]:
                raise BadInput(f"plan file lists unexpected steps for node {node.name}")
            nodes.append(node)
        waves.append(
            Wave(index=_whole(w["index"], "wave index"), nodes=tuple(nodes), canary=_flag(w["canary"], "wave canary"))
        )
    c = r["cluster"]
    t = r["target"]
    if ClusterIdentity(_str(c["kubeSystemUID"]), str(c["server"])).fingerprint != c["fingerprint"]:
        raise BadInput("plan file's cluster fingerprint does not match its kubeSystemUID and server (edited?)")
    return Plan(
        target=Target(backend=_str(t["backend"]), name=_str(t["name"]), server=str(t["server"])),
        cluster=ClusterSnapshot(
            fingerprint=_str(c["fingerprint"]),
            kube_system_uid=_str(c["kubeSystemUID"]),
            server=str(c["server"]),
            nodes=tuple((_str(n["name"]), _str(n["uid"])) for n in c["nodes"]),
            node_config_api=_str(c["ciliumNodeConfigAPI"]),
        ),
        options=PlanOptions.from_record(r["options"]),
        waves=tuple(waves),
        findings=tuple(Finding.from_record(f) for f in r["findings"]),
        excluded=tuple((_str(e["name"]), str(e["reason"])) for e in r["excluded"]),
    )


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _whole(value: Any, what: str) -> int:
    """A whole number as YAML writes one: not a bool, a float (``.inf`` included) or a string,
    which ``int()`` would turn into another number, or into an OverflowError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"plan file is malformed: {what} must be a whole number, not {value!r}")
    return value


def _flag(value: Any, what: str) -> bool:
    """true or false as YAML writes them: ``bool("false")`` would be True."""
    if not isinstance(value, bool):
        raise BadInput(f"plan file is malformed: {what} must be true or false, not {value!r}")
    return value


def checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _values_record(values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise BadInput("plan's installCilium.values is not a mapping of Helm values")
    return dict(values)
