"""The e2e suite's plumbing: images.yaml, prerequisites, the kind cluster, kubectl, and
the prober's summary (reusable by the migration tests of issue 11).

Everything here shells out to the real tools (kind, kubectl, docker): the suite tests the
cluster the way an operator sees it. Failures that are the machine's, not the code's
(a missing tool, an image that is not there) become one line through ``Missing``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

E2E = Path(__file__).resolve().parent
REPO = E2E.parent
IMAGES_FILE = E2E / "images.yaml"
LABPOD_MANIFEST = E2E / "manifests" / "labpod.yaml"
LAB_BUILD = E2E / "images" / "build"
LABPOD_BUILD = E2E / "images" / "labpod" / "build"
LAB_CNI = E2E / "kind" / "lab-cni"
MODES = ("local", "upstream")


class Missing(Exception):
    """A prerequisite is missing: one line each, no traceback."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def images(mode: str) -> dict[str, Any]:
    """images.yaml's column for ``mode``: {key: value}."""
    data = yaml.safe_load(IMAGES_FILE.read_text())
    return {key: (col or {}).get(mode) for key, col in data.items()}


def one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out = lines[-1] if lines else ""
    return out if len(out) <= limit else out[: limit - 3] + "..."


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; on failure raise with the command and its last line."""
    proc = subprocess.run(list(cmd), env=env, timeout=timeout, input=input, text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exit {proc.returncode}: {one_line(proc.stderr or proc.stdout)}")
    return proc


# -- tools and images ------------------------------------------------------------------------
@dataclass
class Lab:
    """What the chosen image mode gives the suite: tool paths and image references."""

    mode: str
    kind: str
    kubectl: str
    helm: str
    node_image: str
    labpod_image: str
    labpod_archive: str
    cluster_config: Path
    calico_images: list[str] = field(default_factory=list)
    # cni-migrate's validation pods (apply --probe-image/--node-image): one lab image holds
    # agnhost and busybox; upstream, cni-migrate's defaults are pulled by the nodes.
    probe_image: str = ""
    node_task_image: str = ""
    probe_archive: str = ""
    calico_archive: str = ""  # local: e2e/images/calico/build's archive of calico_images
    calico_manifest: str = ""  # the module's calico-vxlan.yaml + e2e/manifests/calico (rendered)
    # local: e2e/images/cilium/build's agent and operator images (archives to kind load), the
    # chart from the pinned module and the lab's values (plan --cilium-chart/--cilium-values)
    cilium_archives: list[str] = field(default_factory=list)
    cilium_chart: str = ""
    cilium_values: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _kv_lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            out[key] = value
    return out


def _engine_answers() -> bool:
    return shutil.which("docker") is not None and run(["docker", "info"], check=False, timeout=30).returncode == 0


def _image_present(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], check=False, timeout=60).returncode == 0


def prepare_local() -> Lab:
    """--images local: e2e/images/build (cached) builds or reuses the whole lab."""
    missing = []
    if os.geteuid() != 0:
        missing.append("e2e --images local: must run as root (dockerd, debootstrap)")
    if not LAB_BUILD.exists():
        missing.append(f"e2e --images local: {LAB_BUILD} not found")
    if missing:
        raise Missing(missing)
    start = time.monotonic()
    proc = run(["nice", "-n", "10", str(LAB_BUILD)], check=False, timeout=3600)
    took = time.monotonic() - start
    if proc.returncode != 0:
        # e2e/images/build prints one line per missing prerequisite, prefixed "images/build:".
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("images/build:", "dockerd-up:"))]
        raise Missing(lines or [f"e2e/images/build failed: {one_line(proc.stderr)}"])
    kv = _kv_lines(proc.stdout)
    col = images("local")
    if kv.get("NODE_IMAGE") != col["node"]:
        raise Missing([f"images.yaml says node image {col['node']}, e2e/images/build made {kv.get('NODE_IMAGE')}"])
    calico_keys = ("CALICO_NODE_IMAGE", "CALICO_CNI_IMAGE", "CALICO_KUBE_CONTROLLERS_IMAGE")
    calico = sorted(kv[k] for k in calico_keys if k in kv)
    if calico and calico != sorted(col.get("calico") or []):
        raise Missing([f"images.yaml says Calico images {col.get('calico')}, e2e/images/build made {calico}"])
    lab = Lab(
        mode="local",
        kind=kv["KIND"],
        kubectl=kv["KUBECTL"],
        helm=kv["HELM"],
        node_image=kv["NODE_IMAGE"],
        labpod_image=kv["LABPOD_IMAGE"],
        labpod_archive=kv["LABPOD_ARCHIVE"],
        cluster_config=E2E / col["cluster_config"],
        # no CALICO_* lines: e2e/images/build skipped or failed Calico (said on stderr)
        calico_images=calico,
        calico_archive=kv.get("CALICO_ARCHIVE", ""),
        calico_manifest=kv.get("CALICO_MANIFEST", ""),
        probe_image=kv["PROBE_IMAGE"],
        node_task_image=kv["PROBE_IMAGE"],
        probe_archive=kv["PROBE_ARCHIVE"],
        cilium_archives=[kv[k] for k in ("CILIUM_ARCHIVE", "CILIUM_OPERATOR_ARCHIVE") if kv.get(k)],
        cilium_chart=kv.get("CILIUM_CHART", ""),
        cilium_values=kv.get("CILIUM_VALUES", ""),
    )
    lab.timings["lab build (e2e/images/build)"] = took
    return lab


def prepare_upstream() -> Lab:
    """--images upstream: kind, kubectl, helm from PATH (or $KIND/$KUBECTL/$HELM), the pinned
    kindest/node pulled if absent; labpod still built here (there is no upstream labpod)."""
    col = images("upstream")
    missing = []
    tools = {}
    for name in ("kind", "kubectl", "helm", "go"):
        path = os.environ.get(name.upper()) or shutil.which(name)
        if not path:
            missing.append(f"e2e --images upstream: {name} not found in PATH (or ${name.upper()})")
        tools[name] = path or ""
    if not _engine_answers():
        missing.append("e2e: no Docker engine answers `docker info` (start one; here: e2e/images/dockerd-up)")
    if missing:
        raise Missing(missing)
    node = col["node"]
    start = time.monotonic()
    if not _image_present(node) and run(["docker", "pull", node], check=False, timeout=1200).returncode != 0:
        raise Missing([f"e2e --images upstream: cannot pull {node} (no registry access? use --images local)"])
    proc = run(["nice", "-n", "10", str(LABPOD_BUILD)], check=False, timeout=600)
    if proc.returncode != 0:
        raise Missing([f"e2e: labpod build failed: {one_line(proc.stderr)}"])
    kv = _kv_lines(proc.stdout)
    lab = Lab(
        mode="upstream",
        kind=tools["kind"],
        kubectl=tools["kubectl"],
        helm=tools["helm"],
        node_image=node,
        labpod_image=kv["LABPOD_IMAGE"],
        labpod_archive=kv["LABPOD_ARCHIVE"],
        cluster_config=E2E / col["cluster_config"],
        calico_images=list(col.get("calico") or []),
        probe_image=col["probe"]["probe_image"],
        node_task_image=col["probe"]["node_image"],
    )
    lab.timings["images (pull if absent + labpod build)"] = time.monotonic() - start
    return lab


def calico_images_available(lab: Lab) -> bool:
    """True when every Calico image of the mode is in the local engine (pulled or built) and
    there is a manifest for them. Only --images local has one so far (e2e/images/calico/build
    renders it); upstream mode keeps the stand-in CNI."""
    return (
        bool(lab.calico_images and lab.calico_manifest)
        and Path(lab.calico_manifest).is_file()
        and all(_image_present(ref) for ref in lab.calico_images)
    )


def cilium_available(lab: Lab) -> bool:
    """True when e2e/images/cilium/build made both images, and the chart and values exist."""
    return (
        len(lab.cilium_archives) == 2
        and all(Path(a).is_file() for a in lab.cilium_archives)
        and Path(lab.cilium_chart, "Chart.yaml").is_file()
        and Path(lab.cilium_values).is_file()
    )


# -- the cluster -------------------------------------------------------------------------------
@dataclass
class Cluster:
    name: str
    kubeconfig: Path
    lab: Lab
    cni: str = "stand-in"  # or "calico"

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECTL": self.lab.kubectl}

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> str:
        cmd = [self.lab.kubectl, "--kubeconfig", str(self.kubeconfig), "--context", self.context, *args]
        return run(cmd, timeout=timeout, check=check, input=input).stdout

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def raw(self, path: str) -> Any:
        return json.loads(self.kubectl("get", "--raw", path))

    def post_raw(self, path: str) -> str:
        return self.kubectl("create", "--raw", path, "-f", "-", input="")

    def nodes(self) -> list[dict[str, Any]]:
        return self.json("get", "nodes")["items"]

    def workers(self) -> list[str]:
        return sorted(
            n["metadata"]["name"]
            for n in self.nodes()
            if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})
        )

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", namespace]
        if selector:
            args += ["-l", selector]
        return self.json(*args)["items"]


def kind_clusters(lab: Lab) -> list[str]:
    return run([lab.kind, "get", "clusters"], timeout=60).stdout.split()


def create_cluster(lab: Lab, name: str, kubeconfig: Path) -> Cluster:
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            lab.kind,
            "create",
            "cluster",
            "--name",
            name,
            "--image",
            lab.node_image,
            "--config",
            str(lab.cluster_config),
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "0s",
        ],
        timeout=900,
    )
    return Cluster(name, kubeconfig, lab)


def delete_cluster(lab: Lab, name: str, kubeconfig: Path) -> None:
    run([lab.kind, "delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig)], timeout=300, check=False)


def load_archive(cluster: Cluster, archive: str) -> None:
    run([cluster.lab.kind, "load", "image-archive", "--name", cluster.name, archive], timeout=600)


def install_stand_in_cni(cluster: Cluster) -> None:
    run([str(LAB_CNI), cluster.name], env=cluster.env(), timeout=300)
    cluster.cni = "stand-in"


def install_calico(cluster: Cluster) -> None:
    """Apply the rendered Calico manifest. Server-side: its CRDs are too large for the
    last-applied annotation of a client-side apply. The images must be on the nodes already
    (load_archive of lab.calico_archive)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", cluster.lab.calico_manifest, timeout=300)
    cluster.cni = "calico"


