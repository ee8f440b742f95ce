"""The control plane's components and their flags: etcd, then kube-apiserver, then
kube-controller-manager, kube-scheduler and kwok (its stages from
``tools/kube/manifests/kwok-stages.yaml``), each started and waited for until it serves."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from .addresses import ADVERTISE_IP, POD_CIDR, SERVICE_CIDR
from .errors import LabError
from .manifests import MANIFESTS
from .nodes import KWOK_NODE_ANNOTATION
from .processes import COMPONENTS, Processes
from .rest import Api, http_ok, wait


def check_binaries(bin_dir: Path) -> None:
    for comp in COMPONENTS:
        if not (bin_dir / comp).exists():
            raise LabError(f"missing binary {bin_dir / comp} (run tools/kube/build)")


def wait_apiserver_ready(api: Api, timeout: float, *, alive: Callable[[], None]) -> None:
    wait(
        "kube-apiserver /readyz",
        lambda: api.request("GET", "/readyz", timeout=3)[0] == 200,
        timeout,
        alive=alive,
    )


def start(
    procs: Processes,
    bin_dir: Path,
    ports: Mapping[str, int],
    api: Api,
    *,
    verbosity: int,
    pod_delete_delay_ms: int,
    kwok_runs_pods: bool,
    left: Callable[[], float],
) -> None:
    """Start every component in ``procs.workdir`` (whose pki/ and component kubeconfigs
    are written) on ``ports`` (as recorded in state.json), each waited for until it serves;
    ``left()``: the seconds left of the caller's deadline."""
    etcd_client, etcd_peer = ports["etcd"], ports["etcd-peer"]
    api_port, kcm_port = ports["kube-apiserver"], ports["kube-controller-manager"]
    sched_port, kwok_port = ports["kube-scheduler"], ports["kwok"]
    w = procs.workdir
    pki, v = w / "pki", f"--v={verbosity}"

    # etcd: throwaway data, so skip fsync (much faster on slow disks)
    etcd_url = f"http://127.0.0.1:{etcd_client}"
    peer_url = f"http://127.0.0.1:{etcd_peer}"
    procs.spawn(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=lab",
            f"--data-dir={w / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=lab={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    wait("etcd /health", lambda: http_ok(f"{etcd_url}/health"), left(), alive=procs.check_alive("etcd"))

    procs.spawn(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--advertise-address={ADVERTISE_IP}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # no aggregation layer, but a requestheader CA keeps the
            # components' delegated authn from logging errors forever
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            v,
        ],
    )
    wait_apiserver_ready(api, left(), alive=procs.check_alive("etcd", "kube-apiserver"))

    procs.spawn(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={w / 'kube-controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={w / 'kube-controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={w / 'kube-controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            f"--cert-dir={w / 'kcm'}",
            "--leader-elect=false",
            # '*' = every default-on controller: deployment, replicaset,
            # statefulset, daemonset, disruption (PDB), garbage-collector,
            # namespace, serviceaccount(-token), node-lifecycle, job, ...
            "--controllers=*",
            # A ServiceAccount (and its own client rate limit) per controller, as kubeadm
            # runs it. It costs ~5 s of every lab's start (the KCM mints the tokens before
            # its controllers run). Tried without (one shared client, the KCM's default):
            # in a full test run 5 drains then waited 2 min on a PDB whose disruptedPods
            # still named an evicted, re-created StatefulSet pod; most likely the shared
            # client's rate limit slowed the disruption controller. Not worth 5 s.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--cluster-cidr={POD_CIDR}",
            "--allocate-node-cidrs=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            v,
        ],
    )
    sched_cfg = w / "kube-scheduler.yaml"
    sched_cfg.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {"kubeconfig": str(w / "kube-scheduler.kubeconfig")},
                "leaderElection": {"leaderElect": False},
            }
        )
    )
    procs.spawn(
        "kube-scheduler",
        [
            str(bin_dir / "kube-scheduler"),
            f"--config={sched_cfg}",
            f"--authentication-kubeconfig={w / 'kube-scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={w / 'kube-scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            f"--cert-dir={w / 'scheduler'}",
            v,
        ],
    )
    stages = w / "kwok.yaml"
    docs = (
        (MANIFESTS / "kwok-stages.yaml")
        .read_text()
        .replace("POD_DELETE_DELAY_MS", str(int(pod_delete_delay_ms)))
        .split("\n---\n")
    )
    if not kwok_runs_pods:
        docs = [d for d in docs if not re.search(r"\n  name: pod-(running|delete)\n", d)]
    stages.write_text("\n---\n".join(docs))
    procs.spawn(
        "kwok",
        [
            str(bin_dir / "kwok"),
            f"--kubeconfig={w / 'kwok.kubeconfig'}",
            f"--config={stages}",
            f"--manage-nodes-with-annotation-selector={'='.join(KWOK_NODE_ANNOTATION)}",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok_port}",
            f"--cidr={POD_CIDR}",
            "--node-ip=172.18.0.1",
            v,
        ],
    )
    alive = procs.check_alive(*COMPONENTS)
    wait(
        "kube-controller-manager /healthz",
        lambda: http_ok(f"https://127.0.0.1:{kcm_port}/healthz"),
        left(),
        alive=alive,
    )
    wait("kube-scheduler /healthz", lambda: http_ok(f"https://127.0.0.1:{sched_port}/healthz"), left(), alive=alive)
    wait("kwok /healthz", lambda: http_ok(f"http://127.0.0.1:{kwok_port}/healthz"), left(), alive=alive)
