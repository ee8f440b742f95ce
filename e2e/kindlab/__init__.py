"""The e2e suite's plumbing: images.yaml, prerequisites, the kind cluster, kubectl, and
the prober's summary (reusable by the migration tests of issue 11).

Everything here shells out to the real tools (kind, kubectl, docker): the suite tests the
cluster the way an operator sees it. Failures that are the machine's, not the code's
(a missing tool, an image that is not there) become one line through ``Missing``.

The tests ``import kindlab`` and use the names below; each lives in one module:

    commands.py    run a tool, capture its output; Missing
    images.py      KindLab: the image mode's tools and images, built or found
    cluster.py     KindCluster: the kind cluster, kubectl, CNI installs, labpod deployed
    probers.py     the probers' /stats (Summary), their logs (ProberLogs), the policy pair
    timeline.py    a run's steps beside the probers' failures, in one timeline
    watches.py     CPU samples and Services' endpoints while a scenario runs
    cnimigrate.py  cni-migrate of this checkout in a subprocess; its audit logs
"""

from __future__ import annotations

from .cluster import (
    LAB_CNI,
    LABPOD_MANIFEST,
    KindCluster,
    create_cluster,
    delete_cluster,
    deploy_labpod,
    detect_cni,
    install_calico,
    install_stand_in_cni,
    kind_clusters,
    load_archive,
    pod_ready,
    wait_calico,
    wait_ready,
)
from .cnimigrate import audit, cli_env, cni_migrate, cni_migrate_popen
from .commands import E2E, REPO, Missing, one_line, run
from .images import (
    IMAGES_FILE,
    MODES,
    KindLab,
    calico_images_available,
    cilium_available,
    images,
    prepare_local,
    prepare_upstream,
)
from .probers import (
    ProberLogs,
    ProberReport,
    Summary,
    TargetStats,
    failure_counts,
    parse_time,
    policy_clients,
    prober_ips,
    prober_pods,
    prober_summary,
    reset_probers,
    target_kind,
)
from .timeline import (
    control_report,
    failure_timeline,
    failures_by_step,
    longest_run,
    short_error,
    short_node,
    step_windows,
)
from .watches import CpuSampler, EndpointWatch, Sampler, describe_endpoint

__all__ = [
    "E2E",
    "IMAGES_FILE",
    "LABPOD_MANIFEST",
    "LAB_CNI",
    "MODES",
    "REPO",
    "CpuSampler",
    "EndpointWatch",
    "KindCluster",
    "KindLab",
    "Missing",
    "ProberLogs",
    "ProberReport",
    "Sampler",
    "Summary",
    "TargetStats",
    "audit",
    "calico_images_available",
    "cilium_available",
    "cli_env",
    "cni_migrate",
    "cni_migrate_popen",
    "create_cluster",
    "delete_cluster",
    "deploy_labpod",
    "describe_endpoint",
    "detect_cni",
    "failure_counts",
    "control_report",
    "failure_timeline",
    "longest_run",
    "failures_by_step",
    "images",
    "install_calico",
    "install_stand_in_cni",
    "kind_clusters",
    "load_archive",
    "one_line",
    "parse_time",
    "pod_ready",
    "policy_clients",
    "prepare_local",
    "prepare_upstream",
    "prober_ips",
    "prober_pods",
    "prober_summary",
    "reset_probers",
    "run",
    "short_error",
    "short_node",
    "step_windows",
    "target_kind",
    "wait_calico",
    "wait_ready",
]
