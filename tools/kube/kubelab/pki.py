"""The lab's throwaway PKI: a CA, the API server's serving certificate, a client
certificate per component and the admin, the service-account key pair, and the
kubeconfigs that carry them. ECDSA P-256 throughout."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml

from .addresses import ADVERTISE_IP, SERVICE_CIDR
from .errors import LabError


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


def write_pki(pki: Path) -> None:
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


def write_kubeconfig(path: Path, server: str, pki: Path, user: str, *, embed: bool = True) -> None:
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
