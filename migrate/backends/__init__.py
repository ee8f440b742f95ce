"""Adapters behind the ``Cluster`` port: ``simulated`` (on disk, no Kubernetes needed)
and ``kubernetes`` (the official client). Only the CLI chooses and wires one."""
