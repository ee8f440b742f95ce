"""The kind cluster: created and deleted, kubectl against it, images loaded onto its
nodes, a CNI installed (the stand-in or Calico), and the lab's workload (labpod.yaml)
deployed and waited for."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .commands import E2E, run
from .images import KindLab

LABPOD_MANIFEST = E2E / "manifests" / "labpod.yaml"
LAB_CNI = E2E / "kind" / "lab-cni"


@dataclass
class KindCluster:
    name: str
    kubeconfig: Path
    lab: KindLab
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


def kind_clusters(lab: KindLab) -> list[str]:
    return run([lab.kind, "get", "clusters"], timeout=60).stdout.split()


def create_cluster(lab: KindLab, name: str, kubeconfig: Path) -> KindCluster:
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
    return KindCluster(name, kubeconfig, lab)


def delete_cluster(lab: KindLab, name: str, kubeconfig: Path) -> None:
    run([lab.kind, "delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig)], timeout=300, check=False)


def load_archive(cluster: KindCluster, archive: str) -> None:
    run([cluster.lab.kind, "load", "image-archive", "--name", cluster.name, archive], timeout=600)


def install_stand_in_cni(cluster: KindCluster) -> None:
    run([str(LAB_CNI), cluster.name], env=cluster.env(), timeout=300)
    cluster.cni = "stand-in"


def install_calico(cluster: KindCluster) -> None:
    """Apply the rendered Calico manifest. Server-side: its CRDs are too large for the
    last-applied annotation of a client-side apply. The images must be on the nodes already
    (load_archive of lab.calico_archive)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", cluster.lab.calico_manifest, timeout=300)
    cluster.cni = "calico"


def wait_calico(cluster: KindCluster, timeout: int = 300) -> None:
    """calico-node Ready on every node (the DaemonSet fully available), kube-controllers too."""
    for what in ("ds/calico-node", "deploy/calico-kube-controllers"):
        cluster.kubectl("-n", "kube-system", "rollout", "status", what, f"--timeout={timeout}s", timeout=timeout + 30)


def detect_cni(cluster: KindCluster) -> str:
    """For --reuse: 'calico' when the cluster runs calico-node, else 'stand-in'."""
    out = cluster.kubectl("-n", "kube-system", "get", "ds", "-o", "name", check=False)
    return "calico" if "daemonset.apps/calico-node" in out.split() else "stand-in"


def wait_ready(cluster: KindCluster, timeout: int = 240) -> None:
    cluster.kubectl("wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={timeout}s", timeout=timeout + 30)
    cluster.kubectl(
        "-n", "kube-system", "rollout", "status", "deploy/coredns", f"--timeout={timeout}s", timeout=timeout + 30
    )


PRESTOP = "lifecycle: {preStop: {sleep: {seconds: 5}}}"


def deploy_labpod(cluster: KindCluster, prestop_seconds: int = 5, timeout: int = 180) -> None:
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


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])
