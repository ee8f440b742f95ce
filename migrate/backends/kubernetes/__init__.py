"""The Kubernetes backend, the only package that imports the official client.

- ``cluster``: ``KubernetesCluster``, the ``Cluster`` port, composing the rooms below;
- ``api``: every API request (errors translated at this one boundary, retries, counts,
  paged lists read ahead, watches);
- ``inventory``: every list at once, the permissions this identity lacks, the Inventory;
- ``mapping``: API objects to the model's types, helper pods' statuses (pure);
- ``helpers``: helper pods (node tasks, probes' pods), run, waited for, deleted;
- ``probes``: what each validation check observes (judged by ``migrate.verdicts``);
- ``informer``: the traffic watch's probers and reports, listed and watched;
- ``lease``: the executor lock, a coordination.k8s.io Lease.
"""

from migrate.backends.kubernetes.cluster import KubernetesCluster

__all__ = ["KubernetesCluster"]
