"""The Kubernetes backend: the ``Cluster`` port over the official client.

This is the only module that sees ``ApiException``: ``_translate`` maps it (and transport
errors) onto the MigrateError tree at one boundary -- 404 NotFound, 409 Conflict,
429/5xx/timeouts TemporaryError (with Retry-After), 401/403/422 PermanentError -- and
``_call`` retries temporary errors with tenacity. Lists are paginated (``limit`` /
``continue``) and parsed as plain JSON; waits use watches from a listed resourceVersion
and re-list when the watch expires (410).

Node-level work (reading ``/etc/cni/net.d``, restoring Calico's configuration) and the
validation probes run as short-lived pods in the ``cni-migrate`` namespace, pinned to the
node, labelled ``cni-migrate.io/role``; their result is read from the container's
termination message, and the pod is always deleted.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import gc
import itertools
import json
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import tenacity
import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.utils import parse_quantity

from migrate import traffic, verdicts
from migrate.backends.rbac import PERMISSIONS, TOOL_NAMESPACE, describe
from migrate.cilium import migration_mode_gaps
from migrate.cniconf import cni_from_files
from migrate.errors import (
    BadInput,
    ClusterError,
    Conflict,
    EvictionRefused,
    LockHeld,
    NotFound,
    PermanentError,
    TemporaryError,
)
from migrate.model import (
    MIGRATION_LABEL,
    CalicoPool,
    CiliumState,
    ClusterIdentity,
    Cni,
    Inventory,
    LabelSelector,
    NetworkPolicyInfo,
    NodeInfo,
    OwnerRef,
    PDBInfo,
    PodInfo,
    Taint,
    frozen_map,
)
from migrate.ports import NodeTask, ProbeResult

T = TypeVar("T")

PAGE = 500
# HTTP connections kept to the API server (urllib3's default: 5 per core). A wave's nodes
# validate at once, each with up to four helper pods watched together.
POOL_SIZE = 128
PEER_PAGE = 20  # nodes read at a time while looking for a cross-node probe peer
ROLE_LABEL = "cni-migrate.io/role"
NODE_LABEL = "cni-migrate.io/node"
TASK_LABEL = "cni-migrate.io/task"
CILIUM_SELECTOR = "k8s-app=cilium"
DEFAULT_NODE_IMAGE = "docker.io/library/busybox:1.36.1"
PROBE_PORT = 8080
# Validation checks that one probe pod on the node answers together (``probe_many``).
POD_CHECKS = ("pod-network", "dns", "connectivity")
CHECK_TASKS = ("pod-checks", "cross-node-server", "cross-node-client")  # their helper pods' tasks
DNS_NAME, API_TARGET = verdicts.DNS_NAME, verdicts.API_TARGET
PEER_LABEL = "cni-migrate.io/peer-of"  # probe servers on peer nodes, behind the probe Service
FOR_LABEL = "cni-migrate.io/for"  # the node whose check a helper pod serves (it may run on a peer)
POLICY_LABEL = "cni-migrate.io/policy-probe"  # the policy probe's pods and policies: its run id
POLICY_ROLE = "cni-migrate.io/policy-role"  # server, allowed or denied
DEFAULT_PROBE_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
FORBIDDEN_UID = "unreadable"  # kube-system's UID when this identity may not read it
EVICTION_PDB = re.compile(r"disruption budget (\S+?) needs")

TASK_SCRIPTS = {
    NodeTask.READ_CNI: "cd /host/etc/cni/net.d && ls -1a > /dev/termination-log",
    NodeTask.RESTORE_CALICO_CNI: (
        "set -e; cd /host/etc/cni/net.d; "
        "if [ -f 05-cilium.conflist ]; then mv -f 05-cilium.conflist 05-cilium.conflist.cni-migrate-bak; fi; "
        'for f in *.cilium_bak; do [ -e "$f" ] && mv -f "$f" "${f%.cilium_bak}"; done; '
        "ls -1a > /dev/termination-log"
    ),
    NodeTask.REBOOT: "echo rebooting > /dev/termination-log; echo b > /proc/sysrq-trigger",
}


# -- error translation: the one boundary -------------------------------------------------------
def _translate(exc: Exception, what: str) -> ClusterError:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.SSLError) or isinstance(reason, urllib3.exceptions.SSLError):
        # A certificate problem does not go away by retrying.
        return PermanentError(f"{what}: TLS failed: {str(reason or exc).splitlines()[0][:200]}")
    if isinstance(exc, ApiException):
        status = exc.status or 0
        message = _status_message(exc) or exc.reason or str(status)
        text = f"{what}: {message} (HTTP {status})"
        if status == 404:
            return NotFound(text)
        if status == 409:
            return Conflict(text)
        if status == 429 or status >= 500 or status == 0:
            return TemporaryError(text, delay=_retry_after(exc))
        return PermanentError(text, status=status)
    return TemporaryError(f"{what}: {type(exc).__name__}: {exc}", delay=1.0)


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


def _retry_after(exc: ApiException) -> float:
    try:
        return max(float((exc.headers or {}).get("Retry-After", 1)), 0.1)
    except (TypeError, ValueError):
        return 1.0


TRANSPORT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError)


def _wait_delay(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    server = exc.delay if isinstance(exc, TemporaryError) else 1.0
    return min(max(server, 0.2 * 2 ** (state.attempt_number - 1)), 10.0)


class KubernetesCluster:
    """A cluster reached through a kubeconfig context (or in-cluster config)."""

    def __init__(
        self,
        api: client.ApiClient,
        context_name: str,
        *,
        retry_seconds: float = 120.0,
        request_timeout: float = 30.0,
        node_image: str = DEFAULT_NODE_IMAGE,
        probe_image: str = DEFAULT_PROBE_IMAGE,
    ) -> None:
        self.api = api
        self.context_name = context_name
        self.server = api.configuration.host
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.retry_seconds = retry_seconds
        self.request_timeout = request_timeout
        self.node_image = node_image
        self.probe_image = probe_image
        self.requests = 0  # API requests made, for benchmarks and tests
        self.calls: collections.Counter[str] = collections.Counter()  # the same, by client method
        self._requests_lock = threading.Lock()  # the nodes of a wave call from their own threads
        self._identity: ClusterIdentity | None = None
        self._traffic: TrafficCache | None = None  # apply --traffic-watch: its reports and probers
        self._namespace_made = False  # the tool's namespace exists: not asked again per helper pod

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None, **kw: Any) -> KubernetesCluster:
        """Like kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context, else the
        current context; in a pod without a kubeconfig, the in-cluster service account."""
        try:
            if kubeconfig is None and not os.environ.get("KUBECONFIG") and _in_cluster():
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                configuration.connection_pool_maxsize = POOL_SIZE
                return cls(client.ApiClient(configuration), "in-cluster", **kw)
            path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            if path is not None and not os.path.exists(os.path.expanduser(path)):
                raise BadInput(f"kubeconfig {path} does not exist")
            contexts, current = config.list_kube_config_contexts(config_file=path)
            names = [c["name"] for c in contexts]
            chosen = context or str((current or {}).get("name", ""))
            if chosen not in names:
                raise BadInput(f"context {chosen!r} is not in the kubeconfig (contexts: {', '.join(names) or 'none'})")
            configuration = client.Configuration()
            config.load_kube_config(config_file=path, context=chosen, client_configuration=configuration)
            configuration.retries = 0  # tenacity does the retrying, with backoff we control
            # The nodes of a wave work at once, each with a watch open at times: keep their
            # connections instead of opening and discarding one per request.
            configuration.connection_pool_maxsize = POOL_SIZE
            cluster = cls(client.ApiClient(configuration), chosen, **kw)
        except ConfigException as exc:
            raise BadInput(f"kubeconfig is unusable: {str(exc).splitlines()[0]}") from None
        except yaml.YAMLError:
            raise BadInput(f"kubeconfig {kubeconfig or os.environ.get('KUBECONFIG', '')} is not valid YAML") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # The client's kubeconfig loader raises these on malformed YAML structures.
            raise BadInput(f"kubeconfig is malformed: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise BadInput(f"kubeconfig cannot be read: {exc.strerror or exc}") from None
        cluster.ping()
        return cluster

    def ping(self) -> None:
        """Fail fast, with one line, when the API server cannot be reached or refuses us."""
        try:
            # A few seconds of retries ride out one 503 or reset; a dead server fails fast.
            self._call(
                "reach the API server", client.VersionApi(self.api).get_code, retry_seconds=5, _request_timeout=5
            )
        except ClusterError as exc:
            raise BadInput(f"cannot use the API server {self.server}: {exc.message}") from None

    # -- plumbing ----------------------------------------------------------------------------
    def _count(self, call: str) -> None:
        with self._requests_lock:
            self.requests += 1
            self.calls[call] += 1

    def _call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        retry: bool = True,
        retry_seconds: float | None = None,
        **kwargs: Any,
    ) -> T:
        kwargs.setdefault("_request_timeout", self.request_timeout)

        def once() -> T:
            self._count(getattr(fn, "__name__", "call"))
            try:
                return fn(*args, **kwargs)
            except TRANSPORT_ERRORS as exc:
                raise _translate(exc, what) from exc

        if not retry:
            return once()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TemporaryError),
            stop=tenacity.stop_after_delay(self.retry_seconds if retry_seconds is None else retry_seconds),
            wait=_wait_delay,
            reraise=True,
        )
        return retrying(once)

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(self._body(what, fn, *args, **kwargs))  # type: ignore[no-any-return]

    def _body(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """The response body of a call, undecoded."""
        return self._call(what, fn, *args, _preload_content=False, **kwargs).data  # type: ignore[no-any-return]

    def _list(
        self, what: str, fn: Callable[..., Any], *args: Any, convert: Callable[[Any], Any] | None = None, **kwargs: Any
    ) -> tuple[list[Any], str]:
        """All items of a list call, a page at a time; returns (items, resourceVersion).
        ``convert`` turns each page's items into smaller objects as they arrive, so only a few
        pages of raw JSON are held at a time (30,000 raw pods are most of a plan's memory)."""
        items: list[Any] = []
        version = ""
        with _collector_paused():
            for page in self._pages(what, fn, *args, **kwargs):
                raw = page.get("items") or []
                items.extend(map(convert, raw) if convert else raw)
                version = (page.get("metadata") or {}).get("resourceVersion", "")
        return items, version

    def _pages(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The decoded pages of a list call. A list of several pages is read ahead: a thread
        asks for the next page as soon as this one's continue token is known (from its head,
        before it is decoded), so the API server encodes one page while we decode the one
        before (at 30,000 pods the two take about as long)."""

        def fetch(token: str | None) -> tuple[bytes | dict[str, Any], str]:
            body = self._body(what, fn, *args, limit=PAGE, _continue=token, **kwargs)
            head = _list_head(body)
            if head is not None:
                return body, head.get("continue") or ""
            page = json.loads(body)  # not in the usual order: decode it here to find the token
            return page, (page.get("metadata") or {}).get("continue") or ""

        def decoded(page: bytes | dict[str, Any]) -> dict[str, Any]:
            return json.loads(page) if isinstance(page, bytes) else page

        first, token = fetch(None)
        if not token:
            yield decoded(first)
            return
        ahead: queue.Queue[tuple[bytes | dict[str, Any] | Exception | None, bool]] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def read_ahead(token: str) -> None:
            try:
                while token and not stop.is_set():
                    page, token = fetch(token)
                    _offer(ahead, (page, False), stop)
                _offer(ahead, (None, True), stop)
            except Exception as exc:  # noqa: BLE001 - handed to the reader, raised there
                _offer(ahead, (exc, True), stop)

        reader = threading.Thread(target=read_ahead, args=(token,), name="list-read-ahead", daemon=True)
        reader.start()
        try:
            yield decoded(first)
            while True:
                page, last = ahead.get()
                if isinstance(page, Exception):
                    raise page
                if page is not None:
                    yield decoded(page)
                if last:
                    return
        finally:
            # Done, or the reader gave up: either way the read-ahead stops (a request it has
            # under way ends on its own; its page is dropped).
            stop.set()

    def _custom(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        try:
            items, _ = self._list(
                f"list {plural}.{group}", self.custom.list_cluster_custom_object, group, version, plural
            )
            return items
        except NotFound:
            return []  # the CRD is not installed: nothing of that kind exists

    def _watch(
        self, what: str, fn: Callable[..., Any], *args: Any, resource_version: str, timeout: float, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events after ``resource_version`` until ``timeout``; raises NotFound-like 410 as
        TemporaryError("expired") so callers re-list."""
        w = watch.Watch()
        self._count("watch " + getattr(fn, "__name__", "call"))
        try:
            for event in w.stream(
                fn,
                *args,
                resource_version=resource_version,
                timeout_seconds=max(int(timeout), 1),
                allow_watch_bookmarks=True,
                # A half-open connection must not outlive the server-side timeout: the client
                # gives up a little later and the caller re-lists.
                _request_timeout=(10, max(timeout, 1) + 15),
                **kwargs,
            ):
                kind = event["type"]
                obj = event["raw_object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise TemporaryError(f"{what}: watch expired", delay=0.0, expired=True)
                    raise TemporaryError(f"{what}: watch error {obj.get('message', '')}")
                if kind == "BOOKMARK":
                    # Only a resourceVersion, no object: callers re-list on expiry instead.
                    continue
                yield kind, obj
        except TRANSPORT_ERRORS as exc:
            raise _translate(exc, what) from exc
        finally:
            w.stop()

    # -- reads -----------------------------------------------------------------------------------
    def identity(self) -> ClusterIdentity:
        if self._identity is None:
            try:
                ns = self._json("get namespace kube-system", self.core.read_namespace, "kube-system")
                uid = ns["metadata"]["uid"]
            except PermanentError as exc:
                if exc.context.get("status") != 403:
                    raise
                # Not allowed to read it: plan still runs to report every missing permission
                # (``get namespaces`` among them, so the plan is blocked), and apply refuses that
                # plan as blocked. A plan made with the permission never matches this identity.
                uid = FORBIDDEN_UID
            self._identity = ClusterIdentity(kube_system_uid=uid, server=self.server)
        return self._identity

    def nodes(self) -> list[NodeInfo]:
        items, _ = self._list("list nodes", self.core.list_node, convert=_node)
        return sorted(items, key=lambda n: n.name)

    def _first_ready_node(self, selector: str, exclude: str) -> str | None:
        """The first Ready, schedulable node (by name) matching a label selector, other than
        ``exclude``, reading small pages until one is found: a constant cost per validated node
        in the usual case, where listing every node would make validation O(nodes) each time.
        Cordoned nodes are left out: the others of a wave may be mid-swap, no peer to judge by."""
        token = None
        while True:
            page = self._json(
                f"list nodes {selector}", self.core.list_node, label_selector=selector, limit=PEER_PAGE, _continue=token
            )
            for item in page.get("items") or []:
                candidate = _node(item)
                if candidate.name != exclude and candidate.ready and not candidate.unschedulable:
                    return candidate.name
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return None

    def get_node(self, name: str) -> NodeInfo:
        return _node(self._json(f"get node {name}", self.core.read_node, name))

    def pods_on_node(self, name: str) -> list[PodInfo]:
        items, _ = self._list(
            f"list pods on {name}", self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={name}"
        )
        return [_pod(p) for p in items]

    def inventory(self) -> Inventory:
        # Every read at once, each in a thread of its own: the pods' pages are most of the
        # time, and the small reads (and the permission checks) fit beside them.
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="inventory") as pool:

            def listed(what: str, fn: Callable[..., Any]) -> concurrent.futures.Future[list[Any]]:
                return pool.submit(lambda: self._list(what, fn)[0])

            def custom(group: str, plural: str) -> concurrent.futures.Future[list[Any]]:
                return pool.submit(self._custom, group, "v1", plural)

            pods_read = pool.submit(
                lambda: tuple(self._list("list pods", self.core.list_pod_for_all_namespaces, convert=_pod)[0])
            )
            missing_read = pool.submit(self.missing_permissions)
            nodes_read = pool.submit(self.nodes)
            pdbs_read = listed(
                "list poddisruptionbudgets",
                client.PolicyV1Api(self.api).list_pod_disruption_budget_for_all_namespaces,
            )
            daemonsets_read = listed("list daemonsets", client.AppsV1Api(self.api).list_daemon_set_for_all_namespaces)
            networking = client.NetworkingV1Api(self.api)
            policies_read = listed("list networkpolicies", networking.list_network_policy_for_all_namespaces)
            service_cidrs_read = listed("list servicecidrs", networking.list_service_cidr)
            felix_read = custom("crd.projectcalico.org", "felixconfigurations")
            calico_pools_read = custom("crd.projectcalico.org", "ippools")
            installations_read = custom("operator.tigera.io", "installations")
            calico_policies_read = custom("crd.projectcalico.org", "networkpolicies")
            global_policies_read = custom("crd.projectcalico.org", "globalnetworkpolicies")
            cilium_config_read = pool.submit(self._configmap, "kube-system", "cilium-config")
            node_config_api_read = pool.submit(
                self._served_version, "cilium.io", "ciliumnodeconfigs", ("v2", "v2alpha1")
            )
            identity_read = pool.submit(self.identity)

            # With some permissions missing, a read they forbid counts as empty, so the plan
            # can list *every* missing permission instead of stopping at the first 403 (its
            # blocking rbac finding keeps apply from acting on the incomplete picture).
            missing = missing_read.result()

            def read(future: concurrent.futures.Future[T], empty: T) -> T:
                try:
                    return future.result()
                except PermanentError as exc:
                    if not missing or exc.context.get("status") != 403:
                        raise
                    return empty

            nodes: list[NodeInfo] = read(nodes_read, [])
            pod_infos: tuple[PodInfo, ...] = read(pods_read, ())
            pdbs = read(pdbs_read, [])
            daemonsets = read(daemonsets_read, [])
            policies = read(policies_read, [])
            try:
                service_cidrs = read(service_cidrs_read, [])
            except NotFound:
                service_cidrs = []  # before Kubernetes 1.33 the Service range is not an API object
            felix: list[dict[str, Any]] = read(felix_read, [])
            calico_pools = read(calico_pools_read, [])
            installations = read(installations_read, [])
            calico_policies = read(calico_policies_read, [])
            global_policies = read(global_policies_read, [])
            cilium_config: dict[str, str] = read(cilium_config_read, {})
            node_config_api = read(node_config_api_read, None)
            identity = identity_read.result()
        ds_names = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in daemonsets}
        install = "operator" if installations else ("manifest" if CALICO_NODE_DS & ds_names else "none")
        dataplane = "iptables"
        for inst in installations:
            if ((inst.get("spec") or {}).get("calicoNetwork") or {}).get("linuxDataplane", "").lower() == "bpf":
                dataplane = "bpf"
        agents = [p for p in pod_infos if p.namespace == "kube-system" and p.labels.get("k8s-app") == "cilium"]
        calico_ds = next(
            (d for d in daemonsets if (d["metadata"]["namespace"], d["metadata"]["name"]) in CALICO_NODE_DS), None
        )
        cilium_ds = next(
            (d for d in daemonsets if (d["metadata"]["namespace"], d["metadata"]["name"]) == ("kube-system", "cilium")),
            None,
        )

        def configmap(namespace: str, name: str) -> dict[str, str]:
            try:
                return self._configmap(namespace, name)
            except PermanentError:
                return {}  # not ours to read: Calico's defaults stand in

        bgp, autodetection = _calico_routing(installations, calico_ds, configmap)
        felix_default = next((f for f in felix if f["metadata"]["name"] == "default"), {})
        return Inventory(
            identity=identity,
            nodes=tuple(nodes),
            pods=pod_infos,
            pdbs=tuple(_pdb(p) for p in pdbs),
            calico_pools=tuple(
                CalicoPool(
                    p["metadata"]["name"],
                    (p.get("spec") or {}).get("cidr", ""),
                    (p.get("spec") or {}).get("vxlanMode", "Never"),
                    (p.get("spec") or {}).get("ipipMode", "Never"),
                )
                for p in calico_pools
            ),
            calico_install=install,
            calico_dataplane=dataplane,
            calico_bgp=bgp if install != "none" else False,
            calico_autodetection=autodetection if install != "none" else "",
            calico_vxlan_port=int((felix_default.get("spec") or {}).get("vxlanPort") or 4789),
            service_cidrs=tuple(c for sc in service_cidrs for c in (sc.get("spec") or {}).get("cidrs") or ()),
            cilium=CiliumState(
                installed=("kube-system", "cilium") in ds_names,
                migration_mode=not migration_mode_gaps(cilium_config),
                mode_gaps=migration_mode_gaps(cilium_config),
                node_config_api=node_config_api,
                cluster_pool_cidr=cilium_config.get("cluster-pool-ipv4-cidr"),
                agents_ready=sum(1 for a in agents if a.ready),
                agents_desired=int(((cilium_ds or {}).get("status") or {}).get("desiredNumberScheduled") or 0),
                tunnel_port=int(cilium_config["tunnel-port"]) if cilium_config.get("tunnel-port") else None,
            ),
            policies=tuple(
                NetworkPolicyInfo(kind, p["metadata"].get("namespace", ""), p["metadata"]["name"])
                for kind, items in (
                    ("NetworkPolicy", policies),
                    ("CalicoNetworkPolicy", calico_policies),
                    ("GlobalNetworkPolicy", global_policies),
                )
                for p in items
            ),
            missing_permissions=missing,
        )

    def cilium_config(self) -> dict[str, str]:
        return self._configmap("kube-system", "cilium-config")

    def network_policies(self) -> list[dict[str, Any]]:
        out = []
        items, _ = self._list(
            "list networkpolicies", client.NetworkingV1Api(self.api).list_network_policy_for_all_namespaces
        )
        out += [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **i} for i in items]
        for kind, plural in (("NetworkPolicy", "networkpolicies"), ("GlobalNetworkPolicy", "globalnetworkpolicies")):
            items = self._custom("crd.projectcalico.org", "v1", plural)
            out += [{"apiVersion": "crd.projectcalico.org/v1", "kind": kind, **i} for i in items]
        return out

    def _configmap(self, namespace: str, name: str) -> dict[str, str]:
        try:
            cm = self._json(f"get configmap {namespace}/{name}", self.core.read_namespaced_config_map, name, namespace)
        except NotFound:
            return {}
        return dict(cm.get("data") or {})

    def _served_version(self, group: str, plural: str, versions: Sequence[str]) -> str | None:
        """The first of ``versions`` in which the API server serves ``plural``."""
        for version in versions:
            try:
                self._call(
                    f"list {plural}.{group}/{version}",
                    self.custom.list_cluster_custom_object,
                    group,
                    version,
                    plural,
                    limit=1,
                    _preload_content=False,
                )
            except NotFound:
                continue  # not served in that version
            return f"{group}/{version}"
        return None

    def missing_permissions(self, extra: Sequence[tuple[str, str, str, str]] = ()) -> tuple[str, ...]:
        """Permissions from rbac.PERMISSIONS (and ``extra``) this identity lacks
        (SelfSubjectAccessReview), asked eight at a time (some thirty small requests, each a
        round trip: one after another they outlast a small cluster's whole inventory)."""
        authz = client.AuthorizationV1Api(self.api)

        def allowed(permission: tuple[str, str, str, str]) -> bool:
            verb, group, resource, namespace = permission
            sub = None
            if "/" in resource:
                resource, sub = resource.split("/", 1)
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        **({"subresource": sub} if sub else {}),
                        **({"namespace": namespace} if namespace else {}),
                    }
                },
            }
            result = self._json("create selfsubjectaccessreview", authz.create_self_subject_access_review, review)
            return bool((result.get("status") or {}).get("allowed"))

        permissions = (*PERMISSIONS, *extra)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="access-review") as pool:
            answers = list(pool.map(allowed, permissions))
        return tuple(describe(p) for p, ok in zip(permissions, answers, strict=True) if not ok)

    def cilium_agent(self, node: str) -> PodInfo | None:
        items, _ = self._list(
            f"list cilium agent on {node}",
            self.core.list_namespaced_pod,
            "kube-system",
            label_selector=CILIUM_SELECTOR,
            field_selector=f"spec.nodeName={node}",
        )
        live = [_pod(p) for p in items if not p["metadata"].get("deletionTimestamp")]
        return live[0] if live else None

    def node_cni(self, node: str) -> Cni:
        listing = self.run_node_task(node, NodeTask.READ_CNI, 120.0)
        return cni_from_files(listing.split())

    # -- writes ----------------------------------------------------------------------------------
    def set_unschedulable(self, name: str, value: bool) -> bool:
        node = self.get_node(name)
        if node.unschedulable == value:
            return False
        self._call(f"patch node {name}", self.core.patch_node, name, {"spec": {"unschedulable": value or None}})
        return True

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        node = self.get_node(name)
        if node.labels.get(key) == value:
            return False
        self._call(f"label node {name}", self.core.patch_node, name, {"metadata": {"labels": {key: value}}})
        return True

    def evict(self, pod: PodInfo) -> None:
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid)),
        )
        try:
            # Not retried here: the drain step owns the retry loop and its deadline.
            self._call(
                f"evict pod {pod.key}",
                self.core.create_namespaced_pod_eviction,
                pod.name,
                pod.namespace,
                body,
                retry=False,
            )
        except TemporaryError as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and "more than one PodDisruptionBudget" in (cause.body or ""):
                raise PermanentError(exc.message.replace(" (HTTP 500)", "")) from cause
            if isinstance(cause, ApiException) and cause.status == 429:
                match = EVICTION_PDB.search(cause.body or "")
                pdb = f"{pod.namespace}/{match[1]}" if match else "a PodDisruptionBudget"
                raise EvictionRefused(exc.message, delay=exc.delay, pdb=pdb) from cause
            raise
        except Conflict:
            # The UID precondition failed: the pod we meant is gone (a new one has its name).
            raise NotFound(f"pod {pod.key} was replaced") from None

    def delete_pod(self, pod: PodInfo) -> None:
        self._call(
            f"delete pod {pod.key}",
            self.core.delete_namespaced_pod,
            pod.name,
            pod.namespace,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid)),
        )

    def wait_pods_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        if not pods:
            return []
        by_node: dict[str | None, list[PodInfo]] = {}
        for pod in pods:
            by_node.setdefault(pod.node, []).append(pod)
        deadline = time.monotonic() + timeout
        left: list[PodInfo] = []
        for node, group in by_node.items():
            left += self._wait_gone_on(node, group, deadline)
        return left

    def _wait_gone_on(self, node: str | None, pods: list[PodInfo], deadline: float) -> list[PodInfo]:
        waiting = {p.uid: p for p in pods}
        selector = f"spec.nodeName={node}" if node else ""
        while waiting and time.monotonic() < deadline:
            items, rv = self._list("list pods", self.core.list_pod_for_all_namespaces, field_selector=selector)
            present = {p["metadata"]["uid"] for p in items}
            for uid in [u for u in waiting if u not in present]:
                del waiting[uid]
            if not waiting:
                break
            try:
                for kind, obj in self._watch(
                    "watch pods",
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    field_selector=selector,
                ):
                    if kind == "DELETED":
                        waiting.pop(obj["metadata"]["uid"], None)
                        if not waiting:
                            break
            except TemporaryError:
                continue  # watch expired or dropped: re-list and watch again
        return list(waiting.values())

    def wait_cilium_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items, rv = self._list(
                "list cilium agents",
                self.core.list_namespaced_pod,
                "kube-system",
                label_selector=CILIUM_SELECTOR,
                field_selector=f"spec.nodeName={node}",
            )
            for obj in items:
                pod = _pod(obj)
                if pod.uid != not_uid and pod.ready and not pod.deleting:
                    return pod
            try:
                for _kind, obj in self._watch(
                    "watch cilium agents",
                    self.core.list_namespaced_pod,
                    "kube-system",
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    label_selector=CILIUM_SELECTOR,
                    field_selector=f"spec.nodeName={node}",
                ):
                    pod = _pod(obj)
                    if _kind != "DELETED" and pod.uid != not_uid and pod.ready and not pod.deleting:
                        return pod
            except TemporaryError:
                continue  # re-list
        raise TemporaryError(f"no new Ready Cilium agent on {node} within {timeout:.0f}s", node=node)

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        what = f"delete {kind} {namespace + '/' if namespace else ''}{name}"
        try:
            if api_version == "apps/v1":
                apps = client.AppsV1Api(self.api)
                fn = apps.delete_namespaced_daemon_set if kind == "DaemonSet" else apps.delete_namespaced_deployment
                self._call(what, fn, name, namespace)
            elif namespace:
                group, version = api_version.split("/")
                self._call(
                    what,
                    self.custom.delete_namespaced_custom_object,
                    group,
                    version,
                    namespace,
                    kind.lower() + "s",
                    name,
                )
            else:
                group, version = api_version.split("/")
                self._call(what, self.custom.delete_cluster_custom_object, group, version, kind.lower() + "s", name)
        except NotFound:
            return False
        return True

    def ensure_object(self, obj: dict[str, Any]) -> bool:
        """Create a namespaced custom object, or replace its spec when it differs."""
        group, version = obj["apiVersion"].split("/")
        plural = obj["kind"].lower() + "s"
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        what = f"{obj['kind']} {namespace}/{name}"
        try:
            live: Any = self._call(
                f"get {what}", self.custom.get_namespaced_custom_object, group, version, namespace, plural, name
            )
        except NotFound:
            self._call(
                f"create {what}", self.custom.create_namespaced_custom_object, group, version, namespace, plural, obj
            )
            return True
        if live.get("spec") == obj["spec"]:
            return False
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
        self._call(
            f"update {what}",
            self.custom.replace_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            body,
        )
        return True

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        now = datetime.now(UTC)
        event = {
            "metadata": {"generateName": f"{node}.cni-migrate.", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "cni-migrate"},
            "reportingComponent": "cni-migrate",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now.isoformat().replace("+00:00", "Z"),
            "lastTimestamp": now.isoformat().replace("+00:00", "Z"),
            "count": 1,
        }
        self._call(f"create event on {node}", self.core.create_namespaced_event, "default", event, retry=False)

    # -- node tasks and probes ---------------------------------------------------------------------
    def _ensure_namespace(self, again: bool = False) -> None:
        """The tool's namespace, made if missing; asked once per process (every helper pod
        would otherwise ask), again with ``again`` (a create there said it is gone)."""
        if self._namespace_made and not again:
            return
        try:
            self._call("get namespace", self.core.read_namespace, TOOL_NAMESPACE)
        except NotFound:
            # Created meanwhile by someone else (409) is just as good.
            with contextlib.suppress(Conflict):
                self._call("create namespace", self.core.create_namespace, {"metadata": {"name": TOOL_NAMESPACE}})
        self._namespace_made = True

    def _helper_pods(self, node: str, role: str) -> list[dict[str, Any]]:
        items, _ = self._list(
            f"list {role} pods",
            self.core.list_namespaced_pod,
            TOOL_NAMESPACE,
            label_selector=f"{ROLE_LABEL}={role},{NODE_LABEL}={node}",
        )
        return items

    def cleanup_helper_pods(self, node: str | None = None) -> int:
        """Delete task and probe pods (and probe Services) left by a killed run (resume calls
        this first)."""
        selector = ROLE_LABEL + (f",{NODE_LABEL}={node}" if node else "")
        try:
            items, _ = self._list(
                "list helper pods", self.core.list_namespaced_pod, TOOL_NAMESPACE, label_selector=selector
            )
        except NotFound:
            return 0
        for obj in items:
            try:
                self._call(
                    "delete helper pod",
                    self.core.delete_namespaced_pod,
                    obj["metadata"]["name"],
                    TOOL_NAMESPACE,
                    grace_period_seconds=0,
                )
            except NotFound:
                continue  # already gone
        services, _ = self._list(
            "list probe services", self.core.list_namespaced_service, TOOL_NAMESPACE, label_selector=selector
        )
        for obj in services:
            self._delete_helper(obj["metadata"]["name"], "service")
        net = client.NetworkingV1Api(self.api)
        policies, _ = self._list(
            "list probe networkpolicies", net.list_namespaced_network_policy, TOOL_NAMESPACE, label_selector=selector
        )
        for obj in policies:
            with contextlib.suppress(NotFound):
                name = obj["metadata"]["name"]
                self._call(f"delete networkpolicy {name}", net.delete_namespaced_network_policy, name, TOOL_NAMESPACE)
        return len(items) + len(services) + len(policies)

    # -- the traffic watch (apply --traffic-watch) ---------------------------------------------
    def _traffic_api(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(create, delete) of a traffic-watch object kind, both namespaced."""
        apps, rbac = client.AppsV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
        apis: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "ServiceAccount": (
                self.core.create_namespaced_service_account,
                self.core.delete_namespaced_service_account,
            ),
            "Role": (rbac.create_namespaced_role, rbac.delete_namespaced_role),
            "RoleBinding": (rbac.create_namespaced_role_binding, rbac.delete_namespaced_role_binding),
            "Service": (self.core.create_namespaced_service, self.core.delete_namespaced_service),
            "DaemonSet": (apps.create_namespaced_daemon_set, apps.delete_namespaced_daemon_set),
        }
        return apis[kind]

    def start_traffic_watch(self, timeout: float) -> str:
        """Create the watch's objects (kept as they are when present; the DaemonSet's probe
        image is brought in line), then wait until every prober pod has written a report."""
        objects = traffic.manifests(self.probe_image)
        try:
            self._call("get namespace", self.core.read_namespace, traffic.NAMESPACE)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile
                self._call("create namespace", self.core.create_namespace, objects[0])
        for obj in objects[1:]:
            kind, name = obj["kind"], obj["metadata"]["name"]
            create, _ = self._traffic_api(kind)
            try:
                self._call(f"create {kind} {traffic.NAMESPACE}/{name}", create, traffic.NAMESPACE, obj)
            except Conflict:
                if kind == "DaemonSet":
                    # A watch left by a killed run: same objects, perhaps another image.
                    apps = client.AppsV1Api(self.api)
                    self._call(
                        f"patch DaemonSet {traffic.NAMESPACE}/{name}",
                        apps.patch_namespaced_daemon_set,
                        name,
                        traffic.NAMESPACE,
                        {"spec": obj["spec"]},
                    )
        if self._traffic is None:
            self._traffic = TrafficCache(self)
        probers, silent = self._traffic.first_reports(timeout)
        if probers and not silent:
            return f"{len(probers)}/{len(probers)} probers reporting"
        named = ", ".join(silent[:5]) + (", ..." if len(silent) > 5 else "")
        raise TemporaryError(
            f"{len(silent)} of {len(probers)} probers sent no report within {timeout:.0f}s"
            + (f" (on {named})" if silent else " (no prober pod runs)")
            + f"; see 'kubectl -n {traffic.NAMESPACE} logs ds/{traffic.NAME} -c prober'"
        )

    def traffic_reports(self, after: int, timeout: float) -> tuple[list[Any], list[str]]:
        """Every prober's report once each has written again after this call began (a write
        after the window's end covers it: no clock is compared); and the nodes whose prober
        did not. Read from the run's shared cache: no request per validated node."""
        if self._traffic is None:
            self._traffic = TrafficCache(self)
        return self._traffic.fresh_reports(timeout)

    def stop_traffic_watch(self) -> bool:
        """Delete the DaemonSet first (no prober writes afterwards), then the rest and every
        report. The namespace stays: deploy/rbac.yaml's Role there is what allows all this."""
        if self._traffic is not None:
            self._traffic.close()
            self._traffic = None
        apps = client.AppsV1Api(self.api)
        try:
            # Briefly: this runs as a run ends, maybe because the API server went away, and
            # must not hold the operator's exit for the usual two minutes of retries.
            self._call(
                "get traffic watch", apps.read_namespaced_daemon_set, traffic.NAME, traffic.NAMESPACE, retry_seconds=5
            )
        except NotFound:
            return False  # none: nothing to remove (and no rights needed to find that out)
        for obj in reversed(traffic.manifests(self.probe_image)[1:]):
            _, delete = self._traffic_api(obj["kind"])
            with contextlib.suppress(NotFound):  # gone already
                self._call(f"delete {obj['kind']} {traffic.NAME}", delete, traffic.NAME, traffic.NAMESPACE)
        self._call(
            "delete traffic reports",
            self.core.delete_collection_namespaced_config_map,
            traffic.NAMESPACE,
            label_selector=f"{traffic.REPORT_LABEL}=true",
        )
        return True

    def _run_pod(
        self,
        node: str,
        role: str,
        name_hint: str,
        container: dict[str, Any] | list[dict[str, Any]],
        timeout: float,
        *,
        host_paths: bool = False,
        until_running: bool = False,
        keep: list[str] | None = None,
        labels: dict[str, str] | None = None,
        for_node: str = "",
        clean: bool = True,
    ) -> dict[str, Any]:
        """Create a pinned helper pod of one container or several (which run side by side),
        wait for it to finish (or run), return it; delete it, unless ``keep`` is given: then
        its name goes there and the caller deletes it.
        ``for_node``: the node whose check this pod serves (default ``node``); a peer node
        may host pods of several nodes' checks at once (a parallel wave).
        ``clean``: first delete what an earlier attempt of this very task left on the node
        (validation clears its checks' leftovers once, ``_clear_stale_checks``)."""
        self._ensure_namespace()
        owner = for_node or node
        for stale in self._helper_pods(node, role) if clean else ():
            marks = stale["metadata"].get("labels", {})
            # Left by an earlier attempt of this very check; never another node's check.
            if marks.get(TASK_LABEL) == name_hint and marks.get(FOR_LABEL, node) == owner:
                self._delete_helper(stale["metadata"]["name"])
        name = f"cni-migrate-{role}-{uuid.uuid4().hex[:8]}"
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": TOOL_NAMESPACE,
                "labels": {
                    ROLE_LABEL: role,
                    NODE_LABEL: node,
                    TASK_LABEL: name_hint,
                    FOR_LABEL: owner,
                    **(labels or {}),
                },
            },
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "activeDeadlineSeconds": max(int(timeout), 1),
                "terminationGracePeriodSeconds": 0,
                "tolerations": [{"operator": "Exists"}],
                "automountServiceAccountToken": False,
                "containers": [
                    {"terminationMessagePolicy": "FallbackToLogsOnError", **c}
                    for c in ([container] if isinstance(container, dict) else container)
                ],
            },
        }
        if host_paths:
            pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "cni", "mountPath": "/host/etc/cni/net.d"}]
            pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
            pod["spec"]["volumes"] = [{"name": "cni", "hostPath": {"path": "/etc/cni/net.d", "type": "Directory"}}]

        def create() -> dict[str, Any]:
            return self._json(f"create {role} pod on {node}", self.core.create_namespaced_pod, TOOL_NAMESPACE, pod)

        try:
            try:
                created = create()
            except NotFound:  # the namespace was deleted under the run: make it again, once
                self._ensure_namespace(again=True)
                created = create()
        except Conflict:
            # The name is ours alone (random per call): AlreadyExists means an earlier attempt
            # of this very create succeeded and only its answer was lost.
            created = self._json(f"get {role} pod on {node}", self.core.read_namespaced_pod, name, TOOL_NAMESPACE)
        if keep is not None:
            keep.append(name)
            return self._wait_pod(created, timeout, until_running)
        try:
            return self._wait_pod(created, timeout, until_running)
        finally:
            self._delete_helper(name)

    def _delete_helper(self, name: str, kind: str = "pod") -> None:
        # Gone already (404) is all we wanted.
        with contextlib.suppress(NotFound):
            if kind == "service":
                self._call(f"delete service {name}", self.core.delete_namespaced_service, name, TOOL_NAMESPACE)
            else:
                self._call(
                    f"delete pod {name}", self.core.delete_namespaced_pod, name, TOOL_NAMESPACE, grace_period_seconds=0
                )

    def _cross_node(self, node: str, timeout: float) -> ProbeResult:
        """Probe servers on the node and on one Calico and one Cilium peer node, a Service in
        front of the peers, and connections node -> each peer, each peer -> node, node ->
        Service. The canary has only Calico peers, the last node only Cilium ones."""
        cilium = self._first_ready_node(f"{MIGRATION_LABEL}=true", node)
        calico = self._first_ready_node(f"{MIGRATION_LABEL}!=true", node)
        peers = {name: cni for name, cni in ((calico, "calico"), (cilium, "cilium")) if name}
        if not peers:
            return verdicts.cross_node([])
        server = {
            "name": "probe",
            "image": self.probe_image,
            "command": ["/agnhost", "netexec", f"--http-port={PROBE_PORT}"],
            "ports": [{"containerPort": PROBE_PORT}],
        }
        kept: list[str] = []
        service = f"cni-migrate-peers-{uuid.uuid4().hex[:8]}"
        service_made = False
        try:
            # The servers start together, then the clients together: a node's check waits for
            # two pod start-ups, not one per pod.
            started = _together(
                lambda name: self._run_pod(
                    name,
                    "probe",
                    "cross-node-server",
                    server,
                    timeout,
                    until_running=True,
                    keep=kept,
                    labels={PEER_LABEL: node} if name != node else {},
                    for_node=node,
                    clean=False,
                ),
                [node, *peers],
            )
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
            made = self._json(f"create service {service}", self.core.create_namespaced_service, TOOL_NAMESPACE, body)
            service_made = True
            routes = [(node, ips[p], f"{node}->{p} ({cni})") for p, cni in peers.items()]
            routes += [(p, ips[node], f"{p} ({cni})->{node}") for p, cni in peers.items()]
            routes.append((node, made["spec"]["clusterIP"], f"{node}->Service {made['spec']['clusterIP']}"))

            # One client pod per source node, a container per connection from there.
            def client_pod(source: str) -> dict[str, Any]:
                containers = [
                    {
                        "name": f"route-{i}",
                        "image": self.probe_image,
                        "command": ["/agnhost", "connect", f"{ip}:{PROBE_PORT}", "--timeout=5s"],
                    }
                    for i, (start, ip, _) in enumerate(routes)
                    if start == source
                ]
                return self._run_pod(
                    source, "probe", "cross-node-client", containers, timeout, for_node=node, clean=False
                )

            finished: dict[str, tuple[bool, str]] = {}
            for done in _together(client_pod, list(dict.fromkeys(source for source, _, _ in routes))).values():
                finished.update(_container_results(done))
            connections = [
                verdicts.Connection(label, *finished.get(f"route-{i}", (False, "")))
                for i, (_, _, label) in enumerate(routes)
            ]
        finally:
            _together(self._delete_helper, kept)
            if service_made:
                self._delete_helper(service, "service")
        return verdicts.cross_node(connections)

    def policy_probe(self, timeout: float) -> ProbeResult:
        """After finalize: does Cilium enforce NetworkPolicy? A server pod behind two policies
        of this probe alone (deny all ingress to its pods; allow the server from the
        "allowed" client on the probe port), then two clients: the allowed one must connect
        and the denied one must not. Policies first, so every probe pod starts under them."""
        check = "policy-enforcement"
        expected = "the allowed client connects and the denied client is blocked"
        node = self._first_ready_node(f"{MIGRATION_LABEL}=true", "") or self._first_ready_node("", "")
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
        net = client.NetworkingV1Api(self.api)
        made: list[str] = []
        kept: list[str] = []
        outcomes: dict[str, tuple[bool, str]] = {}
        try:
            self._ensure_namespace()
            for name, spec in zip((f"cni-migrate-deny-{run}", f"cni-migrate-allow-{run}"), policies, strict=True):
                body = {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": name, "labels": {ROLE_LABEL: "probe", **ours}},
                    "spec": spec,
                }
                self._call(f"create networkpolicy {name}", net.create_namespaced_network_policy, TOOL_NAMESPACE, body)
                made.append(name)
            server = {
                "name": "probe",
                "image": self.probe_image,
                "command": ["/agnhost", "netexec", f"--http-port={PROBE_PORT}"],
                "ports": [{"containerPort": PROBE_PORT}],
            }
            started = self._run_pod(
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
                    "image": self.probe_image,
                    "command": ["/agnhost", "connect", f"{ip}:{PROBE_PORT}", "--timeout=5s"],
                }
                label = role.removesuffix("-again")
                done = self._run_pod(
                    node, "probe", "policy-client", connect, timeout, labels={**ours, POLICY_ROLE: label}
                )
                outcomes[role] = (done["status"]["phase"] == "Succeeded", _termination_message(done))
        finally:
            # Every clean-up is tried, and none hides the error that got us here.
            for name in kept:
                with contextlib.suppress(ClusterError):
                    self._delete_helper(name)
            for name in made:
                with contextlib.suppress(ClusterError):
                    self._call(
                        f"delete networkpolicy {name}", net.delete_namespaced_network_policy, name, TOOL_NAMESPACE
                    )
        return verdicts.policy_enforcement(
            node, *(verdicts.Connection(role, *outcomes[role]) for role in ("allowed", "denied", "allowed-again"))
        )

    def _wait_pod(self, pod: dict[str, Any], timeout: float, until_running: bool) -> dict[str, Any]:
        """The pod once finished (or running with an address, ``until_running``). A finished
        pod keeps the address it ran with: kubelets 1.27-1.30 drop it from the first
        terminal status (kubernetes#125370), so the last one seen is put back."""
        name = pod["metadata"]["name"]
        deadline = time.monotonic() + timeout
        seen = {"podIP": ""}

        def done(obj: dict[str, Any]) -> bool:
            status = obj.get("status") or {}
            seen["podIP"] = status.get("podIP") or seen["podIP"]
            phase = status.get("phase")
            if phase in ("Succeeded", "Failed") and not status.get("podIP") and seen["podIP"]:
                obj["status"] = {**status, "podIP": seen["podIP"]}
            return phase in ("Succeeded", "Failed") or (
                until_running and phase == "Running" and bool(status.get("podIP"))
            )

        current = pod  # the created pod is the first read: watch from its version
        while time.monotonic() < deadline:
            if done(current):
                return current
            rv = current["metadata"]["resourceVersion"]
            try:
                for _kind, obj in self._watch(
                    "watch pod",
                    self.core.list_namespaced_pod,
                    TOOL_NAMESPACE,
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    field_selector=f"metadata.name={name}",
                ):
                    if done(obj):
                        return obj
                    current = obj
            except TemporaryError:  # dropped or expired: read it again, then watch from there
                current = self._json("get pod", self.core.read_namespaced_pod, name, TOOL_NAMESPACE)
        raise TemporaryError(f"pod {name} did not finish within {timeout:.0f}s{_pod_waiting(current)}")

    def run_node_task(self, node: str, task: NodeTask, timeout: float) -> str:
        container = {"name": "task", "image": self.node_image, "command": ["sh", "-c", TASK_SCRIPTS[task]]}
        if task is NodeTask.REBOOT:
            # The node goes down under its pod: however the pod ends, the node's new boot ID
            # (wait_node_rebooted) is the proof, not the pod's phase.
            with contextlib.suppress(PermanentError, TemporaryError):
                done = self._run_pod(node, "node-task", task.value, container, timeout, host_paths=True)
                return _termination_message(done) or "reboot requested"
            return "reboot requested"
        done = self._run_pod(node, "node-task", task.value, container, timeout, host_paths=True)
        message = _termination_message(done)
        if done["status"]["phase"] != "Succeeded":
            raise PermanentError(f"node task {task.value} on {node} failed: {message or 'no message'}")
        return message

    def wait_node_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items, rv = self._list(f"list node {node}", self.core.list_node, field_selector=f"metadata.name={node}")
            for obj in items:
                info = _node(obj)
                if info.boot_id != old_boot_id and info.ready:
                    return info
            try:
                for _kind, obj in self._watch(
                    f"watch node {node}",
                    self.core.list_node,
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    field_selector=f"metadata.name={node}",
                ):
                    info = _node(obj)
                    if _kind != "DELETED" and info.boot_id != old_boot_id and info.ready:
                        return info
            except TemporaryError:
                continue  # re-list
        raise TemporaryError(f"{node} did not come back from its reboot within {timeout:.0f}s", node=node)

    def _cilium_pool(self) -> str:
        return self._configmap("kube-system", "cilium-config").get("cluster-pool-ipv4-cidr", "")

    def _clear_stale_checks(self, node: str) -> None:
        """Delete the helper pods an earlier attempt of this node's checks left (a killed run,
        an answer lost), wherever they run: one list for all of them before the checks, not
        one before every pod. Only one validation of a node runs at a time."""
        self._ensure_namespace()
        items, _ = self._list(
            f"list probe pods for {node}",
            self.core.list_namespaced_pod,
            TOOL_NAMESPACE,
            label_selector=f"{ROLE_LABEL}=probe,{FOR_LABEL}={node},{TASK_LABEL} in ({','.join(CHECK_TASKS)})",
        )
        _together(self._delete_helper, [item["metadata"]["name"] for item in items])

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        if check in POD_CHECKS or check == "cross-node":
            self._clear_stale_checks(node)
        return self._probe(node, check, timeout)

    def _probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        if check == "cilium-agent-ready":
            agent = self.cilium_agent(node)
            return verdicts.agent_ready(agent.name if agent else None, bool(agent and agent.ready))
        if check in POD_CHECKS:
            return self._pod_checks(node, (check,), timeout)[0]
        if check == "cilium-node":
            pool = self._cilium_pool()
            try:
                obj: Any = self._call(
                    f"get CiliumNode {node}",
                    self.custom.get_cluster_custom_object,
                    "cilium.io",
                    "v2",
                    "ciliumnodes",
                    node,
                )
            except NotFound:
                return verdicts.cilium_node(node, None, pool)
            return verdicts.cilium_node(node, ((obj.get("spec") or {}).get("ipam") or {}).get("podCIDRs") or [], pool)
        if check == "cross-node":
            return self._cross_node(node, timeout)
        raise BadInput(f"unknown validation check {check!r}")

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        """``checks`` in order, up to the first that fails. A run of the checks one probe pod
        answers (``POD_CHECKS``) shares that pod, and that pod runs beside the cross-node
        check's pods when both are asked: a node's validation waits for two pod start-ups in
        all (servers and in-pod checks, then clients), not one after another."""
        results: list[ProbeResult] = []
        for with_pods, run in itertools.groupby(checks, key=lambda c: c in POD_CHECKS or c == "cross-node"):
            group = list(run)
            if not with_pods:
                for check in group:
                    results.append(self._probe(node, check, timeout))
                    if not results[-1].ok:
                        return results
                continue
            self._clear_stale_checks(node)
            in_pod = tuple(c for c in group if c in POD_CHECKS)
            batches = ([in_pod] if in_pod else []) + [(c,) for c in group if c not in POD_CHECKS]
            answered = _together(
                lambda batch: (
                    self._pod_checks(node, batch, timeout)
                    if batch[0] in POD_CHECKS
                    else [self._probe(node, batch[0], timeout)]
                ),
                batches,
            )
            by_check = {r.check: r for answers in answered.values() for r in answers}
            for check in group:
                results.append(by_check[check])
                if not results[-1].ok:
                    return results
        return results

    def _pod_checks(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        """``pod-network``, ``dns`` and ``connectivity`` (any of them) from one probe pod on the
        node: a container per command (``dns`` runs nslookup in the node image, ``connectivity``
        agnhost connect to the API server's Service) and, for ``pod-network``, the address the
        pod got. With ``pod-network`` alone the pod only has to run."""
        commands = {
            "dns": {"name": "dns", "image": self.node_image, "command": ["nslookup", DNS_NAME]},
            "connectivity": {
                "name": "connectivity",
                "image": self.probe_image,
                "command": ["/agnhost", "connect", API_TARGET, "--timeout=5s"],
            },
        }
        containers = [commands[c] for c in checks if c in commands]
        if containers:
            done = self._run_pod(node, "probe", "pod-checks", containers, timeout, clean=False)
        else:
            pause = {"name": "pod-network", "image": self.probe_image, "command": ["/agnhost", "pause"]}
            done = self._run_pod(node, "probe", "pod-checks", pause, timeout, until_running=True, clean=False)
        finished = _container_results(done)
        results = []
        for check in checks:
            if check == "pod-network":
                results.append(verdicts.pod_network((done.get("status") or {}).get("podIP", ""), self._cilium_pool()))
            elif check == "dns":
                results.append(verdicts.dns(*finished.get("dns", (False, "no status"))))
            else:
                results.append(verdicts.connectivity(*finished.get("connectivity", (False, "no status"))))
        return results

    # -- the executor lock -------------------------------------------------------------------------
    def lease(self, holder: str | None = None, duration: int = 30) -> LeaseLock:
        return LeaseLock(self, holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}", duration)


class TrafficCache:
    """The traffic watch's probers and reports, kept by one list + watch each for the whole
    run (an informer), so a validation costs no request: it waits until every prober that
    runs has written again, or its timeout. Watch threads are daemons that re-list when a
    watch expires or drops, and end within ``WATCH_SECONDS`` of ``close``."""

    WATCH_SECONDS = 10

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.changed = threading.Condition()
        self.reports: dict[str, tuple[traffic.Report, int]] = {}  # node -> (report, writes seen)
        self.probers: dict[str, str] = {}  # node -> prober pod, starting or running
        self.listed = {"reports": False, "probers": False}
        self._closed = threading.Event()
        core = cluster.core
        follows: list[tuple[str, Callable[..., Any], str, Callable[[str, dict[str, Any]], None]]] = [
            ("reports", core.list_namespaced_config_map, f"{traffic.REPORT_LABEL}=true", self._report),
            ("probers", core.list_namespaced_pod, f"{traffic.APP_LABEL}={traffic.NAME}", self._prober),
        ]
        for follow in follows:
            threading.Thread(target=self._follow, args=follow, name=f"traffic-{follow[0]}", daemon=True).start()

    def close(self) -> None:
        self._closed.set()

    def _follow(
        self, what: str, fn: Callable[..., Any], selector: str, apply: Callable[[str, dict[str, Any]], None]
    ) -> None:
        c = self.cluster
        while not self._closed.is_set():
            try:
                items, rv = c._list(f"list traffic {what}", fn, traffic.NAMESPACE, label_selector=selector)
                with self.changed:
                    (self.reports if what == "reports" else self.probers).clear()
                    for obj in items:
                        apply("ADDED", obj)
                    self.listed[what] = True
                    self.changed.notify_all()
                while not self._closed.is_set():
                    for kind, obj in c._watch(
                        f"watch traffic {what}",
                        fn,
                        traffic.NAMESPACE,
                        resource_version=rv,
                        timeout=self.WATCH_SECONDS,
                        label_selector=selector,
                    ):
                        rv = obj["metadata"].get("resourceVersion", rv)
                        with self.changed:
                            apply(kind, obj)
                            self.changed.notify_all()
            except ClusterError:
                # Expired, dropped or refused: re-list after a moment. Waiters keep their own
                # timeout, and a prober that stays unseen is reported silent.
                self._closed.wait(0.5)

    def _report(self, kind: str, obj: dict[str, Any]) -> None:
        report = traffic.Report.from_data(obj.get("data") or {})
        if kind == "DELETED":
            self.reports.pop(report.node, None)
        else:
            seen = self.reports.get(report.node, (report, 0))[1]
            self.reports[report.node] = (report, seen + 1)

    def _prober(self, kind: str, obj: dict[str, Any]) -> None:
        node, name = (obj.get("spec") or {}).get("nodeName"), obj["metadata"]["name"]
        if not node:
            return
        alive = (obj.get("status") or {}).get("phase", "Pending") in ("Pending", "Running")
        if kind != "DELETED" and alive and not obj["metadata"].get("deletionTimestamp"):
            self.probers[node] = name
        elif self.probers.get(node) == name:
            del self.probers[node]

    def _wait(self, timeout: float, done: Callable[[], bool]) -> None:
        with self.changed:
            self.changed.wait_for(lambda: all(self.listed.values()) and done(), timeout)

    def first_reports(self, timeout: float) -> tuple[dict[str, str], list[str]]:
        """Wait until every prober has reported once: (probers, nodes still silent)."""
        self._wait(timeout, lambda: bool(self.probers) and set(self.probers) <= set(self.reports))
        with self.changed:
            return dict(self.probers), sorted(set(self.probers) - set(self.reports))

    def fresh_reports(self, timeout: float) -> tuple[list[traffic.Report], list[str]]:
        """Wait until every prober has written again since now (or ``timeout``): (reports of
        the running probers, nodes whose prober did not write)."""
        with self.changed:
            before = {n: seen for n, (_, seen) in self.reports.items()}

        def written(node: str) -> bool:
            return self.reports.get(node, (None, 0))[1] > before.get(node, 0)

        self._wait(timeout, lambda: all(written(n) for n in self.probers))
        with self.changed:
            silent = sorted(n for n in self.probers if not written(n))
            return [r for n, (r, _) in sorted(self.reports.items()) if n in self.probers], silent


class LeaseLock:
    """At most one executor per cluster: a coordination.k8s.io/v1 Lease, renewed in the
    background, taken over from another holder only after it expired."""

    NAME = "cni-migrate-executor"

    def __init__(
        self, cluster: KubernetesCluster, holder: str, duration: int = 30, on_lost: Callable[[str], None] | None = None
    ) -> None:
        self.cluster = cluster
        self.holder = holder
        self.duration = duration
        self.on_lost = on_lost
        self._stop = threading.Event()

    def _api(self) -> client.CoordinationV1Api:
        return self.cluster.coordination

    def _body(self, rv: str | None = None, holder: str | None = None) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        meta: dict[str, Any] = {"name": self.NAME, "namespace": TOOL_NAMESPACE}
        if rv:
            meta["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.holder if holder is None else holder,
                "leaseDurationSeconds": self.duration,
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def acquire(self) -> None:
        c = self.cluster
        c._ensure_namespace()
        try:
            current = c._json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
        except NotFound:
            try:
                c._call("create lease", self._api().create_namespaced_lease, TOOL_NAMESPACE, self._body())
                return
            except Conflict:
                raise LockHeld("another executor took the lease at the same moment; try again") from None
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.holder and not _expired(spec):
            raise LockHeld(
                f"another executor ({holder}) holds the lease {TOOL_NAMESPACE}/{self.NAME} "
                f"until it expires (renewed {spec.get('renewTime')}, {spec.get('leaseDurationSeconds')}s)"
            )
        try:
            c._call(
                "take lease",
                self._api().replace_namespaced_lease,
                self.NAME,
                TOOL_NAMESPACE,
                self._body(current["metadata"]["resourceVersion"]),
            )
        except Conflict:
            raise LockHeld("another executor took the lease at the same moment; try again") from None

    def holder_now(self) -> str | None:
        """Who holds the Lease and has renewed it in time ("X, renewed T"), or None: a
        read only, for status."""
        try:
            current = self.cluster._json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
        except NotFound:
            return None
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if not holder or _expired(spec):
            return None
        return f"{holder}, lease renewed {spec.get('renewTime')}"

    def renew(self) -> None:
        c = self.cluster
        current = c._json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
        if (current.get("spec") or {}).get("holderIdentity") != self.holder:
            raise LockHeld("the executor lease was taken over by another executor")
        body = self._body(current["metadata"]["resourceVersion"])
        body["spec"]["acquireTime"] = current["spec"].get("acquireTime")
        c._call("renew lease", self._api().replace_namespaced_lease, self.NAME, TOOL_NAMESPACE, body)

    def release(self) -> None:
        try:
            current = self.cluster._json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
            if (current.get("spec") or {}).get("holderIdentity") == self.holder:
                self.cluster._call(
                    "release lease",
                    self._api().replace_namespaced_lease,
                    self.NAME,
                    TOOL_NAMESPACE,
                    self._body(current["metadata"]["resourceVersion"], holder=""),
                )
        except (NotFound, Conflict, TemporaryError, PermanentError):
            pass  # it expires by itself; releasing early is only a courtesy

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration / 3):
            try:
                self.renew()
            except LockHeld as exc:
                if self.on_lost:
                    self.on_lost(exc.message)
                return
            except ClusterError:
                continue  # try again at the next tick; the lease lasts three ticks

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        self._stop.clear()
        renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            self._stop.set()
            renewer.join(timeout=5)
            self.release()


# -- object mapping ----------------------------------------------------------------------------------
LIST_HEAD = re.compile(rb'^\{"kind":"[A-Za-z]*List","apiVersion":"[^"]*","metadata":(\{[^{}]*\})')


def _list_head(body: bytes) -> dict[str, Any] | None:
    """The ListMeta (resourceVersion, continue) of a built-in list's body, read from its head
    without decoding the items: the API server writes kind, apiVersion and metadata first.
    None when the body does not start that way (custom resources put items first)."""
    found = LIST_HEAD.match(body[:4096])
    return json.loads(found.group(1)) if found else None  # type: ignore[no-any-return]


_collector = {"holds": 0, "paused": False}
_collector_lock = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while lists are decoded (the reads of every thread
    that asks, until the last is done). Decoding 30,000 pods makes millions of dicts and lists,
    each allocation counting towards a collection that walks everything still alive: measured
    at 1,000 nodes / 32,000 pods, 5.1 s to decode and map the pods with it on, 2.1 s with it
    off. Decoded JSON holds no reference cycles: reference counting frees all of it anyway."""
    with _collector_lock:
        if _collector["holds"] == 0 and gc.isenabled():
            gc.disable()
            _collector["paused"] = True
        _collector["holds"] += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector["holds"] -= 1
            if _collector["holds"] == 0 and _collector["paused"]:
                _collector["paused"] = False
                gc.enable()


def _offer(ahead: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put ``item`` once there is room, unless the reader has gone (``stop``)."""
    while not stop.is_set():
        try:
            ahead.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


K = TypeVar("K")


def _together(fn: Callable[[K], T], keys: Sequence[K]) -> dict[K, T]:
    """``fn`` for each key at once, each in a thread of its own (a helper pod's start-up is
    waiting on the API server and the node, not work here); every call is waited for, then the
    first error, if any, is raised."""
    if len(keys) < 2:
        return {key: fn(key) for key in keys}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(keys), thread_name_prefix="probe") as pool:
        futures = {key: pool.submit(fn, key) for key in keys}
        concurrent.futures.wait(futures.values())
    return {key: future.result() for key, future in futures.items()}


