"""cni-migrate: move a live Kubernetes cluster from Calico to Cilium, node by node.

The package is a functional core with a thin shell (see docs/architecture.md):
pure planning and run-state logic in ``model``, ``plan``, ``planner``, ``preflight``,
``drain`` and ``journal``; the engine in ``executor`` and ``steps``; adapters under
``backends`` and ``checkpoints``; the shell in ``cli`` and ``output``.
"""

__version__ = "0.1.0"