def wait_calico(cluster: Cluster, timeout: int = 300) -> None:
    """calico-node Ready on every node (the DaemonSet fully available), kube-controllers too."""
    for what in ("ds/calico-node", "deploy/calico-kube-controllers"):
        cluster.kubectl("-n", "kube-system", "rollout", "status", what, f"--timeout={timeout}s", timeout=timeout + 30)


def detect_cni(cluster: Cluster) -> str:
    """For --reuse: 'calico' when the cluster runs calico-node, else 'stand-in'."""
    out = cluster.kubectl("-n", "kube-system", "get", "ds", "-o", "name", check=False)
    return "calico" if "daemonset.apps/calico-node" in out.split() else "stand-in"


def wait_ready(cluster: Cluster, timeout: int = 240) -> None:
    cluster.kubectl("wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={timeout}s", timeout=timeout + 30)
    cluster.kubectl(
        "-n", "kube-system", "rollout", "status", "deploy/coredns", f"--timeout={timeout}s", timeout=timeout + 30
    )


PRESTOP = "lifecycle: {preStop: {sleep: {seconds: 5}}}"


def deploy_labpod(cluster: Cluster, prestop_seconds: int = 5, timeout: int = 180) -> None:
    """Apply labpod.yaml (web Deployment + PDB, db StatefulSet + PDB, prober DaemonSet, the
    policy pair: a target behind a NetworkPolicy and an allowed and a denied client);
    prestop_seconds replaces web's preStop pause (0: none, to measure
    what a workload that exits at once on SIGTERM loses in a drain)."""
    manifest = LABPOD_MANIFEST.read_text().replace("LABPOD_IMAGE", cluster.lab.labpod_image)
    if PRESTOP not in manifest:
        raise RuntimeError(f"{LABPOD_MANIFEST} lost web's preStop line ({PRESTOP})")
    pause = f"lifecycle: {{preStop: {{sleep: {{seconds: {prestop_seconds}}}}}}}"
    manifest = manifest.replace(PRESTOP, pause if prestop_seconds else "lifecycle: null")
    cluster.kubectl("apply", "-f", "-", input=manifest)
    cluster.kubectl("-n", "e2e", "rollout", "status", "deploy/web", f"--timeout={timeout}s", timeout=timeout + 30)
    cluster.kubectl("-n", "e2e", "rollout", "status", "ds/prober", f"--timeout={timeout}s", timeout=timeout + 30)
    cluster.kubectl("-n", "e2e", "rollout", "status", "sts/db", f"--timeout={timeout}s", timeout=timeout + 30)
    for deploy in ("policy-target", "client-allowed", "client-denied"):
        cluster.kubectl(
            "-n", "e2e", "rollout", "status", f"deploy/{deploy}", f"--timeout={timeout}s", timeout=timeout + 30
        )


