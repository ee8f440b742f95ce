"""A real Kubernetes control plane on loopback, with kwok-simulated nodes.

The lab runs the pinned binaries built by ``tools/kube/build``:

    etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kwok

every one on a free 127.0.0.1 port, each in its own process group, logs and
PID files under the lab directory. Nodes are kwok fakes (annotation
``kwok.x-k8s.io/node: fake``) with realistic ``status.nodeInfo``; kwok moves
pods through Pending -> Running/Ready and finishes deletions/evictions,
standing in for kubelets. The lab also installs a minimal "Calico installed
by the Tigera operator" picture and the Cilium CRDs the migration tool uses.

Command line (see ``tools/kube/lab --help``)::

    eval "$(tools/kube/lab up --nodes 6)"     # prints: export KUBECONFIG=...
    tools/kube/lab status
    tools/kube/lab down

Python (``tools/kube`` on ``sys.path``, or loaded as ``tests/labsupport.py`` does)::

    from kubelab import KubeLab
    lab = KubeLab(workdir)
    kubeconfig = lab.up(nodes=6, node_overrides={"worker-3": {"kernel_version": "4.19.0"}})
    ...
    lab.down()

The package, one concern a module:

    binaries.py      tools/kube/build and the VERSIONS it writes
    addresses.py     the Service and pod ranges, the nodes' IPs
    nodes.py         NodeSpec -> a kwok Node; creating, deleting, waiting for nodes
    pki.py           the throwaway CA, certificates and kubeconfigs
    processes.py     spawning, finding (PID files + an environment mark) and stopping
    rest.py          a minimal REST client (stdlib; certificate auth) and polls
    controlplane.py  each component's flags, started in order and waited for
    manifests.py     server-side apply, CRDs first; the Calico/Cilium fixtures
    lab.py           KubeLab: one directory's state, and the pieces put together
    cli.py           tools/kube/lab up|down|status|env

Dependencies: stdlib, PyYAML and ``cryptography`` (for the throwaway PKI).
"""

from __future__ import annotations

from .addresses import ADVERTISE_IP, NODE_IP_BASE, POD_CIDR, SERVICE_CIDR
from .binaries import BUILD_SCRIPT, HERE, build, read_versions
from .errors import LabError
from .lab import KubeLab
from .manifests import MANIFESTS, load_manifest
from .nodes import KWOK_NODE_ANNOTATION, NodeSpec, default_node_specs
from .processes import COMPONENTS, ENV_MARK
from .rest import FIELD_MANAGER, Api

__all__ = [
    "ADVERTISE_IP",
    "BUILD_SCRIPT",
    "COMPONENTS",
    "ENV_MARK",
    "FIELD_MANAGER",
    "HERE",
    "KWOK_NODE_ANNOTATION",
    "MANIFESTS",
    "NODE_IP_BASE",
    "POD_CIDR",
    "SERVICE_CIDR",
    "Api",
    "KubeLab",
    "LabError",
    "NodeSpec",
    "build",
    "default_node_specs",
    "load_manifest",
    "read_versions",
]
