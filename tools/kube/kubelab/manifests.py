"""Objects into the lab: manifests read from YAML, server-side applied (CRDs first, once
served), and the fixtures every lab starts with (a Calico install's picture and the Cilium
CRDs, from ``tools/kube/manifests/``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .binaries import HERE
from .rest import Api, wait

MANIFESTS = HERE / "manifests"


def load_manifest(path: Path, substitutions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    text = Path(path).read_text()
    for k, v in (substitutions or {}).items():
        text = text.replace(k, v)
    return [d for d in yaml.safe_load_all(text) if d]


def apply_manifest(api: Api, docs: Iterable[Mapping[str, Any]], *, timeout: float = 60) -> None:
    """Server-side apply docs; CRDs first, waiting until they are served."""
    docs = list(docs)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    for d in crds:
        api.apply(d)
    for d in crds:
        name = d["metadata"]["name"]

        def established(name: str = name) -> bool:
            crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            return any(
                c["type"] == "Established" and c["status"] == "True"
                for c in crd.get("status", {}).get("conditions", [])
            )

        wait(f"CRD {name} established", established, timeout)
    for d in docs:
        if d["kind"] != "CustomResourceDefinition":

            def apply_one(d: Mapping[str, Any] = d) -> bool:
                api.apply(d)
                return True

            # discovery may lag a moment behind Established
            wait(f"apply {d['kind']}/{d['metadata']['name']}", apply_one, timeout, interval=0.3)


def install_fixtures(api: Api, *, timeout: float = 60, alive: Callable[[], None] | None = None) -> None:
    """Calico (operator Installation, IPPool, calico-node DaemonSet) and
    the Cilium CRDs; waits until calico-node is Ready on every node."""
    deadline = time.monotonic() + timeout
    docs = load_manifest(MANIFESTS / "cilium-crds.yaml") + load_manifest(MANIFESTS / "calico.yaml")
    apply_manifest(api, docs, timeout=timeout)

    def ds_ready() -> bool:
        ds = api.get("/apis/apps/v1/namespaces/calico-system/daemonsets/calico-node")
        st = ds.get("status", {})
        nodes = len(api.get("/api/v1/nodes")["items"])
        return (
            st.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            and st.get("desiredNumberScheduled") == nodes
            and st.get("numberReady") == nodes
        )

    wait(
        "calico-node DaemonSet ready",
        ds_ready,
        max(1.0, deadline - time.monotonic()),
        alive=alive,
    )