def _expired(spec: dict[str, Any]) -> bool:
    renew = spec.get("renewTime")
    if not renew:
        return True
    renewed = datetime.fromisoformat(renew.replace("Z", "+00:00"))
    return datetime.now(UTC) > renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def _pod_waiting(pod: dict[str, Any]) -> str:
    """Why a pod is not done yet, as the kubelet says: ``: waiting: ImagePullBackOff (…)``, or
    ``: not scheduled: …``, or nothing when the pod says nothing."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or status.get("initContainerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            detail = " ".join(str(waiting.get("message", "")).split())[:200]
            return f": waiting: {waiting['reason']}" + (f" ({detail})" if detail else "")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f": not scheduled: {condition.get('message') or condition.get('reason') or 'unknown'}"
    phase = status.get("phase")
    return f" (phase {phase})" if phase else ""


def _container_results(pod: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """Each container of a finished pod: (exited 0, its termination message, or why it did
    not finish: a pod past its deadline ends with containers still running or waiting)."""
    out = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        terminated = state.get("terminated")
        if terminated is not None:
            out[status["name"]] = (terminated.get("exitCode") == 0, str(terminated.get("message") or "").strip())
        else:
            reason = (state.get("waiting") or {}).get("reason") or next(iter(state), "no state")
            out[status["name"]] = (False, f"did not finish ({reason})")
    return out


def _termination_message(pod: dict[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("message"):
            return str(terminated["message"]).strip()
    return ""


def _quantity(value: Any, scale: int = 1) -> int:
    try:
        return int(parse_quantity(value) * scale) if value is not None else 0
    except (ValueError, TypeError, ArithmeticError):
        return 0


def _node(obj: dict[str, Any]) -> NodeInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    info = status.get("nodeInfo") or {}
    alloc = status.get("allocatable") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return NodeInfo(
        name=meta["name"],
        uid=meta["uid"],
        labels=frozen_map(meta.get("labels") or {}),
        taints=tuple(Taint(t["key"], t.get("effect", ""), t.get("value", "")) for t in spec.get("taints") or []),
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        kernel_version=info.get("kernelVersion", ""),
        os_image=info.get("osImage", ""),
        operating_system=info.get("operatingSystem", "") or (meta.get("labels") or {}).get("kubernetes.io/os", ""),
        cpu_millis=_quantity(alloc.get("cpu"), 1000),
        memory_bytes=_quantity(alloc.get("memory")),
        max_pods=_quantity(alloc.get("pods")) or 110,
        cni=Cni.UNKNOWN,
        resource_version=meta.get("resourceVersion", ""),
        boot_id=info.get("bootID", ""),
        addresses=tuple(
            a["address"]
            for a in status.get("addresses") or []
            if a.get("type") in ("InternalIP", "ExternalIP") and a.get("address")
        ),
    )


CALICO_NODE_DS = {("kube-system", "calico-node"), ("calico-system", "calico-node")}
# Installation.spec.calicoNetwork.nodeAddressAutodetectionV4 keys -> IP_AUTODETECTION_METHOD form
AUTODETECTION_KEYS = {
    "firstFound": "first-found",
    "kubernetes": "kubernetes-internal-ip",
    "interface": "interface",
    "skipInterface": "skip-interface",
    "canReach": "can-reach",
    "cidrs": "cidr",
}


def _calico_routing(
    installations: list[dict[str, Any]],
    calico_ds: dict[str, Any] | None,
    configmap: Callable[[str, str], dict[str, str]] = lambda namespace, name: {},
) -> tuple[bool, str]:
    """(BGP in use, node address autodetection method), from the Tigera Installation when
    the operator installed Calico, else from calico-node's environment, whose values may come
    from a ConfigMap (the manifest install's ``calico_backend`` in ``calico-config``: read with
    ``configmap(namespace, name)``); Calico's defaults (BGP on, first-found) where none says."""
    if installations:
        network = (installations[0].get("spec") or {}).get("calicoNetwork") or {}
        bgp = str(network.get("bgp", "Enabled")).lower() != "disabled"
        method = "first-found"
        for key, value in (network.get("nodeAddressAutodetectionV4") or {}).items():
            name = AUTODETECTION_KEYS.get(key)
            if name is None or value in (None, False, "", []):
                continue
            if key == "firstFound":
                method = "first-found"
            elif key == "kubernetes":
                method = name
            else:
                method = f"{name}={','.join(value) if isinstance(value, list) else value}"
        return bgp, method
    env: dict[str, str] = {}
    namespace = ((calico_ds or {}).get("metadata") or {}).get("namespace", "kube-system")
    for container in (((calico_ds or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []:
        if container.get("name") != "calico-node":
            continue
        for e in container.get("env") or []:
            if "name" not in e:
                continue
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef") or {}
            value = configmap(namespace, ref["name"]).get(ref["key"]) if ref.get("name") and ref.get("key") else None
            if value is not None:  # unresolved: the default applies, as for an unset variable
                env[e["name"]] = value
    backend = env.get("CALICO_NETWORKING_BACKEND", "bird").lower()
    return backend == "bird", env.get("IP_AUTODETECTION_METHOD", "first-found") or "first-found"


def _pod(obj: dict[str, Any]) -> PodInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    controller = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    annotations = meta.get("annotations") or {}
    cpu = memory = 0
    for container in spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += _quantity(requests.get("cpu"), 1000)
        memory += _quantity(requests.get("memory"))
    volumes = spec.get("volumes") or []
    return PodInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        node=spec.get("nodeName"),
        labels=frozen_map(meta.get("labels") or {}),
        owner=OwnerRef(controller["kind"], controller["name"]) if controller else None,
        phase=status.get("phase", "Pending"),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
        mirror="kubernetes.io/config.mirror" in annotations,
        emptydir=any("emptyDir" in v for v in volumes),
        cpu_millis=cpu,
        memory_bytes=memory,
        ip=status.get("podIP", ""),
        host_network=bool(spec.get("hostNetwork")),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _pdb(obj: dict[str, Any]) -> PDBInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    selector = spec.get("selector") or {}
    return PDBInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        selector=LabelSelector(
            match_labels=frozen_map(selector.get("matchLabels") or {}),
            match_expressions=tuple(
                (e["key"], e["operator"], tuple(e.get("values") or ())) for e in selector.get("matchExpressions") or []
            ),
        ),
        min_available=None if spec.get("minAvailable") is None else str(spec["minAvailable"]),
        max_unavailable=None if spec.get("maxUnavailable") is None else str(spec["maxUnavailable"]),
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
        current_healthy=int(status.get("currentHealthy") or 0),
        desired_healthy=int(status.get("desiredHealthy") or 0),
        expected_pods=int(status.get("expectedPods") or 0),
    )
