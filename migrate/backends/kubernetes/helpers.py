"""Helper pods: short-lived pods in the tool's namespace, pinned to a node and labelled
``cni-migrate.io/role``, that do node-level work (read ``/etc/cni/net.d``, restore Calico's
configuration, reboot the host through its init: ``hostreboot``) or run validation probes.
Their result is read from the container's termination message; they are always deleted."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate.backends.kubernetes import hostreboot
from migrate.backends.kubernetes.mapping import pod_waiting, termination_message
from migrate.backends.kubernetes.watching import Collection, Objects, list_then_watch
from migrate.backends.rbac import TOOL_NAMESPACE
from migrate.errors import Conflict, NotFound, PermanentError, TemporaryError
from migrate.ports import NodeTask

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster


ROLE_LABEL = "cni-migrate.io/role"


NODE_LABEL = "cni-migrate.io/node"


TASK_LABEL = "cni-migrate.io/task"


FOR_LABEL = "cni-migrate.io/for"  # the node whose check a helper pod serves (it may run on a peer)


TASK_SCRIPTS = {
    NodeTask.READ_CNI: "cd /host/etc/cni/net.d && ls -1a > /dev/termination-log",
    NodeTask.RESTORE_CALICO_CNI: (
        "set -e; cd /host/etc/cni/net.d; "
        "if [ -f 05-cilium.conflist ]; then mv -f 05-cilium.conflist 05-cilium.conflist.cni-migrate-bak; fi; "
        'for f in *.cilium_bak; do [ -e "$f" ] && mv -f "$f" "${f%.cilium_bak}"; done; '
        "ls -1a > /dev/termination-log"
    ),
}


class HelperPods:
    """The cluster's helper pods: run one (and wait for it), delete them, clear leftovers."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.rest, self.core = cluster.rest, cluster.core

    def stale(self, node: str, role: str) -> list[dict[str, Any]]:
        items, _ = self.rest.list_all(
            f"list {role} pods",
            self.core.list_namespaced_pod,
            TOOL_NAMESPACE,
            label_selector=f"{ROLE_LABEL}={role},{NODE_LABEL}={node}",
        )
        return items

    def cleanup(self, node: str | None = None) -> int:
        """Delete task and probe pods (and probe Services) left by a killed run (resume calls
        this first)."""
        selector = ROLE_LABEL + (f",{NODE_LABEL}={node}" if node else "")
        try:
            items, _ = self.rest.list_all(
                "list helper pods", self.core.list_namespaced_pod, TOOL_NAMESPACE, label_selector=selector
            )
        except NotFound:
            return 0
        for obj in items:
            try:
                self.rest.call(
                    "delete helper pod",
                    self.core.delete_namespaced_pod,
                    obj["metadata"]["name"],
                    TOOL_NAMESPACE,
                    grace_period_seconds=0,
                )
            except NotFound:
                continue  # already gone
        services, _ = self.rest.list_all(
            "list probe services", self.core.list_namespaced_service, TOOL_NAMESPACE, label_selector=selector
        )
        for obj in services:
            self.delete(obj["metadata"]["name"], "service")
        net = client.NetworkingV1Api(self.cluster.api)
        policies, _ = self.rest.list_all(
            "list probe networkpolicies", net.list_namespaced_network_policy, TOOL_NAMESPACE, label_selector=selector
        )
        for obj in policies:
            with contextlib.suppress(NotFound):
                name = obj["metadata"]["name"]
                self.rest.call(
                    f"delete networkpolicy {name}", net.delete_namespaced_network_policy, name, TOOL_NAMESPACE
                )
        return len(items) + len(services) + len(policies)

    def start(
        self,
        node: str,
        role: str,
        name_hint: str,
        container: dict[str, Any] | list[dict[str, Any]],
        timeout: float,
        *,
        host_paths: bool = False,
        host_pid: bool = False,
        labels: dict[str, str] | None = None,
        for_node: str = "",
        clean: bool = True,
    ) -> dict[str, Any]:
        """Create a pinned helper pod of one container or several (which run side by side) and
        return it as created; ``wait`` for it.
        ``for_node``: the node whose check this pod serves (default ``node``); a peer node
        may host pods of several nodes' checks at once (a parallel wave).
        ``host_pid``: privileged, in the host's PID namespace (to enter its PID 1's namespaces).
        ``clean``: first delete what an earlier attempt of this very task left on the node
        (validation clears its checks' pods itself, ``Probes.checks_cleared``)."""
        self.cluster.ensure_namespace()
        owner = for_node or node
        for stale in self.stale(node, role) if clean else ():
            marks = stale["metadata"].get("labels", {})
            # Left by an earlier attempt of this very check; never another node's check.
            if marks.get(TASK_LABEL) == name_hint and marks.get(FOR_LABEL, node) == owner:
                self.delete(stale["metadata"]["name"])
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
        if host_pid:
            pod["spec"]["hostPID"] = True
            pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}

        def create() -> dict[str, Any]:
            return self.rest.json(f"create {role} pod on {node}", self.core.create_namespaced_pod, TOOL_NAMESPACE, pod)

        try:
            try:
                created = create()
            except NotFound:  # the namespace was deleted under the run: make it again, once
                self.cluster.ensure_namespace(again=True)
                created = create()
        except Conflict:
            # The name is ours alone (random per call): AlreadyExists means an earlier attempt
            # of this very create succeeded and only its answer was lost.
            created = self.rest.json(f"get {role} pod on {node}", self.core.read_namespaced_pod, name, TOOL_NAMESPACE)
        return created

    def run(
        self,
        node: str,
        role: str,
        name_hint: str,
        container: dict[str, Any] | list[dict[str, Any]],
        timeout: float,
        *,
        host_paths: bool = False,
        host_pid: bool = False,
        until_running: bool = False,
        keep: list[str] | None = None,
        labels: dict[str, str] | None = None,
        for_node: str = "",
        clean: bool = True,
    ) -> dict[str, Any]:
        """``start`` a helper pod, wait for it to finish (or run), return it; delete it, unless
        ``keep`` is given: then its name goes there and the caller deletes it."""
        created = self.start(
            node,
            role,
            name_hint,
            container,
            timeout,
            host_paths=host_paths,
            host_pid=host_pid,
            labels=labels,
            for_node=for_node,
            clean=clean,
        )
        name = created["metadata"]["name"]
        if keep is not None:
            keep.append(name)
            return self.wait([created], timeout, until_running)[0]
        try:
            return self.wait([created], timeout, until_running)[0]
        finally:
            self.delete(name)

    def delete(self, name: str, kind: str = "pod") -> None:
        # Gone already (404) is all we wanted.
        with contextlib.suppress(NotFound):
            if kind == "service":
                self.rest.call(f"delete service {name}", self.core.delete_namespaced_service, name, TOOL_NAMESPACE)
            else:
                self.rest.call(
                    f"delete pod {name}",
                    self.core.delete_namespaced_pod,
                    name,
                    TOOL_NAMESPACE,
                    grace_period_seconds=0,
                )

    def wait(self, pods: Sequence[dict[str, Any]], timeout: float, until_running: bool) -> list[dict[str, Any]]:
        """The pods, as created, once each has finished (or runs with an address,
        ``until_running``), in their order: one watch for them all, of the pod by its name, or
        of several (started together for one task, on several nodes) by their role, task and
        owner labels. A finished pod keeps the address it ran with: kubelets 1.27-1.30 drop it
        from the first terminal status (kubernetes#125370), so the last one seen is put back."""
        deadline = time.monotonic() + timeout
        latest = {pod["metadata"]["name"]: pod for pod in pods}  # as last seen, for the error
        addresses = dict.fromkeys(latest, "")
        finished: dict[str, dict[str, Any]] = {}

        def done(obj: dict[str, Any]) -> bool:
            name, status = obj["metadata"]["name"], obj.get("status") or {}
            addresses[name] = status.get("podIP") or addresses[name]
            phase = status.get("phase")
            if phase in ("Succeeded", "Failed") and not status.get("podIP") and addresses[name]:
                obj["status"] = {**status, "podIP": addresses[name]}
            return phase in ("Succeeded", "Failed") or (
                until_running and phase == "Running" and bool(status.get("podIP"))
            )

        def seen(_kind: str, obj: dict[str, Any]) -> bool | None:
            name = obj["metadata"]["name"]
            if name in latest and name not in finished:
                latest[name] = obj
                if done(obj):
                    finished[name] = obj
            return True if len(finished) == len(latest) else None

        def listed(items: list[dict[str, Any]]) -> bool | None:
            for item in items:
                seen("ADDED", item)
            return True if len(finished) == len(latest) else None

        versions = [pod["metadata"]["resourceVersion"] for pod in pods]
        # The created pods are the first read, watched from the oldest of their versions (the
        # API server's are etcd revisions; where they are not numbers, the pods are listed).
        first: Objects | None = (list(pods), min(versions, key=int)) if all(v.isdigit() for v in versions) else None
        if len(pods) == 1:
            name = pods[0]["metadata"]["name"]
            these = Collection(
                "pod", self.core.list_namespaced_pod, (TOOL_NAMESPACE,), {"field_selector": f"metadata.name={name}"}
            )

            def read() -> Objects:
                again = self.rest.json("get pod", self.core.read_namespaced_pod, name, TOOL_NAMESPACE)
                return [again], again["metadata"]["resourceVersion"]

            # A watch that drops or expires reads the pod again, then watches from there.
            list_then_watch(self.rest, these, seen, on_list=listed, deadline=deadline, first=first, read=read)
        else:
            marks = pods[0]["metadata"]["labels"]
            selector = ",".join(f"{key}={marks[key]}" for key in (ROLE_LABEL, TASK_LABEL, FOR_LABEL))
            these = Collection("pods", self.core.list_namespaced_pod, (TOOL_NAMESPACE,), {"label_selector": selector})
            list_then_watch(self.rest, these, seen, on_list=listed, deadline=deadline, first=first)
        for name, pod in latest.items():
            if name not in finished:
                raise TemporaryError(f"pod {name} did not finish within {timeout:.0f}s{pod_waiting(pod)}")
        return [finished[name] for name in latest]

    def run_task(self, node: str, task: NodeTask, timeout: float) -> str:
        def container(script: str) -> dict[str, Any]:
            return {"name": "task", "image": self.cluster.node_image, "command": ["sh", "-c", script]}

        if task is NodeTask.REBOOT:
            script = hostreboot.reboot_script(hostreboot.grace_for(timeout))
            try:
                done = self.run(node, "node-task", task.value, container(script), timeout, host_pid=True)
            except (PermanentError, TemporaryError):
                # The node goes down under its pod: however the pod ends, the node's new boot
                # ID (wait_node_rebooted) is the proof, not the pod's phase.
                return "reboot requested"
            message = termination_message(done)
            if message.startswith(hostreboot.REFUSED):
                raise PermanentError(f"node task reboot on {node}: {message}")
            return message or "reboot requested"
        if task is NodeTask.REBOOT_RECORD:
            script = hostreboot.record_script()
            done = self.run(node, "node-task", task.value, container(script), timeout, host_pid=True)
            return termination_message(done) or "unknown"
        done = self.run(node, "node-task", task.value, container(TASK_SCRIPTS[task]), timeout, host_paths=True)
        message = termination_message(done)
        if done["status"]["phase"] != "Succeeded":
            raise PermanentError(f"node task {task.value} on {node} failed: {message or 'no message'}")
        return message
