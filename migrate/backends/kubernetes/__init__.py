"""The Kubernetes backend, the only package that imports the official client.

- ``cluster``: ``KubernetesCluster``, the ``Cluster`` port, a thin front over the rooms below;
- ``api``: every API request (errors translated at this one boundary, retries, counts,
  paged lists read ahead, watches);
- ``watching``: the one list-then-watch loop, used by every wait and the informer;
- ``inventory``: every list at once, the permissions this identity lacks, the Inventory;
- ``mapping``: API objects to the model's types, helper pods' statuses (pure);
- ``nodes``, ``pods``: node and pod writes and the waits that follow them;
- ``objects``: whole objects ensured or deleted by name (the CiliumNodeConfig, Calico's);
- ``helpers``: helper pods (node tasks, probes' pods), run, waited for, deleted;
- ``probes``: what each validation check observes (judged by ``migrate.verdicts``);
- ``trafficwatch``, ``informer``: the traffic watch deployed and removed; its reports, listed and watched;
- ``lease``: the executor lock, a coordination.k8s.io Lease;
- ``journal``: the in-cluster checkpoint store (ConfigMaps), mirrored locally.
"""

from migrate.backends.kubernetes.cluster import KubernetesCluster

__all__ = ["KubernetesCluster"]
