"""The lab: one directory that holds a control plane's state, started and stopped whole.

``KubeLab`` keeps the directory's layout and state file and puts the pieces together:
the PKI (``pki``), the components (``controlplane``, run by ``processes``), kwok nodes
(``nodes``) and the fixtures (``manifests``), all through the REST client (``rest``)."""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from . import controlplane, manifests, nodes
from .binaries import build, read_versions
from .errors import LabError
from .nodes import NodeSpec, default_node_specs
from .pki import write_kubeconfig, write_pki
from .processes import COMPONENTS, Processes, free_ports
from .rest import Api, wait


class KubeLab:
    """One lab = one directory. All state (PIDs, ports, PKI, logs, etcd data)
    lives there, so ``KubeLab(dir).down()`` from any process tears it down.

    Layout: ``kubeconfig`` (admin, certs embedded), ``state.json``,
    ``pki/``, ``run/<component>.pid``, ``logs/<component>.log``, ``etcd/``.
    """

    def __init__(
        self,
        workdir: Path | str,
        bin_dir: Path | str | None = None,
        *,
        pod_delete_delay_ms: int = 0,
        kwok_runs_pods: bool = True,
        die_with_parent: bool = False,
        verbosity: int = 1,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.pod_delete_delay_ms = pod_delete_delay_ms
        # False: kwok neither starts nor removes pods; a node agent of the tests plays the
        # kubelet (tests/realcluster/nodeagent.py: addresses from the node's current CNI, and
        # terminating pods removed with a UID precondition, as a kubelet does). kwok's own
        # pod-delete stage deletes by name, which can hit a StatefulSet's same-named
        # replacement when a stale event queues a second delete.
        self.kwok_runs_pods = kwok_runs_pods
        self.die_with_parent = die_with_parent
        self.verbosity = verbosity
        self.processes = Processes(self.workdir, die_with_parent=die_with_parent)
        self._api: Api | None = None

    # -- paths / state -----------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            st = self.state()
            self._bin_dir = Path(st["bin_dir"]) if st.get("bin_dir") else build()
        return self._bin_dir

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save_state(self, **updates: Any) -> None:
        st = self.state()
        st.update(updates)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    @property
    def server(self) -> str:
        return self.state()["server"]

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.server, self.pki)
        return self._api

    @property
    def kubernetes_version(self) -> str:
        return read_versions(self.bin_dir).get("kubernetes", "v0.0.0")

    def log_path(self, component: str) -> Path:
        return self.processes.log_path(component)

    # -- processes -----------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Component -> PID, for PID files whose process is still alive."""
        return self.processes.pids()

    def running(self) -> bool:
        return self.processes.running()

    def restart(self, name: str, *, down_seconds: float = 0.0, timeout: float = 60) -> None:
        """Stop one component this KubeLab started (SIGTERM to its process group, SIGKILL after
        10 s), keep it down ``down_seconds``, start it again with the same flags and wait
        until it serves. For outage tests: the clients see refused connections meanwhile."""
        self.processes.respawn(name, down_seconds=down_seconds)
        if name == "kube-apiserver":
            controlplane.wait_apiserver_ready(self.api, timeout, alive=self.processes.check_alive(name))

    # -- lifecycle ------------------------------------------------------------
    def up(
        self,
        nodes: int = 6,
        node_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        node_specs: list[NodeSpec] | None = None,
        fixtures: bool = True,
        timeout: float = 180,
    ) -> Path:
        """Start the control plane + kwok, create nodes, install the
        Calico/Cilium fixtures; return the admin kubeconfig path.
        Any failure tears everything down before raising."""
        if self.running():
            raise LabError(f"a lab is already running in {self.workdir} (run down first)")
        specs = node_specs if node_specs is not None else default_node_specs(nodes, node_overrides)
        t0 = time.monotonic()
        deadline = t0 + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for attempt in (1, 2):
                try:
                    self._start_control_plane(left)
                    break
                except LabError:
                    # free ports are picked by bind(0)+close; another process
                    # may grab one in between. Retry once with fresh ports.
                    if attempt == 2 or not any(
                        "address already in use" in self.processes.log_tail(c).lower() for c in COMPONENTS
                    ):
                        raise
                    self.down(keep_files=True)
            self.add_nodes(specs, timeout=left())
            wait(
                "default service account",
                lambda: self.api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                left(),
            )
            if fixtures:
                self.install_fixtures(timeout=left())
        except BaseException:
            self.down(keep_files=True)
            raise
        self._save_state(startup_seconds=round(time.monotonic() - t0, 1))
        return self.kubeconfig

    def _start_control_plane(self, left: Callable[[], float]) -> None:
        bin_dir = self.bin_dir
        controlplane.check_binaries(bin_dir)
        for sub in ("etcd", "run", "pki", "kcm", "scheduler"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        (etcd_client, etcd_peer, api_port, kcm_port, sched_port, kwok_port) = free_ports(6)
        server = f"https://127.0.0.1:{api_port}"
        ports = {
            "etcd": etcd_client,
            "etcd-peer": etcd_peer,
            "kube-apiserver": api_port,
            "kube-controller-manager": kcm_port,
            "kube-scheduler": sched_port,
            "kwok": kwok_port,
        }
        self._api = None
        self._save_state(
            bin_dir=str(bin_dir),
            server=server,
            versions=read_versions(bin_dir),
            ports=ports,
            next_node_index=1,
            started=datetime.datetime.now(datetime.UTC).isoformat(),
        )
        write_pki(self.pki)
        write_kubeconfig(self.kubeconfig, server, self.pki, "admin")
        for comp in ("kube-controller-manager", "kube-scheduler", "kwok"):
            write_kubeconfig(self.workdir / f"{comp}.kubeconfig", server, self.pki, comp, embed=False)
        controlplane.start(
            self.processes,
            bin_dir,
            ports,
            self.api,
            verbosity=self.verbosity,
            pod_delete_delay_ms=self.pod_delete_delay_ms,
            kwok_runs_pods=self.kwok_runs_pods,
            left=left,
        )

    # -- nodes and objects ----------------------------------------------------
    def add_nodes(self, specs: Iterable[NodeSpec], *, timeout: float = 60, wait: bool = True) -> list[str]:
        """Create kwok nodes (IPs/podCIDRs allocated from a counter in
        state.json) and, by default, wait until they are Ready and untainted."""
        names = []
        idx = int(self.state().get("next_node_index", 1))
        kubelet = self.kubernetes_version
        for spec in specs:
            obj = spec.manifest(index=idx, default_kubelet_version=kubelet)
            idx += 1
            self._save_state(next_node_index=idx)
            nodes.create_node(self.api, obj)
            names.append(spec.name)
        if wait:
            self.wait_nodes_ready(names, timeout=timeout)
        return names

    def add_node(self, name: str, *, wait: bool = True, **fields: Any) -> str:
        """``lab.add_node("old-1", kernel_version="4.19.0")`` (NodeSpec fields)."""
        return self.add_nodes([NodeSpec(name=name, **fields)], wait=wait)[0]

    def delete_nodes(self, names: Iterable[str], *, timeout: float = 30) -> None:
        """Delete nodes and force-delete the pods bound to them (what the
        pod GC controller would do after its 40s orphan quarantine)."""
        nodes.delete_nodes(self.api, names, timeout=timeout)

    def stop_node(self, name: str) -> None:
        """The node's machine stops: NotReady, and kwok leaves it so (``nodes.stop_node``)."""
        nodes.stop_node(self.api, name)

    def start_node(self, name: str, *, wait: bool = True, timeout: float = 60) -> None:
        """The stopped node's machine is back: kwok makes it Ready (waited for, by default)."""
        nodes.start_node(self.api, name)
        if wait:
            self.wait_nodes_ready([name], timeout=timeout)

    def wait_nodes_ready(self, names: Iterable[str] | None = None, *, timeout: float = 60) -> None:
        nodes.wait_nodes_ready(self.api, names, timeout=timeout, alive=self.processes.check_alive(*COMPONENTS))

    def apply_manifest(self, docs: Iterable[Mapping[str, Any]], *, timeout: float = 60) -> None:
        """Server-side apply docs; CRDs first, waiting until they are served."""
        manifests.apply_manifest(self.api, docs, timeout=timeout)

    def install_fixtures(self, *, timeout: float = 60) -> None:
        """Calico (operator Installation, IPPool, calico-node DaemonSet) and
        the Cilium CRDs; waits until calico-node is Ready on every node."""
        manifests.install_fixtures(self.api, timeout=timeout, alive=self.processes.check_alive(*COMPONENTS))

    # -- teardown -------------------------------------------------------------
    def down(self, *, timeout: float = 10, keep_files: bool = False, keep_logs: bool = False) -> list[int]:
        """Stop every lab process (``Processes.stop``: clients first, the apiserver after
        2 s at most, etcd last; SIGKILL after ``timeout``), then remove the lab's files
        unless asked to keep them. Works from any process. Returns signalled PIDs."""
        signalled = self.processes.stop(timeout=timeout)
        shutil.rmtree(self.workdir / "run", ignore_errors=True)
        if not keep_files and self.workdir.exists():
            self._remove_files(keep_logs=keep_logs)
        return signalled

    def _remove_files(self, *, keep_logs: bool) -> None:
        """Remove only what the lab creates; the dir goes if left empty."""
        w = self.workdir
        for sub in ("etcd", "pki", "kcm", "scheduler", "run"):
            shutil.rmtree(w / sub, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(w / "logs", ignore_errors=True)
        for f in (
            "kubeconfig",
            "state.json",
            "state.tmp",
            "kwok.yaml",
            "kube-scheduler.yaml",
            "kube-controller-manager.kubeconfig",
            "kube-scheduler.kubeconfig",
            "kwok.kubeconfig",
        ):
            with contextlib.suppress(FileNotFoundError):
                (w / f).unlink()
        with contextlib.suppress(OSError):
            w.rmdir()

    def __enter__(self) -> KubeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
