"""A stand-in for what runs *on* a node, for kwok nodes that run no containers.

kwok fakes kubelets: pods go Running, but nothing executes. cni-migrate's node tasks,
probes and the Cilium agent's effect on ``/etc/cni/net.d`` need a node, so this agent,
run by the tests beside the lab, plays that part through the real API:

- node-task pods (label ``cni-migrate.io/role=node-task``): apply the task to the node's
  simulated ``/etc/cni/net.d`` and finish the pod (Succeeded + termination message);
- probe pods: the node's probe pod (``pod-checks``) gets an address from the node's current
  CNI pool, and its ``dns`` and ``connectivity`` containers succeed once the node is on
  Cilium, each unless the test injected a failure of its check for the node; the
  policy probe's clients connect as the NetworkPolicies would let them once cilium-config
  enables policy (a model of the dataplane over the real API objects);
- Cilium agent pods: a new agent on a node with the migration label rewrites the node's
  CNI directory as Cilium in migration mode does (``migrate.cniconf``);
- starting pods: the lab runs kwok without its pod stages, and this agent starts every
  pod instead, with an address from the node's current CNI: Calico's pool, or Cilium's
  once the node was swapped (so "which pods still need a restart" means the same here as
  on a real cluster);
- the traffic watch's probers (``migrate.traffic``): every half second, each running prober
  pod's report ConfigMap is written as its script would, with failed requests in every
  second while the node is on Cilium and the test makes its ``traffic-watch`` check fail;
- removing terminating pods: ``delete_delay`` seconds after a scheduled pod is marked for
  deletion, the agent deletes it with grace 0 and a UID precondition, as a kubelet does.
  kwok's pod-delete stage deleted by name, and a stale event could make it delete a
  StatefulSet's replacement pod (same name, new UID): a disruption no PDB records.
  The delay is never zero by default (``GRACE``): a kubelet takes a moment to stop a pod's
  containers, and in that moment the disruption controller sees the pod terminating and
  drops it from its PDB's ``disruptedPods``. A pod gone at once is replaced, for a
  StatefulSet, by a pod of the same name that is not terminating, so the controller keeps
  the entry until its 2-minute timeout and the PDB allows no disruption meanwhile: a
  2-minute stall of the next drain that a real kubelet's grace period does not cause
  (seen in the 10-node test: 136 s instead of 9-13 s, one run in six).

- a stopped node (``stop``, with the lab's ``stop_node``): nothing runs on it, as on a machine
  that is off: its pods are neither started, answered nor removed; ``start`` takes up what
  waited for it (a Cilium agent started on it then rewrites its CNI directory, as at boot).

kwok's pod stages ignore pods with the role label (see tools/kube/manifests/kwok-stages.yaml),
so nobody races this agent for their status. The node's files live in this process.
Start the agent before creating workloads, so every pod is started by it.

Like real kubelets, nodes do not wait for each other: the watches only pick out the pods
that need an answer, and a pool of workers answers them, one node at a time per node (its
lock: an agent start and a pod start on one node never interleave) and many nodes at once.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config, watch

from migrate import traffic
from migrate.backends.kubernetes.helpers import NODE_LABEL, ROLE_LABEL, TASK_LABEL
from migrate.cniconf import CALICO_CONF, after_agent_start, after_restore, cni_from_files
from migrate.model import MIGRATION_LABEL, Cni

NAMESPACE = "cni-migrate"
# A watch ends on the server's side after this long and is opened again from its version.
WATCH_SECONDS = 30
GRACE = 0.5  # seconds a terminating pod lingers before the agent removes it (see above)
RETRIES = 300  # answers of one pod, a second apart, before the agent gives up on it (each logged)


class NodeAgent:
    def __init__(
        self,
        kubeconfig: str,
        cilium_pool: str = "10.245.0.0/16",
        calico_pool: str = "192.168.0.0/16",
        *,
        delete_delay: float = GRACE,
        workers: int = 8,
    ):
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = workers + 8  # the workers, the watches, the probers
        api = client.ApiClient(configuration)
        # Every request of this agent is bounded, as a kubelet's are: a call caught by an API
        # server restart fails (and the next listing retries it) instead of hanging the node.
        # Watches end on the server's side every 2 s, well inside the read timeout.
        api.rest_client.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(connect=5, read=30)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(self.core.api_client)
        self.cilium_pool = ipaddress.ip_network(cilium_pool)
        self.calico_pool = ipaddress.ip_network(calico_pool)
        self.files: dict[str, list[str]] = defaultdict(lambda: [CALICO_CONF])
        self.failures: dict[str, set[str]] = defaultdict(set)
        self.reboots: dict[str, int] = defaultdict(int)
        self.reboot_pods: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.server_ips: dict[str, str] = {}  # cross-node probe server IP -> its node
        self.policy_servers: dict[str, dict[str, str]] = {}  # policy probe server IP -> its labels
        self.ignore_policy = False  # True: a dataplane that lets everything through
        self.seen_agents: set[str] = set()
        self.handled: set[str] = set()
        self.log: list[tuple[str, str, str]] = []  # (node, what, detail)
        self._lock = threading.RLock()  # the shared records below, held only briefly
        self._node_locks: dict[str, threading.RLock] = defaultdict(threading.RLock)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nodeagent")
        self._inflight: set[str] = set()  # answer/pod UID, queued or being answered
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ips: dict[str, int] = defaultdict(int)
        self._node_ips: dict[str, str] = {}
        self.started: set[str] = set()
        self.delete_delay = delete_delay
        self.terminating: set[str] = set()  # UIDs whose removal is scheduled or done
        self.down: set[str] = set()  # nodes stopped by the test: nothing on them runs

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> NodeAgent:
        for target in (self._watch_helpers, self._watch_agents, self._watch_pods, self._probe_traffic):
            t = threading.Thread(target=target, daemon=True, name=target.__name__)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        # A thread in a quiet watch sees the stop only when the watch ends (up to
        # WATCH_SECONDS): waiting for it held every test's teardown for 15 s. The threads are
        # daemons that do nothing once stopped, so give them a moment, not the whole watch.
        deadline = time.monotonic() + 1
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, uid: str, fn: Callable[[dict[str, Any]], None], pod: dict[str, Any], attempt: int = 1) -> None:
        """Answer a pod on the pool, once at a time per pod (an event that sees it again
        meanwhile adds nothing); a failed answer (the API away) is tried again a second later."""
        key = f"{fn.__name__}/{uid}"  # a Cilium agent pod is both started and applied
        with self._lock:
            if key in self._inflight or self._stop.is_set():
                return
            self._inflight.add(key)

        def answer() -> None:
            failed = False
            try:
                if not self._stopped(pod):  # stopped since it was queued: its start takes it up
                    fn(pod)
            except Exception as exc:  # noqa: BLE001 - a test helper: answer again in a second
                self.log.append(("-", f"{fn.__name__}-error", repr(exc)[:300]))
                failed = True
            finally:
                with self._lock:
                    self._inflight.discard(key)
            if failed and attempt < RETRIES and not self._stop.is_set():
                timer = threading.Timer(1.0, self._submit, args=(uid, fn, pod, attempt + 1))
                timer.daemon = True
                timer.start()

        try:
            self._pool.submit(answer)
        except RuntimeError:  # shut down: stopping
            with self._lock:
                self._inflight.discard(key)

    def stop_node(self, node: str) -> None:
        """The node's machine is off: from now on nothing of it runs (see the docstring)."""
        with self._lock:
            self.down.add(node)

    def start_node(self, node: str) -> None:
        """The node's machine is back: what waited for it is taken up, as a kubelet that
        starts lists its pods (those created, deleted or waiting meanwhile)."""
        with self._lock:
            self.down.discard(node)
        listing = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}", _preload_content=False)
        for pod in json.loads(listing.data).get("items") or []:
            self._on_pod(pod)
            labels = pod["metadata"].get("labels") or {}
            if ROLE_LABEL in labels:
                self._on_helper(pod)
            elif pod["metadata"]["namespace"] == "kube-system" and labels.get("k8s-app") == "cilium":
                self._on_agent(pod)

    def _stopped(self, pod: dict[str, Any]) -> bool:
        """The pod's node is stopped: nothing is done for it now (``start_node`` looks again)."""
        node = (pod.get("spec") or {}).get("nodeName")
        with self._lock:
            return node in self.down

    def _node_lock(self, node: str) -> threading.RLock:
        with self._lock:
            return self._node_locks[node]

    def cni(self, node: str) -> Cni:
        with self._lock:
            return cni_from_files(self.files[node])

    # -- watches ---------------------------------------------------------------------------------
    def _loop(self, fn: Any, *args: Any, handler: Any, **kw: Any) -> None:
        """List once, then watch from that resourceVersion, as an informer does; list
        again only when the watch's version expired (410) or the API failed. (Listing
        every few seconds instead made this agent, not the tool, the API server's biggest
        client at 30,000 pods.)"""
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listing = json.loads(fn(*args, _preload_content=False, **kw).data)
                    for item in listing.get("items") or []:
                        handler(item)
                    version = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                for event in w.stream(
                    fn, *args, resource_version=version, timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True, **kw
                ):
                    if self._stop.is_set():
                        w.stop()
                        return
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        version = ""  # expired: list again
                        break
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handler(obj)
            except Exception as exc:  # noqa: BLE001 - a test helper: keep serving across API hiccups
                self.log.append(("-", "loop-error", repr(exc)[:300]))
                version = ""
                if self._stop.wait(0.2):
                    return

    # -- the traffic watch's probers -------------------------------------------------------------
    def _probe_traffic(self) -> None:
        counts: dict[str, tuple[int, int, list[tuple[int, int, int]]]] = {}  # pod uid -> requests, failed, buckets
        while not self._stop.wait(0.5):
            try:
                pods = self.core.list_namespaced_pod(
                    traffic.NAMESPACE, label_selector=f"{traffic.APP_LABEL}={traffic.NAME}"
                ).items
            except Exception as exc:  # noqa: BLE001 - a test helper: keep probing across API hiccups
                self.log.append(("-", "traffic-error", repr(exc)[:300]))
                continue
            now = int(datetime.now(UTC).timestamp())
            for pod in pods:
                if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
                    continue
                node, uid = pod.spec.node_name, pod.metadata.uid
                requests, failed, buckets = counts.get(uid, (0, 0, []))
                # A node made to fail its traffic check breaks traffic once it is on Cilium.
                broken = bool({traffic.CHECK, "*"} & self.failures[node]) and self.cni(node) is Cni.CILIUM
                requests += 2
                if broken:
                    failed += 2
                    buckets = [*buckets, (now, 2, 0)][-traffic.KEEP_BUCKETS :]
                counts[uid] = (requests, failed, buckets)
                report = traffic.Report(node, now, requests, failed, tuple(buckets), pod.metadata.name)
                self._write_report(node, report.to_data())

    def _write_report(self, node: str, data: dict[str, str]) -> None:
        name = f"traffic-{node}"
        try:
            self.core.patch_namespaced_config_map(name, traffic.NAMESPACE, {"data": data})
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                self.log.append((node, "traffic-error", repr(exc)[:300]))
                return
            body = {"metadata": {"name": name, "labels": {traffic.REPORT_LABEL: "true"}}, "data": data}
            try:
                self.core.create_namespaced_config_map(traffic.NAMESPACE, body)
            except client.exceptions.ApiException as again:
                if again.status != 409:  # written meanwhile: the next round patches it
                    self.log.append((node, "traffic-error", repr(again)[:300]))

    def _watch_helpers(self) -> None:
        self._loop(self.core.list_namespaced_pod, NAMESPACE, handler=self._on_helper, label_selector=ROLE_LABEL)

    def _watch_agents(self) -> None:
        self._loop(
            self.core.list_namespaced_pod, "kube-system", handler=self._on_agent, label_selector="k8s-app=cilium"
        )

    def _watch_pods(self) -> None:
        self._loop(self.core.list_pod_for_all_namespaces, handler=self._on_pod)

    def _on_pod(self, pod: dict[str, Any]) -> None:
        if self._stopped(pod):
            return
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            self._terminate(pod)
        elif (
            spec.get("nodeName")
            and status.get("phase", "Pending") == "Pending"
            and ROLE_LABEL not in (meta.get("labels") or {})
            and meta["uid"] not in self.started
        ):
            self._submit(meta["uid"], self._address, pod)

    def _on_helper(self, pod: dict[str, Any]) -> None:
        if self._stopped(pod):
            return
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Running", "Succeeded", "Failed"):
            return
        if meta["uid"] not in self.handled:
            self._submit(meta["uid"], self._helper, pod)

    def _on_agent(self, pod: dict[str, Any]) -> None:
        if self._stopped(pod):
            return
        meta = pod["metadata"]
        if (
            (pod.get("spec") or {}).get("nodeName")
            and not meta.get("deletionTimestamp")
            and meta["uid"] not in self.seen_agents
        ):
            self._submit(meta["uid"], self._agent, pod)

    # -- removing terminating pods, as a kubelet does -----------------------------------------
    def _terminate(self, pod: dict[str, Any]) -> None:
        """Remove a scheduled pod marked for deletion after ``delete_delay`` seconds (its
        fake grace period). Grace 0 plus the UID precondition: only this pod object can go,
        never a same-named replacement. The API server removes unscheduled and finished
        pods itself."""
        meta = pod["metadata"]
        if not (pod.get("spec") or {}).get("nodeName"):
            return
        with self._lock:
            if meta["uid"] in self.terminating:
                return
            self.terminating.add(meta["uid"])
        timer = threading.Timer(self.delete_delay, self._remove, args=(meta["namespace"], meta["name"], meta["uid"]))
        timer.daemon = True
        timer.start()

    def _remove(self, namespace: str, name: str, uid: str) -> None:
        options = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid))
        try:
            self.core.delete_namespaced_pod(name, namespace, body=options)
        except client.exceptions.ApiException as exc:
            if exc.status not in (404, 409):  # 404 gone, 409 another pod has the name now
                self._retry_removal(uid, exc)
                return
        except Exception as exc:  # noqa: BLE001 - a test helper: the next listing retries
            self._retry_removal(uid, exc)
            return
        self.log.append((namespace, "removed", f"{name} {uid}"))

    def _retry_removal(self, uid: str, exc: Exception) -> None:
        self.log.append(("-", "remove-error", repr(exc)[:300]))
        with self._lock:
            self.terminating.discard(uid)  # the pod watch's next listing schedules it again

    # -- starting pods: addresses from the node's current CNI --------------------------------
    def _address(self, pod: dict[str, Any]) -> None:
        """Start a Pending pod as the kubelet would (the lab runs kwok without its pod-running
        stage): Running and Ready, with an address from the node's CNI pool at that moment."""
        spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod["metadata"]
        node = spec.get("nodeName")
        if not node or meta.get("deletionTimestamp") or status.get("phase", "Pending") != "Pending":
            return
        if ROLE_LABEL in (meta.get("labels") or {}):
            return  # node tasks and probes are answered by _helper
        with self._node_lock(node):
            if meta["uid"] in self.started:
                return
            if spec.get("hostNetwork"):
                ip = self._node_ip(node)
            else:
                self._sync_agents(node)  # the agent watch may lag behind this one
                ip = self._ip(self.cilium_pool if self.cni(node) is Cni.CILIUM else self.calico_pool, node)
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            conditions = [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ]
            try:
                self.core.patch_namespaced_pod_status(
                    meta["name"],
                    meta["namespace"],
                    {
                        "status": {
                            "phase": "Running",
                            "podIP": ip,
                            "podIPs": [{"ip": ip}],
                            "hostIP": self._node_ip(node),
                            "startTime": now,
                            "conditions": conditions,
                            "containerStatuses": [
                                {
                                    "name": c["name"],
                                    "image": c["image"],
                                    "imageID": "",
                                    "ready": True,
                                    "restartCount": 0,
                                    "started": True,
                                    "state": {"running": {"startedAt": now}},
                                }
                                for c in spec.get("containers") or []
                            ],
                        }
                    },
                )
            except client.exceptions.ApiException as exc:
                if exc.status != 404:  # deleted meanwhile: nothing to start
                    raise
                return
            with self._lock:
                self.started.add(meta["uid"])

    def _node_ip(self, node: str) -> str:
        if node not in self._node_ips:
            addresses = self.core.read_node(node).status.addresses or []
            self._node_ips[node] = next((a.address for a in addresses if a.type == "InternalIP"), "")
        return self._node_ips[node]

    def _ip(self, pool: ipaddress.IPv4Network | ipaddress.IPv6Network, node: str) -> str:
        """The node's next address in ``pool`` (called with the node's lock held)."""
        self._ips[node] += 1
        index = sum(ord(c) for c in node) % 200
        return str(pool.network_address + index * 256 + 2 + self._ips[node] % 250)

    # -- the Cilium agent's effect -------------------------------------------------------------
    def _agent(self, pod: dict[str, Any]) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        uid = pod["metadata"]["uid"]
        if not node or pod["metadata"].get("deletionTimestamp"):
            return
        with self._node_lock(node):
            if uid in self.seen_agents:
                return
            labels = self.core.read_node(node).metadata.labels or {}
            self._ensure_cilium_node(node)
            with self._lock:
                self.seen_agents.add(uid)
                self.files[node] = after_agent_start(self.files[node], labels.get(MIGRATION_LABEL) == "true")
                self.log.append((node, "agent-start", ",".join(self.files[node])))

    def _ensure_cilium_node(self, node: str) -> None:
        """What a Cilium agent (with the operator's cluster-pool IPAM) leaves behind: a
        CiliumNode with a pod CIDR from Cilium's pool."""
        index = sum(ord(c) for c in node) % 200
        body = {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNode",
            "metadata": {"name": node},
            "spec": {"ipam": {"podCIDRs": [f"{self.cilium_pool.network_address + index * 256}/24"]}},
        }
        try:
            self.custom.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", body)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:  # exists already: the first agent on the node made it
                raise

    def _sync_agents(self, node: str) -> None:
        """Apply agents the agent watch has not processed yet (watches race each other)."""
        pods = self.core.list_namespaced_pod(
            "kube-system", label_selector="k8s-app=cilium", field_selector=f"spec.nodeName={node}"
        )
        for pod in pods.items:
            self._agent(client.ApiClient().sanitize_for_serialization(pod))

    # -- node tasks and probes -----------------------------------------------------------------
    def _helper(self, pod: dict[str, Any]) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Running", "Succeeded", "Failed"):
            return
        labels = meta.get("labels") or {}
        node, role, task = labels.get(NODE_LABEL, ""), labels.get(ROLE_LABEL), labels.get(TASK_LABEL, "")
        with self._node_lock(node):
            if meta["uid"] in self.handled:
                return
            try:
                self._sync_agents(node)
            except Exception as exc:  # noqa: BLE001 - answer the pod anyway; the watches catch up
                self.log.append((node, "sync-error", repr(exc)[:300]))
            if role == "node-task":
                self._task(pod, node, task)
            elif role == "probe":
                self._probe(pod, node, task)
            with self._lock:
                self.handled.add(meta["uid"])

    def _task(self, pod: dict[str, Any], node: str, task: str) -> None:
        if task == "reboot":
            # What a reboot shows the API: a new boot ID (kwok keeps the node Ready). The pod is
            # kept as the API server stored it: what a real node would have run.
            self.reboots[node] += 1
            self.reboot_pods[node].append(pod)
            boot = str(uuid.uuid4())
            self.core.patch_node_status(node, {"status": {"nodeInfo": {"bootID": boot}}})
            self.log.append((node, task, boot))
            self._finish(pod, 0, "orderly: systemctl reboot (node agent)")
            return
        if task == "reboot-record":
            self._finish(pod, 0, "orderly: systemctl reboot" if self.reboots[node] else "unknown")
            return
        if task == "restore-calico-cni":
            with self._lock:
                self.files[node] = after_restore(self.files[node])
        message = "\n".join(["."] + [".."] + self.files[node])
        self.log.append((node, task, ",".join(self.files[node])))
        self._finish(pod, 0, message)

    def _start(self, pod: dict[str, Any], node: str, *, cilium: bool) -> str:
        """Mark a probe pod Running and Ready with the next address of a pool; return it."""
        ip = self._ip(self.cilium_pool if cilium else self.calico_pool, node)
        self._patch(
            pod,
            {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    self._container(pod, running=True, index=i) for i in range(len(pod["spec"]["containers"]))
                ],
            },
        )
        return ip

    def _probe(self, pod: dict[str, Any], node: str, check: str) -> None:
        failing = check in self.failures[node] or "*" in self.failures[node]
        self.log.append((node, f"probe:{check}", "fail" if failing else "ok"))
        if check == "pod-checks":
            self._pod_checks(pod, node)
        elif check == "cross-node-server":
            self.server_ips[self._start(pod, node, cilium=self.cni(node) is Cni.CILIUM)] = node
        elif check == "cross-node-client":
            # A container per agnhost connect IP:PORT: it fails when either end is a node whose
            # cross-node check is made to fail; a Service IP (not a probe pod's) depends on the
            # client only.
            outcomes = {}
            for c in pod["spec"]["containers"]:
                target = c["command"][2].rsplit(":", 1)[0]
                ends = [node, self.server_ips.get(target, node)]
                broken = [n for n in ends if {"cross-node", "*"} & self.failures[n]]
                outcomes[c["name"]] = (1, f"dial tcp {target}: i/o timeout") if broken else (0, "connected")
            self._finish_each(pod, outcomes)
        elif check == "policy-server":
            self.policy_servers[self._start(pod, node, cilium=self.cni(node) is Cni.CILIUM)] = pod["metadata"]["labels"]
        elif check == "policy-client":
            target = pod["spec"]["containers"][0]["command"][2].rsplit(":", 1)[0]
            allowed = self._policy_allows(pod["metadata"]["labels"], self.policy_servers.get(target, {}))
            self._finish(pod, 0 if allowed else 1, "connected" if allowed else f"dial tcp {target}: i/o timeout")

    def _pod_checks(self, pod: dict[str, Any], node: str) -> None:
        """The node's probe pod: an address from the node's pool (Calico's when its
        ``pod-network`` check is made to fail), then, unless it only has to run, a finish
        with a result per container (``dns``, ``connectivity``): each works once the node is
        on Cilium, unless its check is made to fail."""

        def failing(check: str) -> bool:
            return bool({check, "*"} & self.failures[node])

        on_cilium = self.cni(node) is Cni.CILIUM
        names = [c["name"] for c in pod["spec"]["containers"]]
        ip = self._start(pod, node, cilium=on_cilium and not failing("pod-network"))
        if names == ["pod-network"]:
            return
        answers = {
            "dns": ("Address: 10.96.0.1", ";; connection timed out"),
            "connectivity": ("connected", "dial tcp 10.96.0.1:443: i/o timeout"),
        }
        outcomes = {}
        for name in names:
            ok = on_cilium and not failing(name)
            outcomes[name] = (0, answers[name][0]) if ok else (1, answers[name][1])
        self._finish_each(pod, outcomes, ip)

    def _policy_allows(self, client_labels: dict[str, str], server_labels: dict[str, str]) -> bool:
        """What a Cilium agent with the cluster's cilium-config would do with the connection:
        no enforcement while enable-policy is never; otherwise the NetworkPolicies of the
        namespace that select the server decide (matchLabels selectors, ingress only: all the
        policy probe uses)."""
        config = self.core.read_namespaced_config_map("cilium-config", "kube-system").data or {}
        if config.get("enable-policy", "never") == "never" or self.ignore_policy:
            return True
        policies = client.NetworkingV1Api(self.core.api_client).list_namespaced_network_policy(NAMESPACE).items

        def selects(selector: Any, labels: dict[str, str]) -> bool:
            wanted = (selector.match_labels if selector else None) or {}
            return all(labels.get(k) == v for k, v in wanted.items())

        guarding = [p for p in policies if selects(p.spec.pod_selector, server_labels)]
        if not guarding:
            return True
        return any(
            selects(peer.pod_selector, client_labels)
            for p in guarding
            for rule in p.spec.ingress or []
            for peer in rule._from or []
        )

    def _container(
        self, pod: dict[str, Any], *, running: bool = False, code: int = 0, message: str = "", index: int = 0
    ) -> dict:
        c = pod["spec"]["containers"][index]
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        state = (
            {"running": {"startedAt": now}}
            if running
            else {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "message": message,
                    "startedAt": now,
                    "finishedAt": now,
                }
            }
        )
        return {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": running,
            "restartCount": 0,
            "state": state,
        }

    def _finish(self, pod: dict[str, Any], code: int, message: str) -> None:
        self._patch(
            pod,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [self._container(pod, code=code, message=message)],
            },
        )

    def _finish_each(self, pod: dict[str, Any], outcomes: dict[str, tuple[int, str]], ip: str = "") -> None:
        """Finish a pod of several containers: ``outcomes`` is each one's (exit code, message);
        the pod failed if any did. A kubelet keeps the address a finished pod ran with."""
        containers = pod["spec"]["containers"]
        statuses = [
            self._container(pod, code=outcomes[c["name"]][0], message=outcomes[c["name"]][1], index=i)
            for i, c in enumerate(containers)
        ]
        status: dict[str, Any] = {
            "phase": "Succeeded" if all(code == 0 for code, _ in outcomes.values()) else "Failed",
            "containerStatuses": statuses,
        }
        if ip:
            status.update(podIP=ip, podIPs=[{"ip": ip}])
        self._patch(pod, status)

    def _patch(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(pod["metadata"]["name"], NAMESPACE, {"status": status})
        except client.exceptions.ApiException as exc:
            if exc.status != 404:  # deleted meanwhile (the tool gave up on it): nothing to answer
                raise
