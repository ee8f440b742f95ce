"""The in-cluster checkpoint store (the ``CheckpointStore`` port on a real cluster): the run
journal in ConfigMaps, mirrored locally. Its requests go through the package's ``Api``.

    ConfigMap cni-migrate/journal-<fingerprint[:16]>
      binaryData.journal.json.gz   snapshot: the RunJournal record, gzipped (5,000 nodes fit in 1 MiB)
    ConfigMap cni-migrate/journal-<fingerprint[:16]>-delta
      binaryData.delta.json.gz     the nodes changed since that snapshot (their latest records),
                                   the run's status and seq, and ``base``: the snapshot's seq

Like the local journal's snapshot + log: a step transition changes one node, so ``save``
rewrites only the small delta, at a cost that does not grow with the cluster (rewriting the
whole journal took 86 ms a save at 5,000 nodes). Every save writes the delta; when it holds
``COMPACT_NODES`` nodes, or the run's status changed, the snapshot is rewritten after it. A
delta counts only when its ``base`` is the snapshot's seq and its seq is newer, so the
delta a new snapshot supersedes is ignored, and a kill between the two writes leaves a
delta that is still valid against the older snapshot.

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
DELTA_KEY = "delta.json.gz"
COMPACT_NODES = 64  # nodes in the delta before the snapshot is rewritten (about 10 KB gzipped)


def _pack(record: dict[str, Any]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(record, sort_keys=True).encode(), 6)).decode()


class ConfigMapStore:
    def __init__(self, cluster: Any, fingerprint: str, namespace: str = "cni-migrate") -> None:
        self.cluster = cluster  # a KubernetesCluster: its calls translate API errors
        self.namespace = namespace
        self.name = "journal-" + fingerprint.replace("sha256:", "")[:16]
        self.delta_name = self.name + "-delta"
        self._version: str | None = None  # the snapshot's resourceVersion, None: none exists
        self._delta_version: str | None = None
        self._base = -1  # the snapshot's seq
        self._delta: dict[str, Any] = {}  # node -> record, changed since the snapshot
        self._last: RunState | None = None  # what this store last wrote or read

    def _read(self, name: str) -> dict[str, Any] | None:
        c = self.cluster
        try:
            return c.rest.json(f"get configmap {name}", c.core.read_namespaced_config_map, name, self.namespace)
        except NotFound:
            return None

    def _unpack(self, cm: dict[str, Any], key: str) -> dict[str, Any] | None:
        raw = (cm.get("binaryData") or {}).get(key)
        if not raw:
            return None
        try:
            record = json.loads(gzip.decompress(base64.b64decode(raw)))
        except (ValueError, OSError) as exc:
            # A journal we cannot read must stop the run, never be guessed at.
            raise BadInput(f"in-cluster journal {self.namespace}/{cm['metadata']['name']} is unreadable") from exc
        if not isinstance(record, dict):
            raise BadInput(f"in-cluster journal {self.namespace}/{cm['metadata']['name']} is unreadable")
        return record

    def load(self) -> RunState | None:
        cm = self._read(self.name)
        delta_cm = self._read(self.delta_name)
        self._delta_version = delta_cm["metadata"]["resourceVersion"] if delta_cm else None
        self._delta, self._last = {}, None
        if cm is None:
            self._version, self._base = None, -1
            return None
        self._version = cm["metadata"]["resourceVersion"]
        record = self._unpack(cm, KEY)
        if record is None:
            return None
        self._base = int(record["seq"])
        delta = self._unpack(delta_cm, DELTA_KEY) if delta_cm else None
        # A delta holds every node changed since its base, so it also counts over a newer
        # snapshot it is newer than: written by an executor that loaded between another's
        # delta write and snapshot rewrite (that one is fenced at its next delta write).
        if (
            delta is not None
            and delta.get("planId") == record.get("planId")
            and int(delta.get("base", -1)) <= self._base < int(delta["seq"])
        ):
            record["nodes"].update(delta["nodes"])
            record["status"], record["seq"], record["finalize"] = delta["status"], delta["seq"], delta["finalize"]
            if "prepare" in delta:
                record["prepare"] = delta["prepare"]
            self._delta = dict(delta["nodes"])
        self._last = RunState.from_record(record)
        return self._last

    def save(self, state: RunState) -> None:
        last = self._last
        try:
            if self._version is None or last is None or last.plan_id != state.plan_id:
                self._snapshot(state)  # a new journal: the snapshot is all there is
            else:
                # The delta first, always: its compare-and-swap is what stops a second
                # executor, before it could write a snapshot over the first one's delta.
                changed = {n: run.to_record() for n, run in state.nodes.items() if run is not last.nodes.get(n)}
                nodes = {**self._delta, **changed}
                self._write_delta(state, nodes)
                if last.status is not state.status or len(nodes) >= COMPACT_NODES:
                    self._snapshot(state)
        except Conflict as exc:
            raise RunConflict(
                f"the in-cluster journal {self.namespace}/{self.name} was changed by another executor; "
                "stop and resume from it"
            ) from exc
        self._last = state

    def _body(self, name: str, key: str, data: str, version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "cni-migrate"},
        }
        if version is not None:
            metadata["resourceVersion"] = version
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "binaryData": {key: data}}

    def _put(self, name: str, key: str, data: str, version: str | None) -> str:
        """Create (no version) or replace (at ``version``) one ConfigMap; its new version."""
        c = self.cluster
        body = self._body(name, key, data, version)
        if version is None:
            if name == self.name:
                c.ensure_namespace()  # the snapshot comes first: the delta finds the namespace made
            made = c.rest.json(f"create {name}", c.core.create_namespaced_config_map, self.namespace, body)
        else:
            made = c.rest.json(f"write {name}", c.core.replace_namespaced_config_map, name, self.namespace, body)
        return str(made["metadata"]["resourceVersion"])

    def _snapshot(self, state: RunState) -> None:
        self._version = self._put(self.name, KEY, _pack(state.to_record()), self._version)
        # The delta now has an older base: it is ignored, and replaced by the next save. A
        # kill before this write leaves that delta valid against the older snapshot.
        self._base, self._delta = state.seq, {}

    def _write_delta(self, state: RunState, nodes: dict[str, Any]) -> None:
        delta = {
            "planId": state.plan_id,
            "base": self._base,
            "seq": state.seq,
            "status": state.status.value,
            "finalize": dict(state.finalize),
            **({"prepare": dict(state.prepare)} if state.prepare else {}),
            "nodes": nodes,
        }
        self._delta_version = self._put(self.delta_name, DELTA_KEY, _pack(delta), self._delta_version)
        self._delta = nodes

    def archive(self) -> None:
        state = self.load()
        if state is None:
            return
        c = self.cluster
        body = self._body(f"{self.name}-{state.plan_id}-{state.seq}", KEY, _pack(state.to_record()), None)
        del body["metadata"]["labels"]
        # Archived already by an earlier, interrupted attempt (409): keep that copy.
        with contextlib.suppress(Conflict):
            c.rest.call("archive journal", c.core.create_namespaced_config_map, self.namespace, body)
        with contextlib.suppress(NotFound):
            c.rest.call("delete journal delta", c.core.delete_namespaced_config_map, self.delta_name, self.namespace)
        c.rest.call("delete journal", c.core.delete_namespaced_config_map, self.name, self.namespace)
        self._version = self._delta_version = None
        self._base, self._delta, self._last = -1, {}, None


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
