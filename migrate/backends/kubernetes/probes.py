"""The validation probes on a real cluster: what each check observes (helper pods on the
node and its peers, the CiliumNode, the agent pod), judged by ``migrate.verdicts``.

``Probes`` is one class of some 320 lines on purpose: each method is one check's
observation, they share the probe pods' lifecycle and one cached cilium-config per node,
and the checks read best side by side with the verdicts they feed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kubernetes import client

from migrate import verdicts
from migrate.backends.kubernetes.helpers import FOR_LABEL, NODE_LABEL, ROLE_LABEL, TASK_LABEL
from migrate.backends.kubernetes.mapping import container_results, node_info, termination_message
from migrate.backends.rbac import TOOL_NAMESPACE
from migrate.errors import BadInput, ClusterError, NotFound
from migrate.model import MIGRATION_LABEL
from migrate.ports import ProbeResult

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster

T = TypeVar("T")
PEER_PAGE = 20  # nodes read at a time while looking for a cross-node probe peer

PROBE_PORT = 8080

# Validation checks that one probe pod on the node answers together (``probe_many``).
POD_CHECKS = ("pod-network", "dns", "connectivity")

CHECK_TASKS = ("pod-checks", "cross-node-server", "cross-node-client")  # their helper pods' tasks

PEER_LABEL = "cni-migrate.io/peer-of"  # probe servers on peer nodes, behind the probe Service

POLICY_LABEL = "cni-migrate.io/policy-probe"  # the policy probe's pods and policies: its run id

POLICY_ROLE = "cni-migrate.io/policy-role"  # server, allowed or denied

K = TypeVar("K")


def together(fn: Callable[[K], T], keys: Sequence[K]) -> dict[K, T]:
    """``fn`` for each key at once, each in a thread of its own (a helper pod's start-up is
    waiting on the API server and the node, not work here); every call is waited for, then the
    first error, if any, is raised."""
    if len(keys) < 2:
        return {key: fn(key) for key in keys}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(keys), thread_name_prefix="probe") as pool:
        futures = {key: pool.submit(fn, key) for key in keys}
        concurrent.futures.wait(futures.values())
    return {key: future.result() for key, future in futures.items()}


class Probes:
    """Each validation check's observations, on the node and its peers."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.rest, self.core, self.helpers = cluster.rest, cluster.core, cluster.helpers

    def first_ready_node(self, selector: str, exclude: str) -> str | None:
        """The first Ready, schedulable node (by name) matching a label selector, other than
        ``exclude``, reading small pages until one is found: a constant cost per validated node
        in the usual case, where listing every node would make validation O(nodes) each time.
        Cordoned nodes are left out: the others of a wave may be mid-swap, no peer to judge by."""
        token = None
        while True:
            page = self.rest.json(
                f"list nodes {selector}", self.core.list_node, label_selector=selector, limit=PEER_PAGE, _continue=token
            )
            for item in page.get("items") or []:
                candidate = node_info(item)
                if candidate.name != exclude and candidate.ready and not candidate.unschedulable:
                    return candidate.name
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return None

    def cross_node(self, node: str, timeout: float) -> ProbeResult:
        """Probe servers on the node and on one Calico and one Cilium peer node, a Service in
        front of the peers, and connections node -> each peer, each peer -> node, node ->
        Service. The canary has only Calico peers, the last node only Cilium ones."""
        cilium = self.first_ready_node(f"{MIGRATION_LABEL}=true", node)
        calico = self.first_ready_node(f"{MIGRATION_LABEL}!=true", node)
        peers = {name: cni for name, cni in ((calico, "calico"), (cilium, "cilium")) if name}
        if not peers:
            return verdicts.cross_node([])
        server = {
            "name": "probe",
            "image": self.cluster.probe_image,
            "command": ["/agnhost", "netexec", f"--http-port={PROBE_PORT}"],
            "ports": [{"containerPort": PROBE_PORT}],
        }
        service = f"cni-migrate-peers-{uuid.uuid4().hex[:8]}"
        service_made = False
        try:
            # The servers start together, then the clients together, each set waited for with
            # one watch: a node's check waits for two pod start-ups, not one per pod. The pods
            # go with the node's other check pods (``checks_cleared``).
            created = together(
                lambda name: self.helpers.start(
                    name,
                    "probe",
                    "cross-node-server",
                    server,
                    timeout,
                    labels={PEER_LABEL: node} if name != node else {},
                    for_node=node,
                    clean=False,
                ),
                [node, *peers],
            )
            running = self.helpers.wait(list(created.values()), timeout, until_running=True)
            started = dict(zip(created, running, strict=True))
            ips = {name: (pod.get("status") or {}).get("podIP", "") for name, pod in started.items()}
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "labels": {ROLE_LABEL: "probe", NODE_LABEL: node}},
                "spec": {
                    "selector": {ROLE_LABEL: "probe", PEER_LABEL: node},
                    "ports": [{"port": PROBE_PORT, "targetPort": PROBE_PORT, "protocol": "TCP"}],
                },
            }
            made = self.rest.json(
                f"create service {service}", self.core.create_namespaced_service, TOOL_NAMESPACE, body
            )
            service_made = True
            routes = [(node, ips[p], f"{node}->{p} ({cni})") for p, cni in peers.items()]
            routes += [(p, ips[node], f"{p} ({cni})->{node}") for p, cni in peers.items()]
            routes.append((node, made["spec"]["clusterIP"], f"{node}->Service {made['spec']['clusterIP']}"))

            # One client pod per source node, a container per connection from there.
            def client_pod(source: str) -> dict[str, Any]:
                containers = [
                    {
                        "name": f"route-{i}",
                        "image": self.cluster.probe_image,
                        "command": ["/agnhost", "connect", f"{ip}:{PROBE_PORT}", "--timeout=5s"],
                    }
                    for i, (start, ip, _) in enumerate(routes)
                    if start == source
                ]
                return self.helpers.start(
                    source, "probe", "cross-node-client", containers, timeout, for_node=node, clean=False
                )

            clients = together(client_pod, list(dict.fromkeys(source for source, _, _ in routes)))
            finished: dict[str, tuple[bool, str]] = {}
            for done in self.helpers.wait(list(clients.values()), timeout, until_running=False):
                finished.update(container_results(done))
            connections = [
                verdicts.Connection(label, *finished.get(f"route-{i}", (False, "")))
                for i, (_, _, label) in enumerate(routes)
            ]
        finally:
            if service_made:
                self.helpers.delete(service, "service")
        return verdicts.cross_node(connections)

    def policy_probe(self, timeout: float) -> ProbeResult:
        """After finalize: does Cilium enforce NetworkPolicy? A server pod behind two policies
        of this probe alone (deny all ingress to its pods; allow the server from the
        "allowed" client on the probe port), then two clients: the allowed one must connect
        and the denied one must not. Policies first, so every probe pod starts under them."""
        check = "policy-enforcement"
        expected = "the allowed client connects and the denied client is blocked"
        node = self.first_ready_node(f"{MIGRATION_LABEL}=true", "") or self.first_ready_node("", "")
        if node is None:
            return ProbeResult(check, False, "no Ready node to run the probe on", expected)
        run = uuid.uuid4().hex[:8]
        ours = {POLICY_LABEL: run}
        policies = [
            {"podSelector": {"matchLabels": ours}, "policyTypes": ["Ingress"]},
            {
                "podSelector": {"matchLabels": {**ours, POLICY_ROLE: "server"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {**ours, POLICY_ROLE: "allowed"}}}],
                        "ports": [{"port": PROBE_PORT, "protocol": "TCP"}],
                    }
                ],
            },
        ]
        net = client.NetworkingV1Api(self.cluster.api)
        made: list[str] = []
        kept: list[str] = []
        outcomes: dict[str, tuple[bool, str]] = {}
        try:
            self.cluster.ensure_namespace()
            for name, spec in zip((f"cni-migrate-deny-{run}", f"cni-migrate-allow-{run}"), policies, strict=True):
                body = {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": name, "labels": {ROLE_LABEL: "probe", **ours}},
                    "spec": spec,
                }
                self.rest.call(
                    f"create networkpolicy {name}", net.create_namespaced_network_policy, TOOL_NAMESPACE, body
                )
                made.append(name)
            server = {
                "name": "probe",
                "image": self.cluster.probe_image,
                "command": ["/agnhost", "netexec", f"--http-port={PROBE_PORT}"],
                "ports": [{"containerPort": PROBE_PORT}],
            }
            started = self.helpers.run(
                node,
                "probe",
                "policy-server",
                server,
                timeout,
                until_running=True,
                keep=kept,
                labels={**ours, POLICY_ROLE: "server"},
            )
            ip = (started.get("status") or {}).get("podIP", "")
            # The allowed client once more after the denied one: the server still answers, so the
            # denial was the policy's and not a server gone away.
            for role in ("allowed", "denied", "allowed-again"):
                connect = {
                    "name": "probe",
                    "image": self.cluster.probe_image,
                    "command": ["/agnhost", "connect", f"{ip}:{PROBE_PORT}", "--timeout=5s"],
                }
                label = role.removesuffix("-again")
                done = self.helpers.run(
                    node, "probe", "policy-client", connect, timeout, labels={**ours, POLICY_ROLE: label}
                )
                outcomes[role] = (done["status"]["phase"] == "Succeeded", termination_message(done))
        finally:
            # Every clean-up is tried, and none hides the error that got us here.
            for name in kept:
                with contextlib.suppress(ClusterError):
                    self.helpers.delete(name)
            for name in made:
                with contextlib.suppress(ClusterError):
                    self.rest.call(
                        f"delete networkpolicy {name}", net.delete_namespaced_network_policy, name, TOOL_NAMESPACE
                    )
        return verdicts.policy_enforcement(
            node, *(verdicts.Connection(role, *outcomes[role]) for role in ("allowed", "denied", "allowed-again"))
        )

    def cilium_pool(self) -> str:
        return self.cluster.cilium_config().get("cluster-pool-ipv4-cidr", "")

    def clear_checks(self, node: str) -> None:
        """Delete every helper pod of this node's checks, wherever it runs, with one request:
        before the checks, what an earlier attempt left (a killed run, an answer lost); after
        them, their own. Only one validation of a node runs at a time."""
        self.cluster.ensure_namespace()
        self.rest.call(
            f"delete probe pods for {node}",
            self.core.delete_collection_namespaced_pod,
            TOOL_NAMESPACE,
            label_selector=f"{ROLE_LABEL}=probe,{FOR_LABEL}={node},{TASK_LABEL} in ({','.join(CHECK_TASKS)})",
            grace_period_seconds=0,
        )

    @contextlib.contextmanager
    def checks_cleared(self, node: str) -> Iterator[None]:
        """Checks with helper pods run inside: the node's check pods are cleared before and
        after them, however they end."""
        self.clear_checks(node)
        try:
            yield
        finally:
            self.clear_checks(node)

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        if check in POD_CHECKS or check == "cross-node":
            with self.checks_cleared(node):
                return self.observe(node, check, timeout)
        return self.observe(node, check, timeout)

    def observe(self, node: str, check: str, timeout: float, pool: Callable[[], str] | None = None) -> ProbeResult:
        """``pool``: Cilium's cluster pool, read once for all the checks of one ``probe_many``."""
        pool = pool or self.cilium_pool
        if check == "cilium-agent-ready":
            agent = self.cluster.cilium_agent(node)
            return verdicts.agent_ready(agent.name if agent else None, bool(agent and agent.ready))
        if check in POD_CHECKS:
            return self.pod_checks(node, (check,), timeout, pool)[0]
        if check == "cilium-node":
            try:
                obj: Any = self.rest.call(
                    f"get CiliumNode {node}",
                    self.cluster.custom.get_cluster_custom_object,
                    "cilium.io",
                    "v2",
                    "ciliumnodes",
                    node,
                )
            except NotFound:
                return verdicts.cilium_node(node, None, pool())
            cidrs = ((obj.get("spec") or {}).get("ipam") or {}).get("podCIDRs") or []
            return verdicts.cilium_node(node, cidrs, pool())
        if check == "cross-node":
            return self.cross_node(node, timeout)
        raise BadInput(f"unknown validation check {check!r}")

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        """``checks`` in order, up to the first that fails. A run of the checks one probe pod
        answers (``POD_CHECKS``) shares that pod, and that pod runs beside the cross-node
        check's pods when both are asked: a node's validation waits for two pod start-ups in
        all (servers and in-pod checks, then clients), not one after another."""
        results: list[ProbeResult] = []
        pool = functools.cache(self.cilium_pool)  # cilium-config once, not once per check that needs it
        for with_pods, run in itertools.groupby(checks, key=lambda c: c in POD_CHECKS or c == "cross-node"):
            group = list(run)
            if not with_pods:
                for check in group:
                    results.append(self.observe(node, check, timeout, pool))
                    if not results[-1].ok:
                        return results
                continue
            in_pod = tuple(c for c in group if c in POD_CHECKS)
            batches = ([in_pod] if in_pod else []) + [(c,) for c in group if c not in POD_CHECKS]
            with self.checks_cleared(node):
                answered = together(
                    lambda batch: (
                        self.pod_checks(node, batch, timeout, pool)
                        if batch[0] in POD_CHECKS
                        else [self.observe(node, batch[0], timeout, pool)]
                    ),
                    batches,
                )
            by_check = {r.check: r for answers in answered.values() for r in answers}
            for check in group:
                results.append(by_check[check])
                if not results[-1].ok:
                    return results
        return results

    def pod_checks(
        self, node: str, checks: Sequence[str], timeout: float, pool: Callable[[], str] | None = None
    ) -> list[ProbeResult]:
        """``pod-network``, ``dns`` and ``connectivity`` (any of them) from one probe pod on the
        node: a container per command (``dns`` runs nslookup in the node image, ``connectivity``
        agnhost connect to the API server's Service) and, for ``pod-network``, the address the
        pod got. With ``pod-network`` alone the pod only has to run."""
        pool = pool or self.cilium_pool
        commands = {
            "dns": {"name": "dns", "image": self.cluster.node_image, "command": ["nslookup", verdicts.DNS_NAME]},
            "connectivity": {
                "name": "connectivity",
                "image": self.cluster.probe_image,
                "command": ["/agnhost", "connect", verdicts.API_TARGET, "--timeout=5s"],
            },
        }
        containers = [commands[c] for c in checks if c in commands]
        # The pod is kept: ``checks_cleared`` deletes it with the node's other check pods.
        if containers:
            done = self.helpers.run(node, "probe", "pod-checks", containers, timeout, keep=[], clean=False)
        else:
            pause = {"name": "pod-network", "image": self.cluster.probe_image, "command": ["/agnhost", "pause"]}
            done = self.helpers.run(
                node, "probe", "pod-checks", pause, timeout, until_running=True, keep=[], clean=False
            )
        finished = container_results(done)
        results = []
        for check in checks:
            if check == "pod-network":
                results.append(verdicts.pod_network((done.get("status") or {}).get("podIP", ""), pool()))
            elif check == "dns":
                results.append(verdicts.dns(*finished.get("dns", (False, "no status"))))
            else:
                results.append(verdicts.connectivity(*finished.get("connectivity", (False, "no status"))))
        return results
