#!/usr/bin/env python3
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

Python::

    lab = Lab(workdir)
    kubeconfig = lab.up(nodes=6, node_overrides={"worker-3": {"kernel_version": "4.19.0"}})
    ...
    lab.down()

Dependencies: stdlib, PyYAML and ``cryptography`` (for the throwaway PKI).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build"
MANIFESTS = HERE / "manifests"

#: Environment marker put on every lab process: value is the lab directory.
#: ``down`` uses it to find processes even if PID files are missing.
ENV_MARK = "CNI_MIGRATE_LAB_DIR"
#: Start order; ``down`` stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "192.168.0.0/16"  # matches the Calico default IPPool installed below
NODE_IP_BASE = ipaddress.ip_address("172.18.0.10")  # node with index i gets NODE_IP_BASE + i
#: What the apiserver advertises (the ``kubernetes`` Service endpoints): the
#: InternalIP of control-plane-1 (index 1), as on a kubeadm cluster. It is not
#: routable; clients use the kubeconfig's 127.0.0.1 address.
ADVERTISE_IP = str(NODE_IP_BASE + 1)
FIELD_MANAGER = "cni-migrate-lab"


class LabError(RuntimeError):
    """The lab could not be built, started or reached."""


# --------------------------------------------------------------------------
# binaries


def build(*, quiet: bool = False) -> Path:
    """Run tools/kube/build (no-op when cached) and return the bin dir.

    ``$CNI_MIGRATE_KUBE_BIN`` short-circuits the build (use prebuilt bins).
    """
    env_bin = os.environ.get("CNI_MIGRATE_KUBE_BIN")
    if env_bin:
        return Path(env_bin)
    proc = subprocess.run(
        [str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise LabError(f"{BUILD_SCRIPT} failed (exit {proc.returncode})")
    return Path(lines[-1])


def read_versions(bin_dir: Path) -> dict[str, str]:
    """Parse bin_dir/VERSIONS (written by the build script)."""
    out: dict[str, str] = {}
    path = Path(bin_dir) / "VERSIONS"
    if path.exists():
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                out[k.strip()] = v.strip()
    return out


# --------------------------------------------------------------------------
# nodes


@dataclasses.dataclass
class NodeSpec:
    """A kwok node. Every field can be overridden per node."""

    name: str
    control_plane: bool = False
    kernel_version: str = "6.1.0-28-amd64"
    os_image: str = "Debian GNU/Linux 12 (bookworm)"
    operating_system: str = "linux"
    architecture: str = "amd64"
    kubelet_version: str | None = None  # None: the lab's Kubernetes version
    container_runtime_version: str = "containerd://1.7.24"
    cpu: str = "4"
    memory: str = "16Gi"
    pods: str = "110"
    internal_ip: str | None = None  # None: allocated by the lab
    pod_cidr: str | None = None  # None: allocated by the lab (192.168.<i>.0/24, see manifest)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: list[dict[str, str]] | None = None  # None: control-plane taint on CP nodes
    unschedulable: bool = False

    def manifest(self, *, index: int, default_kubelet_version: str) -> dict[str, Any]:
        ip = self.internal_ip or str(NODE_IP_BASE + index)
        # 192.168.<i>.0/24 inside the Calico pool for the first 256 nodes; larger labs (the
        # 1,000-node benchmarks) continue in 10.64.0.0/10, as inventory_real.py's nodes do.
        pod_cidr = self.pod_cidr or (
            f"192.168.{index}.0/24" if index < 256 else f"10.{64 + index // 256}.{index % 256}.0/24"
        )
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": self.operating_system,
            "kubernetes.io/arch": self.architecture,
            "beta.kubernetes.io/os": self.operating_system,
            "beta.kubernetes.io/arch": self.architecture,
            "type": "kwok",
        }
        if self.control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        labels.update(self.labels)
        net = ipaddress.ip_network(pod_cidr)
        annotations = {
            KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            # what calico-node writes on a VXLAN install
            "projectcalico.org/IPv4Address": f"{ip}/24",
            "projectcalico.org/IPv4VXLANTunnelAddr": str(net.network_address),
        }
        annotations.update(self.annotations)
        taints = self.taints
        if taints is None:
            taints = (
                [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}] if self.control_plane else []
            )
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        spec: dict[str, Any] = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
        if taints:
            spec["taints"] = taints
        if self.unschedulable:
            spec["unschedulable"] = True
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels, "annotations": annotations},
            "spec": spec,
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "Hostname", "address": self.name},
                ],
                "nodeInfo": {
                    "architecture": self.architecture,
                    "operatingSystem": self.operating_system,
                    "kernelVersion": self.kernel_version,
                    "osImage": self.os_image,
                    "kubeletVersion": self.kubelet_version or default_kubelet_version,
                    "containerRuntimeVersion": self.container_runtime_version,
                    "kubeProxyVersion": "",
                    "machineID": f"{index:032x}",
                    "systemUUID": f"{index:08x}-0000-0000-0000-000000000000",
                    "bootID": f"{index:08x}-b007-0000-0000-000000000000",
                },
            },
        }