# -- the prober's summary ----------------------------------------------------------------------
def target_kind(target: str) -> str:
    """'dns' (a name did not resolve), 'service-ip' (the web Service at the ClusterIP its
    name resolved to: the datapath without DNS), 'peer' (a prober pod by IP) or 'service'
    (the web Service by name: a DNS lookup, then the datapath)."""
    if target.startswith("dns:"):
        return "dns"
    if target.startswith("svcip:"):
        return "service-ip"
    host = urlsplit(target).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "service"
    return "peer"


@dataclass(frozen=True)
class TargetStats:
    target: str
    kind: str
    requests: int
    failures: int
    longest_ms: int  # longest interruption, including one still in progress
    last_error: str


@dataclass(frozen=True)
class ProberReport:
    pod: str
    node: str
    targets: tuple[TargetStats, ...]


@dataclass(frozen=True)
class Summary:
    """Every prober's /stats at one moment."""

    reports: tuple[ProberReport, ...]

    def select(
        self,
        kinds: Iterable[str] = ("service", "peer", "dns"),
        exclude_nodes: Iterable[str] = (),
        exclude_targets: Iterable[str] = (),
    ) -> list[tuple[str, TargetStats]]:
        kinds, skip, gone = set(kinds), set(exclude_nodes), set(exclude_targets)
        return [
            (r.node, t)
            for r in self.reports
            if r.node not in skip
            for t in r.targets
            if t.kind in kinds and t.target not in gone
        ]

    def departed(self, live: Iterable[str]) -> list[str]:
        """Peer targets whose address no running prober has any more (``live``: their IPs):
        pods restarted onto new addresses or deleted, which a prober keeps probing until its
        next lookup of the peers' name (every 5 s); their failures are no interruption."""
        alive = set(live)
        return sorted({t.target for _, t in self.select(kinds=("peer",)) if urlsplit(t.target).hostname not in alive})

    def requests(self, **kw: Any) -> int:
        return sum(t.requests for _, t in self.select(**kw))

    def failed(self, **kw: Any) -> int:
        """Total failed requests."""
        return sum(t.failures for _, t in self.select(**kw))

    def longest_by_node(self, **kw: Any) -> dict[str, int]:
        """Per prober node: the longest interruption (ms) over its targets."""
        out = {r.node: 0 for r in self.reports if r.node not in set(kw.get("exclude_nodes", ()))}
        for node, t in self.select(**kw):
            out[node] = max(out[node], t.longest_ms)
        return out

    def interrupted(self, longer_than_ms: int, **kw: Any) -> list[str]:
        """Targets whose longest interruption (one in progress included) exceeds the given
        length, or that never answered: a broken path, not a lone timeout on a busy machine."""
        return [
            f"{node} -> {t.target}: {t.failures}/{t.requests} failed, longest {t.longest_ms} ms ({t.last_error})"
            for node, t in self.select(**kw)
            if t.longest_ms > longer_than_ms or (t.requests and t.failures == t.requests)
        ]

    def failures_lines(self, **kw: Any) -> list[str]:
        return [
            f"{node} -> {t.target}: {t.failures}/{t.requests} failed, longest {t.longest_ms} ms ({t.last_error})"
            for node, t in self.select(**kw)
            if t.failures
        ]

    def table(self) -> str:
        rows = [f"{'from node':<28} {'target':<44} {'req':>6} {'fail':>5} {'longest ms':>10}"]
        for r in sorted(self.reports, key=lambda r: r.node):
            for t in sorted(r.targets, key=lambda t: (t.kind, t.target)):
                rows.append(f"{r.node:<28} {t.target:<44} {t.requests:>6} {t.failures:>5} {t.longest_ms:>10}")
        return "\n".join(rows)


