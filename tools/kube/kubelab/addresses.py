"""The lab's address plan: the Service and pod ranges and the nodes' (unroutable) IPs.

The PKI (the API server's certificate names), the components' flags and the kwok nodes'
manifests all read these, so they live apart from each."""

from __future__ import annotations

import ipaddress

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "192.168.0.0/16"  # matches the Calico default IPPool installed below
NODE_IP_BASE = ipaddress.ip_address("172.18.0.10")  # node with index i gets NODE_IP_BASE + i
#: What the apiserver advertises (the ``kubernetes`` Service endpoints): the
#: InternalIP of control-plane-1 (index 1), as on a kubeadm cluster. It is not
#: routable; clients use the kubeconfig's 127.0.0.1 address.
ADVERTISE_IP = str(NODE_IP_BASE + 1)