def default_node_specs(count: int, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> list[NodeSpec]:
    """1 control-plane node (``control-plane-1``) + ``count-1`` workers
    (``worker-1`` ...). ``overrides`` maps node name -> NodeSpec fields,
    e.g. ``{"worker-2": {"kernel_version": "4.19.0"}}``."""
    if count < 1:
        raise ValueError("need at least one node")
    specs = [NodeSpec(name="control-plane-1", control_plane=True)]
    specs += [NodeSpec(name=f"worker-{i}") for i in range(1, count)]
    overrides = dict(overrides or {})
    for spec in specs:
        for field, value in overrides.pop(spec.name, {}).items():
            if not hasattr(spec, field):
                raise ValueError(f"unknown NodeSpec field {field!r} (node {spec.name})")
            setattr(spec, field, value)
    if overrides:
        raise ValueError(f"overrides for unknown nodes: {sorted(overrides)}")
    return specs


# --------------------------------------------------------------------------
# PKI


@dataclasses.dataclass(frozen=True)
class _CertSpec:
    file: str  # pki/<file>.crt + pki/<file>.key
    cn: str
    org: str | None = None
    server: bool = False  # serverAuth (else clientAuth)
    sans: tuple[str, ...] = ()


def _cert_specs() -> list[_CertSpec]:
    svc_ip = str(ipaddress.ip_network(SERVICE_CIDR).network_address + 1)
    return [
        _CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            sans=(
                "127.0.0.1",
                "::1",
                "localhost",
                ADVERTISE_IP,
                svc_ip,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        ),
        _CertSpec("admin", "kubernetes-admin", "system:masters"),
        _CertSpec("kube-controller-manager", "system:kube-controller-manager"),
        _CertSpec("kube-scheduler", "system:kube-scheduler"),
        _CertSpec("kwok", "kwok-controller", "system:masters"),
    ]


def _pki(pki: Path) -> None:
    """CA (pki/ca.*), the certs of _cert_specs() and the service-account key
    pair (pki/sa.key, pki/sa.pub); ECDSA P-256 throughout. Uses the
    ``cryptography`` package when importable, else the ``openssl`` CLI
    (force one with CNI_MIGRATE_LAB_PKI=cryptography|openssl)."""
    pki.mkdir(parents=True, exist_ok=True)
    backend = os.environ.get("CNI_MIGRATE_LAB_PKI", "auto")
    if backend == "auto":
        try:
            import cryptography  # noqa: F401

            backend = "cryptography"
        except ImportError:
            backend = "openssl"
    if backend == "openssl":
        _pki_openssl(pki, _cert_specs())
    else:
        _pki_cryptography(pki, _cert_specs())


def _pki_openssl(pki: Path, specs: list[_CertSpec]) -> None:
    if shutil.which("openssl") is None:
        raise LabError("need the 'cryptography' Python package or the openssl CLI")

    def run(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"openssl {' '.join(args)}: {proc.stderr.strip()}")

    def genkey(name: str) -> None:
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key")
        (pki / f"{name}.key").chmod(0o600)

    def serial() -> str:
        return "0x" + os.urandom(16).hex()

    genkey("ca")
    run(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=cni-migrate-lab-ca", "-days", "3650",
        "-sha256", "-set_serial", serial(), "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    for spec in specs:
        genkey(spec.file)
        subj = (f"/O={spec.org}" if spec.org else "") + f"/CN={spec.cn}"
        run("req", "-new", "-key", f"{spec.file}.key", "-subj", subj, "-out", f"{spec.file}.csr")
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            f"extendedKeyUsage={'serverAuth' if spec.server else 'clientAuth'}",
            "authorityKeyIdentifier=keyid",
        ]
        if spec.sans:
            alt = []
            for san in spec.sans:
                try:
                    ipaddress.ip_address(san)
                    alt.append(f"IP:{san}")
                except ValueError:
                    alt.append(f"DNS:{san}")
            ext.append("subjectAltName=" + ",".join(alt))
        (pki / f"{spec.file}.ext").write_text("\n".join(ext) + "\n")
        run(
            "x509", "-req", "-in", f"{spec.file}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", serial(), "-days", "365", "-sha256",
            "-extfile", f"{spec.file}.ext", "-out", f"{spec.file}.crt",
        )  # fmt: skip
        (pki / f"{spec.file}.csr").unlink()
        (pki / f"{spec.file}.ext").unlink()
    genkey("sa")
    run("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def _pki_cryptography(pki: Path, specs: list[_CertSpec]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(name: str, k: ec.EllipticCurvePrivateKey) -> None:
        path = pki / f"{name}.key"
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = key()
    ca_name = name("cni-migrate-lab-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_key("ca", ca_key)
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(fname: str, cn: str, org: str | None, *, server: bool, sans: Iterable[str] = ()) -> None:
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn, org))
            .issuer_name(ca_name)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        alt: list[x509.GeneralName] = []
        for san in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                alt.append(x509.DNSName(san))
        if alt:
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        write_key(fname, k)
        (pki / f"{fname}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    for spec in specs:
        leaf(spec.file, spec.cn, spec.org, server=spec.server, sans=spec.sans)

    sa = key()
    write_key("sa", sa)
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _kubeconfig(path: Path, server: str, pki: Path, user: str, *, embed: bool = True) -> None:
    def data(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    if embed:
        cluster = {"server": server, "certificate-authority-data": data(pki / "ca.crt")}
        creds = {
            "client-certificate-data": data(pki / f"{user}.crt"),
            "client-key-data": data(pki / f"{user}.key"),
        }
    else:
        cluster = {"server": server, "certificate-authority": str(pki / "ca.crt")}
        creds = {
            "client-certificate": str(pki / f"{user}.crt"),
            "client-key": str(pki / f"{user}.key"),
        }
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cni-migrate-lab", "cluster": cluster}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "cni-migrate-lab", "context": {"cluster": "cni-migrate-lab", "user": user}}],
        "current-context": "cni-migrate-lab",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


# --------------------------------------------------------------------------
# processes


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _proc_state(pid: int) -> str | None:
    """Single-letter state from /proc, None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _proc_mark(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = ENV_MARK.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _marked_pids(workdir: Path) -> list[int]:
    """Every live process carrying ENV_MARK=<workdir> (children included)."""
    want = str(workdir)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and _proc_mark(int(entry)) == want and _alive(int(entry)):
            pids.append(int(entry))
    return pids


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --------------------------------------------------------------------------
# a minimal REST client (stdlib only; certificate auth)


class Api:
    """Tiny Kubernetes REST client on the lab's admin certificate."""

    def __init__(self, server: str, pki: Path, user: str = "admin") -> None:
        u = server.removeprefix("https://")
        host, _, port = u.rpartition(":")
        self.host, self.port = host, int(port)
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / f"{user}.crt"), str(pki / f"{user}.key"))
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 15,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        try:
            data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return resp.status, payload

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, payload = self.request(method, path, body, **kw)
        if status >= 300:
            msg = payload.get("message") if isinstance(payload, dict) else payload
            raise LabError(f"{method} {path}: HTTP {status}: {msg}")
        return payload

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(collection path prefix, namespaced) for apiVersion/kind, via discovery."""
        k = (api_version, kind)
        if k not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, payload = self.request("GET", base)
            if status != 200:
                raise LabError(f"discovery {base}: HTTP {status}")
            for r in payload.get("resources", []):
                if "/" not in r["name"]:
                    self._resources[(api_version, r["kind"])] = (f"{base}/{r['name']}", r["namespaced"])
            if k not in self._resources:
                raise LabError(f"discovery: no kind {kind} in {api_version}")
        return self._resources[k]

    def object_path(self, obj: Mapping[str, Any]) -> str:
        prefix, namespaced = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        if namespaced:
            ns = meta.get("namespace", "default")
            head, _, plural = prefix.rpartition("/")
            return f"{head}/namespaces/{ns}/{plural}/{meta['name']}"
        return f"{prefix}/{meta['name']}"

    def apply(self, obj: Mapping[str, Any]) -> Any:
        """Server-side apply (create or update)."""
        path = self.object_path(obj) + f"?fieldManager={FIELD_MANAGER}&force=true"
        return self.call("PATCH", path, obj, content_type="application/apply-patch+yaml")


def _wait(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    *,
    alive: Callable[[], None] | None = None,
    interval: float = 0.2,
) -> Any:
    """Poll ``check`` until it returns a truthy value; LabError after ``timeout``.
    ``alive`` is called each round to fail fast when a process died."""
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while True:
        if alive:
            alive()
        try:
            result = check()
            if result:
                return result
        except (OSError, LabError, ValueError, KeyError, TypeError, http.client.HTTPException) as exc:
            last_err = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_err})" if last_err else ""
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def _http_ok(url: str, *, insecure_tls: bool = True, timeout: float = 2) -> bool:
    """GET url -> 200? Plain HTTP or HTTPS without verification (self-signed
    component serving certs); only used for health probes on loopback."""
    scheme, _, rest = url.partition("://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    if scheme == "https":
        ctx = ssl.create_default_context()
        if insecure_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    finally:
        conn.close()


def _node_ready(node: Mapping[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    if conds.get("Ready") != "True":
        return False
    blocking = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    return not any(t.get("key") in blocking for t in node.get("spec", {}).get("taints", []) or [])


def load_manifest(path: Path, substitutions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    text = Path(path).read_text()
    for k, v in (substitutions or {}).items():
        text = text.replace(k, v)
    return [d for d in yaml.safe_load_all(text) if d]


# --------------------------------------------------------------------------
# the lab


class Lab:
    """One lab = one directory. All state (PIDs, ports, PKI, logs, etcd data)
    lives there, so ``Lab(dir).down()`` from any process tears it down.

    Layout: ``kubeconfig`` (admin, certs embedded), ``state.json``,
    ``pki/``, ``run/<component>.pid``, ``logs/<component>.log``, ``etcd/``.
    """

    def __init__(
        self,
        workdir: Path | str,
        bin_dir: Path | str | None = None,
        *,
        pod_delete_delay_ms: int = 0,
        kwok_runs_pods: bool = True,
        die_with_parent: bool = False,
        verbosity: int = 1,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.pod_delete_delay_ms = pod_delete_delay_ms
        # False: kwok neither starts nor removes pods; a node agent of the tests plays the
        # kubelet (tests/realcluster/nodeagent.py: addresses from the node's current CNI, and
        # terminating pods removed with a UID precondition, as a kubelet does). kwok's own
        # pod-delete stage deletes by name, which can hit a StatefulSet's same-named
        # replacement when a stale event queues a second delete.
        self.kwok_runs_pods = kwok_runs_pods
        self.die_with_parent = die_with_parent
        self.verbosity = verbosity
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}
        self._api: Api | None = None

    # -- paths / state -----------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            st = self.state()
            self._bin_dir = Path(st["bin_dir"]) if st.get("bin_dir") else build()
        return self._bin_dir

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save_state(self, **updates: Any) -> None:
        st = self.state()
        st.update(updates)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    @property
    def server(self) -> str:
        return self.state()["server"]

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.server, self.pki)
        return self._api

    @property
    def kubernetes_version(self) -> str:
        return read_versions(self.bin_dir).get("kubernetes", "v0.0.0")

    def log_path(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    def _log_tail(self, component: str, lines: int = 25) -> str:
        try:
            text = self.log_path(component).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])

    # -- processes -----------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Component -> PID, for PID files whose process is still alive."""
        out = {}
        run = self.workdir / "run"
        for comp in COMPONENTS:
            f = run / f"{comp}.pid"
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(f.read_text().strip())
                if _alive(pid) and _proc_mark(pid) == str(self.workdir):
                    out[comp] = pid
        return out

    def running(self) -> bool:
        return bool(self.pids()) or bool(_marked_pids(self.workdir))

    def _spawn(self, name: str, argv: list[str]) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[ENV_MARK] = str(self.workdir)
        env.setdefault("GOMAXPROCS", "2")
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n==== {datetime.datetime.now().isoformat()} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # own process group: pgid == pid
                preexec_fn=_set_pdeathsig if self.die_with_parent else None,
                close_fds=True,
            )
        self._procs[name] = proc
        self._argv[name] = argv
        (self.workdir / "run" / f"{name}.pid").write_text(f"{proc.pid}\n")

    def restart(self, name: str, *, down_seconds: float = 0.0, timeout: float = 60) -> None:
        """Stop one component this Lab started (SIGTERM to its process group, SIGKILL after
        10 s), keep it down ``down_seconds``, start it again with the same flags and wait
        until it serves. For outage tests: the clients see refused connections meanwhile."""
        proc, argv = self._procs.get(name), self._argv.get(name)
        if proc is None or argv is None:
            raise LabError(f"{name} was not started by this Lab object; cannot restart it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        time.sleep(down_seconds)
        self._spawn(name, argv)
        if name == "kube-apiserver":
            _wait(
                "kube-apiserver /readyz",
                lambda: self.api.request("GET", "/readyz", timeout=3)[0] == 200,
                timeout,
                alive=self._check_alive(name),
            )

    def _check_alive(self, *names: str) -> Callable[[], None]:
        def check() -> None:
            pids = None
            for n in names:
                proc = self._procs.get(n)
                if proc is not None:
                    # our own child: trust waitpid, not /proc (right after
                    # exec, /proc/<pid>/environ can briefly read empty)
                    rc = proc.poll()
                    if rc is None:
                        continue
                    how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                    raise LabError(f"{n} exited during startup ({how}); log tail:\n{self._log_tail(n)}")
                pids = self.pids() if pids is None else pids
                if n not in pids:
                    raise LabError(f"{n} is not running; log tail:\n{self._log_tail(n)}")

        return check

    # -- lifecycle ------------------------------------------------------------
    def up(
        self,
        nodes: int = 6,
        node_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        node_specs: list[NodeSpec] | None = None,
        fixtures: bool = True,
        timeout: float = 180,
    ) -> Path:
        """Start the control plane + kwok, create nodes, install the
        Calico/Cilium fixtures; return the admin kubeconfig path.
        Any failure tears everything down before raising."""
        if self.running():
            raise LabError(f"a lab is already running in {self.workdir} (run down first)")
        specs = node_specs if node_specs is not None else default_node_specs(nodes, node_overrides)
        t0 = time.monotonic()
        deadline = t0 + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for attempt in (1, 2):
                try:
                    self._start_control_plane(left)
                    break
                except LabError:
                    # free ports are picked by bind(0)+close; another process
                    # may grab one in between. Retry once with fresh ports.
                    if attempt == 2 or not any(
                        "address already in use" in self._log_tail(c).lower() for c in COMPONENTS
                    ):
                        raise
                    self.down(keep_files=True)
            self.add_nodes(specs, timeout=left())
            _wait(
                "default service account",
                lambda: self.api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                left(),
            )
            if fixtures:
                self.install_fixtures(timeout=left())
        except BaseException:
            self.down(keep_files=True)
            raise
        self._save_state(startup_seconds=round(time.monotonic() - t0, 1))
        return self.kubeconfig

    def _start_control_plane(self, left: Callable[[], float]) -> None:
        bin_dir = self.bin_dir
        for comp in COMPONENTS:
            if not (bin_dir / comp).exists():
                raise LabError(f"missing binary {bin_dir / comp} (run tools/kube/build)")
        for sub in ("etcd", "run", "pki", "kcm", "scheduler"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        (etcd_client, etcd_peer, api_port, kcm_port, sched_port, kwok_port) = _free_ports(6)
        server = f"https://127.0.0.1:{api_port}"
        self._api = None
        self._save_state(
            bin_dir=str(bin_dir),
            server=server,
            versions=read_versions(bin_dir),
            ports={
                "etcd": etcd_client,
                "etcd-peer": etcd_peer,
                "kube-apiserver": api_port,
                "kube-controller-manager": kcm_port,
                "kube-scheduler": sched_port,
                "kwok": kwok_port,
            },
            next_node_index=1,
            started=datetime.datetime.now(datetime.UTC).isoformat(),
        )
        _pki(self.pki)
        pki, w, v = self.pki, self.workdir, f"--v={self.verbosity}"
        _kubeconfig(self.kubeconfig, server, pki, "admin")
        for comp in ("kube-controller-manager", "kube-scheduler", "kwok"):
            _kubeconfig(w / f"{comp}.kubeconfig", server, pki, comp, embed=False)

        # etcd: throwaway data, so skip fsync (much faster on slow disks)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._spawn(
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
        _wait("etcd /health", lambda: _http_ok(f"{etcd_url}/health"), left(), alive=self._check_alive("etcd"))

        self._spawn(
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
        _wait(
            "kube-apiserver /readyz",
            lambda: self.api.request("GET", "/readyz", timeout=3)[0] == 200,
            left(),
            alive=self._check_alive("etcd", "kube-apiserver"),
        )

        self._spawn(
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
        self._spawn(
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
            .replace("POD_DELETE_DELAY_MS", str(int(self.pod_delete_delay_ms)))
            .split("\n---\n")
        )
        if not self.kwok_runs_pods:
            docs = [d for d in docs if not re.search(r"\n  name: pod-(running|delete)\n", d)]
        stages.write_text("\n---\n".join(docs))
        self._spawn(
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
        alive = self._check_alive(*COMPONENTS)
        _wait(
            "kube-controller-manager /healthz",
            lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz"),
            left(),
            alive=alive,
        )
        _wait(
            "kube-scheduler /healthz", lambda: _http_ok(f"https://127.0.0.1:{sched_port}/healthz"), left(), alive=alive
        )
        _wait("kwok /healthz", lambda: _http_ok(f"http://127.0.0.1:{kwok_port}/healthz"), left(), alive=alive)

    def add_nodes(self, specs: Iterable[NodeSpec], *, timeout: float = 60, wait: bool = True) -> list[str]:
        """Create kwok nodes (IPs/podCIDRs allocated from a counter in
        state.json) and, by default, wait until they are Ready and untainted."""
        names = []
        idx = int(self.state().get("next_node_index", 1))
        kubelet = self.kubernetes_version
        for spec in specs:
            obj = spec.manifest(index=idx, default_kubelet_version=kubelet)
            idx += 1
            self._save_state(next_node_index=idx)
            self.api.call("POST", "/api/v1/nodes", obj)
            # A Node keeps the status given at create, but make sure the
            # nodeInfo/capacity the test asked for is what is stored.
            self.api.call(
                "PATCH",
                f"/api/v1/nodes/{spec.name}/status",
                {"status": {k: obj["status"][k] for k in ("nodeInfo", "capacity", "allocatable")}},
                content_type="application/strategic-merge-patch+json",
            )
            names.append(spec.name)
        if wait:
            self.wait_nodes_ready(names, timeout=timeout)
        return names

    def add_node(self, name: str, *, wait: bool = True, **fields: Any) -> str:
        """``lab.add_node("old-1", kernel_version="4.19.0")`` (NodeSpec fields)."""
        return self.add_nodes([NodeSpec(name=name, **fields)], wait=wait)[0]

    def delete_nodes(self, names: Iterable[str], *, timeout: float = 30) -> None:
        """Delete nodes and force-delete the pods bound to them (what the
        pod GC controller would do after its 40s orphan quarantine)."""
        for name in names:
            self.api.request("DELETE", f"/api/v1/nodes/{name}")
            pods = self.api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}")["items"]
            for p in pods:
                m = p["metadata"]
                self.api.request(
                    "DELETE",
                    f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                )

            def gone(name: str = name) -> bool:
                return (
                    self.api.request("GET", f"/api/v1/nodes/{name}")[0] == 404
                    and not self.api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}")["items"]
                )

            _wait(f"node {name} and its pods deleted", gone, timeout)

    def wait_nodes_ready(self, names: Iterable[str] | None = None, *, timeout: float = 60) -> None:
        want = set(names) if names is not None else None

        def check() -> bool:
            items = self.api.get("/api/v1/nodes")["items"]
            ready = {n["metadata"]["name"] for n in items if _node_ready(n)}
            target = want if want is not None else {n["metadata"]["name"] for n in items}
            return target <= ready

        _wait(
            f"nodes Ready ({', '.join(sorted(want)) if want else 'all'})",
            check,
            timeout,
            alive=self._check_alive(*COMPONENTS),
        )

    def apply_manifest(self, docs: Iterable[Mapping[str, Any]], *, timeout: float = 60) -> None:
        """Server-side apply docs; CRDs first, waiting until they are served."""
        docs = list(docs)
        crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
        for d in crds:
            self.api.apply(d)
        for d in crds:
            name = d["metadata"]["name"]

            def established(name: str = name) -> bool:
                crd = self.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                return any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in crd.get("status", {}).get("conditions", [])
                )

            _wait(f"CRD {name} established", established, timeout)
        for d in docs:
            if d["kind"] != "CustomResourceDefinition":

                def apply_one(d: Mapping[str, Any] = d) -> bool:
                    self.api.apply(d)
                    return True

                # discovery may lag a moment behind Established
                _wait(f"apply {d['kind']}/{d['metadata']['name']}", apply_one, timeout, interval=0.3)

    def install_fixtures(self, *, timeout: float = 60) -> None:
        """Calico (operator Installation, IPPool, calico-node DaemonSet) and
        the Cilium CRDs; waits until calico-node is Ready on every node."""
        deadline = time.monotonic() + timeout
        docs = load_manifest(MANIFESTS / "cilium-crds.yaml") + load_manifest(MANIFESTS / "calico.yaml")
        self.apply_manifest(docs, timeout=timeout)

        def ds_ready() -> bool:
            ds = self.api.get("/apis/apps/v1/namespaces/calico-system/daemonsets/calico-node")
            st = ds.get("status", {})
            nodes = len(self.api.get("/api/v1/nodes")["items"])
            return (
                st.get("observedGeneration", 0) >= ds["metadata"]["generation"]
                and st.get("desiredNumberScheduled") == nodes
                and st.get("numberReady") == nodes
            )

        _wait(
            "calico-node DaemonSet ready",
            ds_ready,
            max(1.0, deadline - time.monotonic()),
            alive=self._check_alive(*COMPONENTS),
        )

    def down(self, *, timeout: float = 10, keep_files: bool = False, keep_logs: bool = False) -> list[int]:
        """Stop every lab process, then remove the lab's files unless asked
        to keep them. Works from any process: PIDs come from run/*.pid and
        from a /proc scan for the ENV_MARK (guards against PID reuse and
        finds strays). Stops clients first (kwok, scheduler, controller
        manager), then the apiserver, then etcd -- all at once makes the
        apiserver's graceful shutdown drag on. Each group gets SIGTERM to its
        process group, SIGKILL after ``timeout`` (the apiserver: after 2 s at most). Returns
        signalled PIDs."""
        by_comp: dict[str, int] = {}
        run = self.workdir / "run"
        for comp in COMPONENTS:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int((run / f"{comp}.pid").read_text().strip())
                if _alive(pid) and _proc_mark(pid) == str(self.workdir):
                    by_comp[comp] = pid
        # (processes, seconds they get after SIGTERM). The API server's graceful shutdown
        # waits for its clients' open watches (a test's node agent holds 30 s ones), and a
        # lab's data is thrown away: it gets 2 s, not the whole timeout, before SIGKILL.
        groups = [
            ([by_comp[c] for c in ("kwok", "kube-scheduler", "kube-controller-manager") if c in by_comp], timeout),
            ([by_comp[c] for c in ("kube-apiserver",) if c in by_comp], min(timeout, 2.0)),
            ([by_comp[c] for c in ("etcd",) if c in by_comp], timeout),
        ]
        signalled: list[int] = []

        def stop(pids: Iterable[int], timeout: float = timeout) -> set[int]:
            targets = {p for p in pids if _alive(p)}
            signalled.extend(sorted(targets))

            def signal_all(sig: int) -> None:
                for pid in targets:
                    with contextlib.suppress(ProcessLookupError):
                        if os.getpgid(pid) == pid:
                            os.killpg(pid, sig)
                        else:
                            os.kill(pid, sig)

            def gone() -> bool:
                for pid in list(targets):
                    _reap(pid)
                    if not _alive(pid):
                        targets.discard(pid)
                return not targets

            signal_all(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not gone() and time.monotonic() < deadline:
                time.sleep(0.05)
            if targets:
                signal_all(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while not gone() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return targets

        survivors: set[int] = set()
        for group, grace in groups:
            survivors |= stop(group, grace)
        # strays: anything else still carrying our mark (e.g. a PID file was
        # lost when the starter crashed between fork and write)
        survivors |= stop(_marked_pids(self.workdir))
        for p in self._procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        self._procs.clear()
        if survivors:
            raise LabError(f"processes survived SIGKILL: {sorted(survivors)}")
        shutil.rmtree(run, ignore_errors=True)
        if not keep_files and self.workdir.exists():
            self._remove_files(keep_logs=keep_logs)
        return signalled

    def _remove_files(self, *, keep_logs: bool) -> None:
        """Remove only what the lab creates; the dir goes if left empty."""
        w = self.workdir
        for sub in ("etcd", "pki", "kcm", "scheduler", "run"):
            shutil.rmtree(w / sub, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(w / "logs", ignore_errors=True)
        for f in (
            "kubeconfig",
            "state.json",
            "state.tmp",
            "kwok.yaml",
            "kube-scheduler.yaml",
            "kube-controller-manager.kubeconfig",
            "kube-scheduler.kubeconfig",
            "kwok.kubeconfig",
        ):
            with contextlib.suppress(FileNotFoundError):
                (w / f).unlink()
        with contextlib.suppress(OSError):
            w.rmdir()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


# --------------------------------------------------------------------------
# CLI


def _default_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(base) / f"cni-migrate-lab-{os.getuid()}"


def _parse_overrides(values: list[str]) -> dict[str, dict[str, Any]]:
    """NAME:field=value[,field=value] -> {NAME: {field: value}}"""
    out: dict[str, dict[str, Any]] = {}
    fields = {f.name: f for f in dataclasses.fields(NodeSpec)}
    for item in values:
        name, sep, rest = item.partition(":")
        if not sep:
            raise SystemExit(f"--node-override {item!r}: expected NAME:field=value[,field=value]")
        for kv in rest.split(","):
            k, sep, v = kv.partition("=")
            k = k.strip().replace("-", "_")
            if not sep or k not in fields:
                raise SystemExit(f"--node-override {item!r}: unknown field {k!r}; known: {sorted(fields)}")
            val: Any = v
            if k in ("control_plane", "unschedulable"):
                val = v.lower() in ("1", "true", "yes")
            elif k in ("labels", "annotations"):
                val = dict(p.split("=", 1) for p in v.split(";") if p)
            out.setdefault(name, {})[k] = val
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/kube/lab", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start a lab; prints 'export KUBECONFIG=...'")
    p_up.add_argument("--nodes", type=int, default=6, help="1 control-plane + N-1 workers (default 6)")
    p_up.add_argument(
        "--node-override",
        action="append",
        default=[],
        metavar="NAME:field=value,...",
        help="e.g. worker-2:kernel_version=4.19.0 (NodeSpec fields; repeatable)",
    )
    p_up.add_argument("--no-fixtures", action="store_true", help="skip Calico/Cilium fixtures")
    p_up.add_argument(
        "--pod-delete-delay-ms", type=int, default=0, help="how long kwok keeps terminating pods before deleting them"
    )
    p_up.add_argument("--timeout", type=float, default=180)
    for p in [p_up] + [
        sub.add_parser(n, help=h)
        for n, h in (
            ("down", "stop every lab process and remove the lab's files"),
            ("status", "show components, ports and nodes"),
            ("env", "print 'export KUBECONFIG=...' for a running lab"),
        )
    ]:
        p.add_argument("--dir", type=Path, default=_default_dir(), help="lab directory (default %(default)s)")
        p.add_argument("--bin-dir", type=Path, default=None, help="prebuilt binaries (default: tools/kube/build)")
        if p.prog.endswith("down"):
            p.add_argument("--keep-logs", action="store_true", help="keep DIR/logs")
    args = ap.parse_args(argv)
    lab = Lab(args.dir, args.bin_dir, **({"pod_delete_delay_ms": args.pod_delete_delay_ms} if args.cmd == "up" else {}))
    try:
        if args.cmd == "up":
            t0 = time.monotonic()
            print(f"lab: starting in {lab.workdir}", file=sys.stderr)
            lab.up(
                args.nodes, _parse_overrides(args.node_override), fixtures=not args.no_fixtures, timeout=args.timeout
            )
            print(
                f"lab: up in {time.monotonic() - t0:.1f}s ({lab.kubernetes_version}, "
                f"{args.nodes} kwok nodes); logs in {lab.workdir / 'logs'}",
                file=sys.stderr,
            )
            print(f"export KUBECONFIG={lab.kubeconfig}")
        elif args.cmd == "down":
            stopped = lab.down(keep_logs=args.keep_logs)
            print(f"lab: stopped {len(stopped)} process(es) {stopped}", file=sys.stderr)
        elif args.cmd == "env":
            if not lab.running():
                print("lab: not running", file=sys.stderr)
                return 1
            print(f"export KUBECONFIG={lab.kubeconfig}")
        elif args.cmd == "status":
            pids = lab.pids()
            st = lab.state()
            for comp in COMPONENTS:
                port = st.get("ports", {}).get(comp, "-")
                print(f"{comp:26} {'running pid ' + str(pids[comp]) if comp in pids else 'stopped':22} port {port}")
            if "kube-apiserver" in pids:
                for n in lab.api.get("/api/v1/nodes")["items"]:
                    info = n["status"].get("nodeInfo", {})
                    print(
                        f"node {n['metadata']['name']:20} ready={_node_ready(n)!s:5} "
                        f"kernel={info.get('kernelVersion')} kubelet={info.get('kubeletVersion')}"
                    )
            return 0 if pids else 1
    except (LabError, ValueError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        if args.cmd == "up" and (lab.workdir / "logs").exists():
            print(
                f"lab: logs kept in {lab.workdir / 'logs'}; clean up with: lab down --dir {lab.workdir}",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