def parse_time(value: str) -> float:
    # Go's RFC 3339 with nanoseconds: keep microseconds for Python.
    from datetime import datetime

    value = value.replace("Z", "+00:00")
    head, _, rest = value.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits) :]
        value = f"{head}.{digits[:6]}{tz}"
    return datetime.fromisoformat(value).timestamp()


def prober_pods(cluster: Cluster) -> list[dict[str, Any]]:
    return [p for p in cluster.pods("e2e", "app=prober") if p["status"].get("phase") == "Running"]


def prober_ips(cluster: Cluster) -> set[str]:
    return {p["status"]["podIP"] for p in prober_pods(cluster) if p["status"].get("podIP")}


def prober_summary(cluster: Cluster) -> Summary:
    reports = []
    now = time.time()
    for pod in prober_pods(cluster):
        name = pod["metadata"]["name"]
        data = cluster.raw(f"/api/v1/namespaces/e2e/pods/{name}:8080/proxy/stats")
        targets = []
        for target, s in sorted((data.get("targets") or {}).items()):
            longest = int(s.get("longest_outage_ms", 0))
            if s.get("outage_since"):
                longest = max(longest, int((now - parse_time(s["outage_since"])) * 1000))
            targets.append(
                TargetStats(
                    target,
                    target_kind(target),
                    int(s.get("requests", 0)),
                    int(s.get("failures", 0)),
                    longest,
                    s.get("last_error", ""),
                )
            )
        reports.append(ProberReport(name, pod["spec"]["nodeName"], tuple(targets)))
    return Summary(tuple(reports))


