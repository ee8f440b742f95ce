"""A minimal REST client (stdlib only; certificate auth) and the polls the lab waits with:
on a condition with a deadline, and on a component's health endpoint."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import LabError

FIELD_MANAGER = "cni-migrate-lab"


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


def wait(
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


def http_ok(url: str, *, insecure_tls: bool = True, timeout: float = 2) -> bool:
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
