"""Checkpoint stores (the ``CheckpointStore`` port) and executor locks.

``local``: a journal file per cluster under the state directory, written atomically, and an
``flock`` lock the OS releases when its holder dies. The in-cluster store (a ConfigMap
updated with resourceVersion) and the Lease lock live with the Kubernetes backend.
"""