class ProberLogs:
    """Follows every prober pod's log while a scenario runs (``with ProberLogs(...) as logs``).

    Each failed request is one JSON line on a prober's stdout; a run restarts the probers
    (they are DaemonSet pods on the nodes it moves), and a deleted pod's log and /stats go
    with it, so this keeps following new prober pods (polled every 2 s) and keeps what
    every one of them said: ``failures()`` are all of the scenario's failed requests.
    """

    def __init__(self, cluster: Cluster, directory: Path, poll: float = 2.0) -> None:
        self.cluster, self.dir, self.poll = cluster, directory, poll
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ProberLogs:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        time.sleep(1)  # the last lines in flight
        for proc in self._procs.values():
            proc.terminate()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                pods = prober_pods(self.cluster)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError):
                pods = []  # the API server is busy or restarting: ask again
            for pod in pods:
                name = pod["metadata"]["name"]
                if name in self._procs and self._procs[name].poll() is None:
                    continue
                # A pod seen before whose follower ended (its container restarted, or the
                # API server dropped the stream): follow it again, into a fresh file.
                self._files[name] = self._files.get(name, 0) + 1
                out = (self.dir / f"{name}.{self._files[name]}.log").open("wb")
                cmd = [self.cluster.lab.kubectl, "--kubeconfig", str(self.cluster.kubeconfig)]
                cmd += ["--context", self.cluster.context, "-n", "e2e", "logs", "-f", name]
                self._procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
            self._stop.wait(self.poll)

    def failures(self) -> list[dict[str, Any]]:
        """Every failure line seen, once each (a re-followed log repeats its start), by send time."""
        seen: dict[tuple[str, str, str], dict[str, Any]] = {}
        for path in sorted(self.dir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and item.get("event") == "failure":
                    seen[(item.get("from_pod", ""), item.get("target", ""), item.get("ts", ""))] = item
        return sorted(seen.values(), key=lambda f: parse_time(f["ts"]))


def failure_counts(failures: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Failed requests per target kind (service, service-ip, peer, dns)."""
    out = {"service": 0, "service-ip": 0, "peer": 0, "dns": 0}
    for f in failures:
        kind = target_kind(f.get("target", ""))
        out[kind] = out.get(kind, 0) + 1
    return out


class CpuSampler:
    """What the machine's CPUs did while a scenario ran (``with CpuSampler() as cpu``): every
    ``interval`` s, how busy they were, how many tasks waited to run, and the commands that
    used the most CPU. The kind nodes are containers on this one kernel, so /proc shows
    every node's processes: the lab's 4 nodes share the machine's cores, which a real
    cluster's nodes do not."""

    def __init__(self, interval: float = 5.0, top: int = 4) -> None:
        self.interval, self.top = interval, top
        self.samples: list[tuple[float, float, int, list[tuple[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @staticmethod
    def _totals() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    @staticmethod
    def _per_process() -> dict[str, tuple[str, int]]:
        """pid -> (command, CPU jiffies so far); kernel workers all count as "kworker"."""
        out: dict[str, tuple[str, int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue  # the process ended
            comm, rest = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 2 :].split()
            if comm.startswith("kworker/"):
                comm = "kworker"  # its name says the work item of the moment
            out[stat.parent.name] = (comm, int(rest[11]) + int(rest[12]))  # utime + stime
        return out

    def _sample(self) -> None:
        total, idle = self._totals()
        procs = self._per_process()
        cores = os.cpu_count() or 1
        while not self._stop.wait(self.interval):
            total2, idle2 = self._totals()
            procs2 = self._per_process()
            span = max(total2 - total, 1)
            busy = 100.0 * (1 - (idle2 - idle) / span)
            used: dict[str, float] = {}
            for pid, (comm, jiffies) in procs2.items():
                before = procs.get(pid)
                delta = jiffies - before[1] if before and before[0] == comm else jiffies
                used[comm] = used.get(comm, 0.0) + 100.0 * cores * delta / span  # % of one core
            ranked = sorted(used.items(), key=lambda x: -x[1])
            runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
            self.samples.append((time.time(), busy, runnable, [(c, u) for c, u in ranked[: self.top] if u >= 1]))
            total, idle, procs = total2, idle2, procs2

    def lines(self) -> list[tuple[float, str]]:
        """Timeline rows: (time, "cpu 97% busy, 14 runnable: clang 61%, cilium-agent 38%, ...")."""
        return [
            (t, f"{'':14} cpu {busy:3.0f}% busy, {runnable:2d} runnable: " + ", ".join(f"{c} {u:.0f}%" for c, u in top))
            for t, busy, runnable, top in self.samples
        ]


class EndpointWatch:
    """Watches the EndpointSlices of some Services while a scenario runs and keeps every
    change: which addresses each Service had, on which node, ready or terminating, and when
    (``with EndpointWatch(cluster, [("e2e", "web"), ("kube-system", "kube-dns")]) as eps``)."""

    def __init__(self, cluster: Cluster, services: Sequence[tuple[str, str]]) -> None:
        self.cluster, self.services = cluster, list(services)
        self.changes: list[tuple[float, str, str]] = []  # (time, service, its endpoints)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=svc, daemon=True) for svc in self.services]

    def __enter__(self) -> EndpointWatch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _watch(self, namespace: str, service: str) -> None:
        from kubernetes import client, config, watch

        api = client.DiscoveryV1Api(
            config.new_client_from_config(config_file=str(self.cluster.kubeconfig), context=self.cluster.context)
        )
        slices: dict[str, list[str]] = {}
        last = ""
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    api.list_namespaced_endpoint_slice,
                    namespace,
                    label_selector=f"kubernetes.io/service-name={service}",
                    timeout_seconds=5,  # comes back to look at the stop flag
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "DELETED":
                        slices.pop(obj.metadata.name, None)
                    else:
                        slices[obj.metadata.name] = [describe_endpoint(e) for e in obj.endpoints or []]
                    now = ", ".join(sorted(x for eps in slices.values() for x in eps)) or "none"
                    if now != last:
                        self.changes.append((time.time(), service, now))
                        last = now
            except Exception:  # noqa: BLE001 - the API server is busy or restarting: watch again
                self._stop.wait(1)

    def lines(self) -> list[tuple[float, str]]:
        """Timeline rows: (time, "endpoints web: 10.245.1.5@worker2, 192.168.3.4@worker3 terminating")."""
        return [(t, f"{'':14} endpoints {svc}: {eps}") for t, svc, eps in self.changes]


def describe_endpoint(endpoint: Any) -> str:
    """``10.245.1.5@worker2``, with ``not-ready`` / ``terminating`` when so."""
    conditions = endpoint.conditions
    state = ""
    if conditions is not None and conditions.terminating:
        state = " terminating"
    elif conditions is not None and conditions.ready is False:
        state = " not-ready"
    return f"{(endpoint.addresses or ['?'])[0]}@{short_node(endpoint.node_name or '?')}{state}"


def step_windows(audit: Iterable[dict[str, Any]]) -> list[tuple[str, str, float, float]]:
    """(node, step, start, end) of every finished step in an audit log, in order; a step
    started again after a kill runs from its first start to its finish."""
    started: dict[tuple[str, str], float] = {}
    out = []
    for ev in audit:
        key = (ev.get("node", ""), ev.get("step", ""))
        if ev.get("event") == "step-started":
            started.setdefault(key, parse_time(ev["timestamp"]))
        elif ev.get("event") == "step-finished" and key in started:
            out.append((*key, started.pop(key), parse_time(ev["timestamp"])))
    return out


def failures_by_step(
    failures: Sequence[dict[str, Any]], audit: Iterable[dict[str, Any]], kind: str = "service"
) -> list[tuple[str, str, int]]:
    """(node, step, failed requests of ``kind``, from probers on other nodes) per finished
    step: e.g. how many requests to the web Service failed while each node drained."""
    out = []
    for node, step, start, end in step_windows(audit):
        n = sum(
            1
            for f in failures
            if target_kind(f.get("target", "")) == kind
            and f.get("from_node") != node
            and start <= parse_time(f["ts"]) <= end
        )
        out.append((node, step, n))
    return out


def failure_timeline(
    failures: Iterable[dict[str, Any]], audit: Iterable[dict[str, Any]], extra: Iterable[tuple[float, str]] = ()
) -> str:
    """The run's steps (from its audit log) and the probers' failed requests in one timeline;
    a burst of failures of one prober to one target with one error (each within 1.5 s of the
    last) is one line with its count and span; ``extra``: more (time, text) rows, e.g. the
    CPU samples."""
    rows: list[tuple[float, str]] = list(extra)
    for ev in audit:
        if ev.get("event") in ("step-started", "step-finished", "prepare", "run-started", "run-finished"):
            what = " ".join(str(ev.get(k, "")) for k in ("event", "step", "outcome") if ev.get(k))
            rows.append((parse_time(ev["timestamp"]), f"{short_node(ev.get('node', '')):<14} {what}"))
    open_bursts: dict[str, list[float]] = {}  # label -> [first send, last send, count]

    def close(label: str) -> None:
        first, last, n = open_bursts.pop(label)
        span = f" x{n:.0f} over {last - first:.1f} s" if n > 1 else ""
        rows.append((first, f"  FAIL {label}{span}"))

    for f in failures:
        sent = parse_time(f["ts"])
        error = short_error(f.get("error", ""))
        label = f"{short_node(f.get('from_node', '')):<14} -> {f.get('target', '')}: {error}"
        for other in [k for k, v in open_bursts.items() if sent - v[1] >= 1.5]:
            close(other)
        if label in open_bursts:
            open_bursts[label][1:] = [sent, open_bursts[label][2] + 1]
        else:
            open_bursts[label] = [sent, sent, 1]
    for label in list(open_bursts):
        close(label)
    if not rows:
        return ""
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    return "\n".join(f"{clock(t)} +{t - t0:7.1f} s  {text}" for t, text in rows)


def clock(t: float) -> str:
    """UTC wall clock to the tenth of a second: 05:41:07.3."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 10) % 10}"


ERRORS = {
    "Client.Timeout": "timeout",
    "i/o timeout": "timeout",
    "connection refused": "connection refused",
    "no route to host": "no route to host",
    "no such host": "no such host",
    "server misbehaving": "DNS server misbehaving",
    "connection reset": "connection reset",
}


def short_error(error: str) -> str:
    """A prober's error in a few words (Go's errors name the whole request first)."""
    for needle, short in ERRORS.items():
        if needle in error:
            return short
    return error[-60:]


def short_node(name: str) -> str:
    return name.removeprefix("cni-migrate-e2e-")


def policy_clients(cluster: Cluster) -> dict[str, TargetStats]:
    """The policy pair's clients: role (allowed-client, denied-client) -> their one target."""
    out = {}
    for pod in cluster.pods("e2e", "app=policy-client"):
        if pod["status"].get("phase") != "Running":
            continue
        data = cluster.raw(f"/api/v1/namespaces/e2e/pods/{pod['metadata']['name']}:8080/proxy/stats")
        for target, s in (data.get("targets") or {}).items():
            out[pod["metadata"]["labels"]["role"]] = TargetStats(
                target,
                target_kind(target),
                int(s.get("requests", 0)),
                int(s.get("failures", 0)),
                int(s.get("longest_outage_ms", 0)),
                s.get("last_error", ""),
            )
    return out


def reset_probers(cluster: Cluster) -> None:
    for pod in prober_pods(cluster):
        cluster.post_raw(f"/api/v1/namespaces/e2e/pods/{pod['metadata']['name']}:8080/proxy/reset")


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])


def cni_migrate(*args: str, timeout: float = 300, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI from this checkout (python -m migrate.cli with the repo on PYTHONPATH);
    ``home``: its state home (CNI_MIGRATE_HOME: journals, locks, audit logs)."""
    return subprocess.run(
        [sys.executable, "-m", "migrate.cli", *args],
        env=cli_env(home),
        text=True,
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
    )


def cni_migrate_popen(*args: str, home: Path | None = None, log: Path) -> subprocess.Popen[str]:
    """The CLI in the background (for a test that kills it), its output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "migrate.cli", *args],
            env=cli_env(home),
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def cli_env(home: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if home is not None:
        env["CNI_MIGRATE_HOME"] = str(home)
    return env


def audit(home: Path) -> list[dict[str, Any]]:
    """Every run's audit log under a state home, oldest run first."""
    lines: list[dict[str, Any]] = []
    for path in sorted((home / "runs").glob("*/audit.jsonl"), key=lambda p: p.stat().st_mtime):
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # the line being written as we read
                continue
    return lines
