"""The Kubernetes backend's ``Backend``: a cluster reached like kubectl, the run journal
mirrored into ConfigMaps, the executor Lease, Helm aimed at the same kubeconfig and
context, a 5 s wait between a failing check's attempts, and the API requests counted."""

from __future__ import annotations

from migrate.backends.bundle import Backend, CiliumTools
from migrate.backends.kubernetes.cluster import KubernetesCluster
from migrate.backends.kubernetes.journal import ConfigMapStore, Mirrored
from migrate.helm import HelmInstaller
from migrate.plan import Target
from migrate.ports import CheckpointStore


def backend(kubeconfig: str | None = None, context: str | None = None, **images: str | None) -> Backend:
    """Connect with ``kubeconfig`` and ``context`` (else kubectl's defaults); ``images``
    (probe_image, node_image) that are set override the helper pods' images."""
    chosen = {k: v for k, v in images.items() if v}
    cluster = KubernetesCluster.connect(kubeconfig=kubeconfig, context=context, **chosen)

    def journal(fingerprint: str, local: CheckpointStore) -> CheckpointStore:
        # The journal lives in the cluster too, so another machine can take over and resume.
        return Mirrored(ConfigMapStore(cluster, fingerprint), local)

    def cilium(helm: str | None, chart: str, version: str) -> CiliumTools:
        # Helm aimed at the same cluster and context as the run; a one-line error when it is missing.
        context = None if cluster.context_name == "in-cluster" else cluster.context_name
        installer = HelmInstaller.find(helm, chart=chart, version=version, kubeconfig=kubeconfig, context=context)
        return CiliumTools(install=installer, upgrade=installer.upgrade)

    return Backend(
        cluster=cluster,
        target=Target("kubernetes", cluster.context_name, cluster.server),
        probe_retry_gap=5.0,
        cilium=cilium,
        journal=journal,
        lease=cluster.lease,
        stats=cluster.rest,
    )
