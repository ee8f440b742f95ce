"""Tools and images: what the chosen image mode (``--images local|upstream``, columns
of ``e2e/images.yaml``) gives the suite, a ``KindLab`` of tool paths and image
references, built or found, and whether the Calico and Cilium images are there."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .commands import E2E, Missing, one_line, run

IMAGES_FILE = E2E / "images.yaml"
LAB_BUILD = E2E / "images" / "build"
LABPOD_BUILD = E2E / "images" / "labpod" / "build"
MODES = ("local", "upstream")


def images(mode: str) -> dict[str, Any]:
    """images.yaml's column for ``mode``: {key: value}."""
    data = yaml.safe_load(IMAGES_FILE.read_text())
    return {key: (col or {}).get(mode) for key, col in data.items()}


@dataclass
class KindLab:
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


def prepare_local() -> KindLab:
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
    lab = KindLab(
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


def prepare_upstream() -> KindLab:
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
    lab = KindLab(
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


def calico_images_available(lab: KindLab) -> bool:
    """True when every Calico image of the mode is in the local engine (pulled or built) and
    there is a manifest for them. Only --images local has one so far (e2e/images/calico/build
    renders it); upstream mode keeps the stand-in CNI."""
    return (
        bool(lab.calico_images and lab.calico_manifest)
        and Path(lab.calico_manifest).is_file()
        and all(_image_present(ref) for ref in lab.calico_images)
    )


def cilium_available(lab: KindLab) -> bool:
    """True when e2e/images/cilium/build made both images, and the chart and values exist."""
    return (
        len(lab.cilium_archives) == 2
        and all(Path(a).is_file() for a in lab.cilium_archives)
        and Path(lab.cilium_chart, "Chart.yaml").is_file()
        and Path(lab.cilium_values).is_file()
    )
