"""A fault-injecting HTTPS proxy between a Kubernetes client and the lab's kube-apiserver.

``FaultProxy`` listens on 127.0.0.1 (a free port), terminates TLS with a serving cert for
127.0.0.1 signed by the lab's CA, and forwards every request to the real API server with
the lab's admin client certificate. Responses are streamed back as they arrive, so watches
(long-lived chunked responses) behave as they do without the proxy.

A seeded :class:`Schedule` of :class:`Rule` objects decides, per request, whether to inject
a fault instead of (or after) forwarding it:

=========  ===================================================================================
status     answer with an HTTP error and a ``Status`` JSON body: 429 (``Retry-After: 1``),
           500, 503, 409 (reason ``Conflict``), 403 ...
reset      close the connection without a response (TCP RST)
stall      say nothing for ``seconds`` (longer than the client's timeout), then close
cut        forward a watch and cut its stream after ``after_bytes`` bytes or ``after_seconds``
=========  ===================================================================================

``forward=True`` on a status/reset/stall rule sends the request upstream first and loses the
response (the write happened, the client does not know): the case that tests idempotency.
Every rule fires at most ``times`` times (then requests pass through), so runs finish;
``counts`` holds how often each rule fired. Usage::

    with FaultProxy.for_lab(lab.lab, tmp, [Rule("status", status=429, method="POST", path=EVICTION)]) as proxy:
        run_cli(kubeconfig=proxy.kubeconfig)
        assert proxy.counts["status-429"] > 0

``proxy.arm()`` / ``proxy.disarm()`` switch injection on and off (requests always pass
through while disarmed), so one plan file, bound to the proxy's address, can be applied
with faults and resumed without.

``proxy.seen`` holds every request as a :class:`Seen`: who sent it (the common name of the
client certificate it presented: ``kubernetes-admin`` for the lab's admin kubeconfig; two
executors told apart by ``write_kubeconfig(path, user="kwok")`` for one of them), when (wall
clock, to compare with a Lease's timestamps), and whether it reached the API server. The
proxy always talks to the API server as the admin, whoever the client is.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ipaddress
import json
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}
REASONS = {403: "Forbidden", 409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}

# Path patterns for rules (matched with re.search against the path without the query).
EVICTION = r"^/api/v1/namespaces/[^/]+/pods/[^/]+/eviction$"
NODE = r"^/api/v1/nodes/[^/]+$"
PODS = r"^/api/v1/(namespaces/[^/]+/)?pods$"
ANY_API = r"^/(api|apis)/"  # everything but /version, /openapi, /healthz


@dataclass
class Rule:
    """Inject ``fault`` into requests matching ``method`` / ``path`` / ``watch``.

    ``fault``: ``status`` (with ``status``), ``reset``, ``stall`` (with ``seconds``) or
    ``cut`` (watch requests; with ``after_bytes`` and/or ``after_seconds``). ``times``
    bounds how often it fires; ``skip`` lets that many matching requests through first;
    ``probability`` (drawn from the schedule's seeded RNG) thins it out.
    """

    fault: str
    status: int = 0
    method: str | None = None
    path: str = ANY_API
    watch: bool | None = None
    times: int = 1
    skip: int = 0
    probability: float = 1.0
    forward: bool = False
    seconds: float = 0.0
    after_bytes: int | None = None
    after_seconds: float | None = None
    retry_after: int = 1
    name: str = ""
    fired: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.fault not in ("status", "reset", "stall", "cut"):
            raise ValueError(f"unknown fault {self.fault!r}")
        if self.fault == "status" and not self.status:
            raise ValueError("a status fault needs a status code")
        if self.fault == "cut" and self.after_bytes is None and self.after_seconds is None:
            raise ValueError("a cut needs after_bytes or after_seconds")
        self.name = self.name or (f"status-{self.status}" if self.fault == "status" else self.fault)
        self._path = re.compile(self.path)

    def matches(self, method: str, path: str, watch: bool) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.watch is not None and watch != self.watch:
            return False
        if self.fault == "cut" and not watch:
            return False
        return bool(self._path.search(path))


@dataclass
class Schedule:
    """Which request gets which fault: the first matching rule with budget left, seeded."""

    rules: list[Rule]
    seed: int = 0
    armed: bool = True
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, method: str, path: str, watch: bool) -> Rule | None:
        with self._lock:
            if not self.armed:
                return None
            for rule in self.rules:
                if rule.fired >= rule.times or not rule.matches(method, path, watch):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
            return None


@dataclass
class Seen:
    """One request through the proxy: ``forwarded``: sent on to the API server (a fault that
    forwards first counts; one that answers in its place does not); ``status``: the API
    server's answer (0 until it came)."""

    method: str
    path: str
    client: str
    at: float  # time.time() when the request arrived
    forwarded: bool
    status: int = 0

    @property
    def write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

    @property
    def accepted_write(self) -> bool:
        """A write the API server carried out (a 2xx answer)."""
        return self.write and self.forwarded and 200 <= self.status < 300


@dataclass
class Injected:
    rule: str
    method: str
    path: str
    at: float


def status_body(code: int, message: str) -> bytes:
    reason = REASONS.get(code, "InternalError")
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if code == 429:
        body["details"] = {"retryAfterSeconds": 1}
    return json.dumps(body).encode()


# -- certificates ------------------------------------------------------------------------------
def serving_cert(pki: Path, out: Path) -> tuple[Path, Path]:
    """A serverAuth cert for 127.0.0.1/localhost signed by ``pki``/ca.{crt,key}: (crt, key)."""
    out.mkdir(parents=True, exist_ok=True)
    crt, key = out / "proxy.crt", out / "proxy.key"
    try:
        _serving_cert_cryptography(pki, crt, key)
    except ImportError:
        _serving_cert_openssl(pki, crt, key)
    key.chmod(0o600)
    return crt, key


def _serving_cert_cryptography(pki: Path, crt: Path, key: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    k = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cni-migrate-fault-proxy")]))
        .issuer_name(ca_cert.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key.write_bytes(
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _serving_cert_openssl(pki: Path, crt: Path, key: Path) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("need the 'cryptography' package or the openssl CLI for the proxy's cert")

    def run(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=crt.parent, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {proc.stderr.strip()}")

    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    csr, ext = crt.with_suffix(".csr"), crt.with_suffix(".ext")
    run("req", "-new", "-key", str(key), "-subj", "/CN=cni-migrate-fault-proxy", "-out", str(csr))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    run(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-set_serial", "0x" + random.randbytes(16).hex(), "-days", "2", "-sha256", "-extfile", str(ext),
        "-out", str(crt),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


# -- the proxy ---------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() would otherwise join every handler thread, daemon or not (Python 3.11's
    # ThreadingMixIn); stop() ends their connections instead.
    block_on_close = False
    allow_reuse_address = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.proxy.errors.append(f"{client_address}: {_current_exception()}")


def _current_exception() -> str:
    import sys

    exc = sys.exc_info()[1]
    return f"{type(exc).__name__}: {exc}"[:300]


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN: the peer sees 'connection reset'."""
    with contextlib.suppress(OSError):
        raw = sock
        if isinstance(sock, ssl.SSLSocket):
            raw = socket.socket(fileno=sock.detach())
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        proxy = self.server.proxy
        self.request.settimeout(proxy.handshake_timeout)
        self.request = proxy.server_ctx.wrap_socket(self.request, server_side=True)
        self.request.settimeout(None)
        with proxy.lock:
            proxy.client_socks.add(self.request)
        super().setup()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.proxy.lock:
            self.server.proxy.client_socks.discard(self.request)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _any(self) -> None:
        proxy = self.server.proxy
        self._responding = False
        split = urlsplit(self.path)
        query = split.query.lower()
        watch = bool(re.search(r"(^|&)watch=(true|1)(&|$)", query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy.requests[self.command + (" watch" if watch else "")] += 1
        proxy.log.append((self.command, split.path))
        rule = proxy.schedule.decide(self.command, split.path, watch)
        forwarded = rule is None or rule.forward or rule.fault == "cut"
        self._seen = Seen(self.command, split.path, self._client(), time.time(), forwarded)
        proxy.seen.append(self._seen)
        if rule is not None:
            proxy.record(rule, self.command, self.path)
            if not rule.forward and rule.fault != "cut":
                self._inject(rule)
                return
        try:
            self._forward(body, rule)
        except (OSError, http.client.HTTPException) as exc:
            # Before the response started, the proxy failed to reach the API server: worth a
            # look. After it, the client went away mid-stream (a watch it stopped): normal.
            if rule is None and not self._responding:
                proxy.errors.append(f"{self.command} {self.path}: {type(exc).__name__}: {exc}"[:300])
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    def _client(self) -> str:
        """The common name of the client's certificate ("" without one)."""
        cert = self.request.getpeercert() or {}
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return ""

    def _inject(self, rule: Rule) -> None:
        if rule.fault == "status":
            payload = status_body(rule.status, f"injected by the fault proxy: HTTP {rule.status}")
            self.send_response(rule.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if rule.status in (429, 503):
                self.send_header("Retry-After", str(rule.retry_after))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
            return
        if rule.fault == "stall":
            self.server.proxy.stopping.wait(rule.seconds)
        self.close_connection = True
        _reset(self.request)

    def _forward(self, body: bytes, rule: Rule | None) -> None:
        proxy = self.server.proxy
        upstream = http.client.HTTPSConnection(
            proxy.upstream_host, proxy.upstream_port, context=proxy.client_ctx, timeout=proxy.upstream_timeout
        )
        with proxy.lock:
            proxy.upstream_conns.add(upstream)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            self._seen.status = response.status
            if rule is not None and rule.fault != "cut":
                # Forwarded: the server did it. Now lose the answer.
                response.read()
                self._inject(rule)
                return
            self._stream(response, rule)
        finally:
            with proxy.lock:
                proxy.upstream_conns.discard(upstream)
            upstream.close()

    def _stream(self, response: http.client.HTTPResponse, cut: Rule | None) -> None:
        self._responding = True
        self.send_response_only(response.status, response.reason)
        chunked = response.getheader("Transfer-Encoding", "").lower() == "chunked" or response.length is None
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(response.length or 0))
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        started = time.monotonic()
        while True:
            data = response.read1(65536) if chunked else response.read(65536)
            if not data:
                break
            if cut is not None and cut.after_bytes is not None and sent + len(data) > cut.after_bytes:
                data = data[: max(cut.after_bytes - sent, 0)]
                self._write(data, chunked)
                return self._cut()
            self._write(data, chunked)
            sent += len(data)
            if cut is not None and cut.after_seconds is not None and time.monotonic() - started >= cut.after_seconds:
                return self._cut()
        if cut is not None and cut.after_seconds is not None:
            return self._cut()  # ended before the deadline: cut anyway (no terminating chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write(self, data: bytes, chunked: bool) -> None:
        if not data:
            return
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)
        self.wfile.flush()

    def _cut(self) -> None:
        """Drop the stream mid-way: no terminating chunk, the connection just goes."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        _reset(self.request)


class FaultProxy:
    """Loopback HTTPS proxy to ``upstream`` with fault injection; a context manager."""

    def __init__(
        self,
        upstream: str,
        pki: Path,
        workdir: Path,
        rules: list[Rule] | None = None,
        *,
        seed: int = 0,
        client_user: str = "admin",
        base_kubeconfig: Path | None = None,
        upstream_timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 443
        self.pki = pki
        self.workdir = workdir
        self.schedule = Schedule(list(rules or []), seed=seed)
        self.base_kubeconfig = base_kubeconfig
        self.upstream_timeout = upstream_timeout
        self.handshake_timeout = 10.0
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []  # every request's method and path, in order
        self.seen: list[Seen] = []  # every request, with its client and time (module docstring)
        self.injected: list[Injected] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.client_socks: set[socket.socket] = set()
        self.upstream_conns: set[http.client.HTTPSConnection] = set()

        crt, key = serving_cert(pki, workdir)
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(str(crt), str(key))
        # Asked for, not required: a client's certificate names it in ``seen``.
        self.server_ctx.verify_mode = ssl.CERT_OPTIONAL
        self.server_ctx.load_verify_locations(cafile=str(pki / "ca.crt"))
        self.client_ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.client_ctx.load_cert_chain(str(pki / f"{client_user}.crt"), str(pki / f"{client_user}.key"))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.kubeconfig = workdir / "proxy.kubeconfig"

    @classmethod
    def for_lab(cls, lab: Any, workdir: Path, rules: list[Rule] | None = None, **kw: Any) -> FaultProxy:
        """A proxy to a ``tools/kube/kubelab`` KubeLab: its server, pki/ and admin kubeconfig."""
        return cls(lab.server, lab.pki, workdir, rules, base_kubeconfig=lab.kubeconfig, **kw)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self.stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self.write_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()  # no new connections; then end the open ones
        with self.lock:
            socks, conns = list(self.client_socks), list(self.upstream_conns)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for conn in conns:
            # Shut the socket down under its TLS layer first: close() waits for the lock of a
            # response that another thread is still reading (a quiet watch, for minutes).
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._server is not None:
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------
    def arm(self) -> None:
        self.schedule.armed = True

    def disarm(self) -> None:
        self.schedule.armed = False

    def record(self, rule: Rule, method: str, path: str) -> None:
        with self.lock:
            self.injected.append(Injected(rule.name, method, path, time.monotonic()))

    @property
    def counts(self) -> Counter[str]:
        """Faults injected so far, by rule name (``status-429``, ``reset``, ``stall``, ``cut``...)."""
        with self.lock:
            return Counter(i.rule for i in self.injected)

    # -- kubeconfig --------------------------------------------------------------------------
    def write_kubeconfig(self, path: Path, user: str | None = None) -> Path:
        """The base kubeconfig (or one built from pki/) with every cluster's server set to the
        proxy; client credentials and CA data stay (the proxy's cert has the same CA).
        ``user``: every user presents that certificate of pki/ instead (``kwok``: a second
        client the proxy tells apart from the admin; it still acts as the admin upstream)."""

        def data(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        if self.base_kubeconfig is not None:
            doc = yaml.safe_load(self.base_kubeconfig.read_text())
        else:
            doc = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"certificate-authority-data": data("ca.crt")}}],
                "users": [
                    {
                        "name": "admin",
                        "user": {"client-certificate-data": data("admin.crt"), "client-key-data": data("admin.key")},
                    }
                ],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
                "current-context": "lab",
            }
        for cluster in doc.get("clusters") or []:
            cluster["cluster"]["server"] = self.url
        if user is not None:
            for entry in doc.get("users") or []:
                entry["user"] = {"client-certificate-data": data(f"{user}.crt"), "client-key-data": data(f"{user}.key")}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
        return path
