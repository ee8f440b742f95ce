"""The in-cluster checkpoint store: the run journal in a ConfigMap, mirrored locally.

    ConfigMap cni-migrate/journal-<fingerprint[:16]>
      binaryData.journal.json.gz   the RunJournal record, gzipped (5,000 nodes fit in 1 MiB)

Writes are compare-and-swap on ``resourceVersion``: a save based on a journal someone
else has written since fails with ``RunConflict`` instead of overwriting it, so two
executors can never both advance one run (the Lease keeps them apart; this is the second
line). ``Mirrored`` writes the cluster copy first, then the local file, and reads the
cluster copy when it exists, so an executor on another machine resumes from it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
from typing import Any

from migrate.errors import BadInput, Conflict, NotFound, RunConflict
from migrate.journal import RunState
from migrate.ports import CheckpointStore

KEY = "journal.json.gz"


class ConfigMapStore:
    def __init__(self, cluster: Any, fingerprint: str, namespace: str = "cni-migrate") -> None:
        self.cluster = cluster  # a KubernetesCluster: its calls translate API errors
        self.namespace = namespace
        self.name = "journal-" + fingerprint.replace("sha256:", "")[:16]
        self._version: str | None = None

    def _read(self) -> dict[str, Any] | None:
        c = self.cluster
        try:
            return c._json(f"get configmap {self.name}", c.core.read_namespaced_config_map, self.name, self.namespace)
        except NotFound:
            return None

    def load(self) -> RunState | None:
        cm = self._read()
        if cm is None:
            self._version = None
            return None
        self._version = cm["metadata"]["resourceVersion"]
        raw = (cm.get("binaryData") or {}).get(KEY)
        if not raw:
            return None
        try:
            record = json.loads(gzip.decompress(base64.b64decode(raw)))
        except (ValueError, OSError) as exc:
            # A journal we cannot read must stop the run, never be guessed at.
            raise BadInput(f"in-cluster journal {self.namespace}/{self.name} is unreadable") from exc
        return RunState.from_record(record)

    def save(self, state: RunState) -> None:
        c = self.cluster
        data = base64.b64encode(gzip.compress(json.dumps(state.to_record(), sort_keys=True).encode(), 6)).decode()
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "cni-migrate"},
            },
            "binaryData": {KEY: data},
        }
        try:
            if self._version is None:
                c._ensure_namespace()
                created = c._json("create journal", c.core.create_namespaced_config_map, self.namespace, body)
                self._version = created["metadata"]["resourceVersion"]
            else:
                body["metadata"]["resourceVersion"] = self._version
                replaced = c._json(
                    "write journal", c.core.replace_namespaced_config_map, self.name, self.namespace, body
                )
                self._version = replaced["metadata"]["resourceVersion"]
        except Conflict as exc:
            raise RunConflict(
                f"the in-cluster journal {self.namespace}/{self.name} was changed by another executor; "
                "stop and resume from it"
            ) from exc

    def archive(self) -> None:
        state = self.load()
        if state is None:
            return
        c = self.cluster
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{self.name}-{state.plan_id}-{state.seq}", "namespace": self.namespace},
            "binaryData": (self._read() or {}).get("binaryData") or {},
        }
        # Archived already by an earlier, interrupted attempt (409): keep that copy.
        with contextlib.suppress(Conflict):
            c._call("archive journal", c.core.create_namespaced_config_map, self.namespace, body)
        c._call("delete journal", c.core.delete_namespaced_config_map, self.name, self.namespace)
        self._version = None


class Mirrored:
    """The cluster copy is the truth; the local file mirrors it for people and for
    runs that lose the API server (``status`` reads it)."""

    def __init__(self, primary: CheckpointStore, mirror: CheckpointStore) -> None:
        self.primary = primary
        self.mirror = mirror

    def load(self) -> RunState | None:
        state = self.primary.load()
        return state if state is not None else self.mirror.load()

    def save(self, state: RunState) -> None:
        self.primary.save(state)
        self.mirror.save(state)

    def archive(self) -> None:
        self.primary.archive()
        self.mirror.archive()
