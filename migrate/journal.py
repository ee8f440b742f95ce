"""Run state: what has happened to each node in a run, as an immutable journal.

Every step transition makes a new ``RunState`` (``state.with_step(...)``); the executor
hands each one to a checkpoint store *before* a step starts and *after* it ends, so a run
killed anywhere resumes from the last record. Pure: no I/O, timestamps are passed in.

Record schema (``to_record``)::

    apiVersion: cni-migrate.io/v1
    kind: RunJournal
    planId, planChecksum, fingerprint, seq, status,
    finalize: {<cluster step>: <step status>},
    prepare: {<cluster step>: <step status>}   (only when a run had one, e.g. install-cilium)
    nodes: {<name>: {state, wave, attempt, reason, message, startedAt, finishedAt,
                     steps: {<step id>: {kind, status, startedAt, finishedAt, message}}}}

A cluster step is a ``ClusterStep`` and its status a ``StepStatus``, as a node step's
(journals of earlier versions hold the same strings, and load as they are).
``seq`` grows by one per transition; stores use it to refuse writing an older state over
a newer one. Times are RFC 3339 strings in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from migrate.errors import BadInput
from migrate.plan import SCHEMA, Plan, StepKind


class NodeState(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    MIGRATED = "migrated"
    ROLLING_BACK = "rolling-back"
    FAILED = "failed"  # a step failed and the node was put back
    ROLLED_BACK = "rolled-back"  # put back on Calico on request
    GONE = "gone"  # no longer in the cluster (removed, or replaced by a new machine): left alone


class StepStatus(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ClusterStep(StrEnum):
    """A step of the cluster as a whole: before the first node (``prepare``) or after the
    last (``finalize``), recorded by name in that section of the journal."""

    INSTALL_CILIUM = "install-cilium"  # apply --install-cilium
    UPGRADE_CILIUM = "upgrade-cilium"  # finalize --upgrade-cilium
    RESTART_AGENTS = "restart-agents"
    CHECK_POLICY = "check-policy"
    DELETE_NODE_CONFIG = "delete-node-config"
    REMOVE_CALICO = "remove-calico"

    @property
    def section(self) -> str:
        return "prepare" if self is ClusterStep.INSTALL_CILIUM else "finalize"


class RunStatus(StrEnum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class StepRecord:
    kind: StepKind
    status: StepStatus
    started_at: str
    finished_at: str = ""
    message: str = ""
    # A failed step's particulars, for machines (status -o json): the check that failed,
    # what it observed and expected. Written only when set.
    detail: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "status": self.status.value,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "message": self.message,
            **({"detail": dict(self.detail)} if self.detail else {}),
        }


@dataclass(frozen=True)
class NodeRun:
    wave: int
    state: NodeState = NodeState.PENDING
    attempt: int = 0
    reason: str = ""  # why the node was put back (the failed step kind), "" otherwise
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    steps: Mapping[str, StepRecord] = field(default_factory=lambda: MappingProxyType({}))
    last_step: str = ""

    def succeeded(self, step_id: str) -> bool:
        record = self.steps.get(step_id)
        return record is not None and record.status is StepStatus.SUCCEEDED

    def to_record(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "wave": self.wave,
            "attempt": self.attempt,
            "reason": self.reason,
            "message": self.message,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "lastStep": self.last_step,
            "steps": {k: v.to_record() for k, v in self.steps.items()},
        }


@dataclass(frozen=True)
class RunState:
    plan_id: str
    plan_checksum: str
    fingerprint: str
    nodes: Mapping[str, NodeRun]
    status: RunStatus = RunStatus.RUNNING
    seq: int = 0
    # Cluster-level steps after every node migrated (``cni-migrate finalize``).
    finalize: Mapping[ClusterStep, StepStatus] = field(default_factory=lambda: MappingProxyType({}))
    # Cluster-level steps before the first node (``apply --install-cilium``).
    prepare: Mapping[ClusterStep, StepStatus] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def new(cls, plan: Plan) -> RunState:
        nodes = {n.name: NodeRun(wave=w.index) for w in plan.waves for n in w.nodes}
        return cls(plan.id, plan.checksum, plan.cluster.fingerprint, MappingProxyType(nodes))

    # -- transitions: each returns a new state -------------------------------------------
    def _with_node(self, name: str, run: NodeRun, **changes: Any) -> RunState:
        nodes = dict(self.nodes)
        nodes[name] = run
        return replace(self, nodes=MappingProxyType(nodes), seq=self.seq + 1, **changes)

    def with_node_state(
        self, name: str, state: NodeState, now: str, *, message: str = "", reason: str | None = None
    ) -> RunState:
        run = self.nodes[name]
        changes: dict[str, Any] = {"state": state, "message": message}
        if reason is not None:
            changes["reason"] = reason
        if state is NodeState.IN_PROGRESS and run.state is not NodeState.IN_PROGRESS:
            # A fresh forward pass: forget the records of an earlier, put-back attempt.
            changes.update(
                started_at=now, finished_at="", steps=MappingProxyType({}), attempt=run.attempt + 1, reason=""
            )
        elif state is NodeState.ROLLING_BACK and run.state is not NodeState.ROLLING_BACK:
            kept = {k: v for k, v in run.steps.items() if "/rollback/" not in k}
            changes.update(steps=MappingProxyType(kept), finished_at="")
        elif state is NodeState.PENDING:
            changes.update(steps=MappingProxyType({}), started_at="", finished_at="", last_step="")
        elif state in (NodeState.MIGRATED, NodeState.FAILED, NodeState.ROLLED_BACK, NodeState.GONE):
            changes.update(finished_at=now)
        return self._with_node(name, replace(run, **changes))

    def with_step(
        self,
        name: str,
        step_id: str,
        kind: StepKind,
        status: StepStatus,
        now: str,
        message: str = "",
        detail: Mapping[str, str] | None = None,
    ) -> RunState:
        run = self.nodes[name]
        previous = run.steps.get(step_id)
        if status is StepStatus.STARTED:
            record = StepRecord(kind, status, started_at=now)
        else:
            started = previous.started_at if previous else now
            record = StepRecord(
                kind,
                status,
                started_at=started,
                finished_at=now,
                message=message,
                detail=MappingProxyType(dict(detail or {})),
            )
        steps = dict(run.steps)
        steps[step_id] = record
        return self._with_node(name, replace(run, steps=MappingProxyType(steps), last_step=step_id))

    def with_cluster_step(self, step: ClusterStep, status: StepStatus) -> RunState:
        """A cluster step's status, in its section (``ClusterStep.section``)."""
        if step.section == "prepare":
            return replace(self, prepare=MappingProxyType({**self.prepare, step: status}), seq=self.seq + 1)
        return replace(self, finalize=MappingProxyType({**self.finalize, step: status}), seq=self.seq + 1)

    def with_finalize(self, step: str, status: str) -> RunState:
        return self.with_cluster_step(ClusterStep(step), StepStatus(status))

    def with_prepare(self, step: str, status: str) -> RunState:
        return self.with_cluster_step(ClusterStep(step), StepStatus(status))

    def with_status(self, status: RunStatus) -> RunState:
        return replace(self, status=status, seq=self.seq + 1)

    # -- queries --------------------------------------------------------------------------
    def cluster_step(self, step: ClusterStep) -> StepStatus | None:
        """A cluster step's last recorded status; None if it never started."""
        return (self.prepare if step.section == "prepare" else self.finalize).get(step)

    def done(self, step: ClusterStep) -> bool:
        return self.cluster_step(step) is StepStatus.SUCCEEDED

    def cut_short(self, step: ClusterStep) -> bool:
        """Started and never succeeded: killed, stopped or failed part-way."""
        return self.cluster_step(step) not in (None, StepStatus.SUCCEEDED)

    @property
    def touched(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.state not in (NodeState.PENDING, NodeState.GONE)]

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.COMPLETED, RunStatus.ROLLED_BACK)

    # -- records ----------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "apiVersion": SCHEMA,
            "kind": "RunJournal",
            "planId": self.plan_id,
            "planChecksum": self.plan_checksum,
            "fingerprint": self.fingerprint,
            "seq": self.seq,
            "status": self.status.value,
            "nodes": {k: v.to_record() for k, v in self.nodes.items()},
            "finalize": _cluster_steps(self.finalize),
        }
        if self.prepare:  # written only when used: journals of runs without one stay as they were
            record["prepare"] = _cluster_steps(self.prepare)
        return record

    @classmethod
    def from_record(cls, r: Any) -> RunState:
        if not isinstance(r, Mapping) or r.get("kind") != "RunJournal":
            raise BadInput("checkpoint journal is not a RunJournal document")
        if r.get("apiVersion") != SCHEMA:
            raise BadInput(f"checkpoint journal schema {r.get('apiVersion')!r} is not supported")
        try:
            nodes = {
                str(name): NodeRun(
                    wave=int(n["wave"]),
                    state=NodeState(n["state"]),
                    attempt=int(n["attempt"]),
                    reason=str(n["reason"]),
                    message=str(n["message"]),
                    started_at=str(n["startedAt"]),
                    finished_at=str(n["finishedAt"]),
                    last_step=str(n["lastStep"]),
                    steps=MappingProxyType(
                        {
                            str(sid): StepRecord(
                                kind=StepKind(s["kind"]),
                                status=StepStatus(s["status"]),
                                started_at=str(s["startedAt"]),
                                finished_at=str(s["finishedAt"]),
                                message=str(s["message"]),
                                detail=MappingProxyType({str(k): str(v) for k, v in (s.get("detail") or {}).items()}),
                            )
                            for sid, s in n["steps"].items()
                        }
                    ),
                )
                for name, n in r["nodes"].items()
            }
            return cls(
                plan_id=str(r["planId"]),
                plan_checksum=str(r["planChecksum"]),
                fingerprint=str(r["fingerprint"]),
                nodes=MappingProxyType(nodes),
                status=RunStatus(r["status"]),
                finalize=MappingProxyType(
                    {ClusterStep(k): StepStatus(v) for k, v in (r.get("finalize") or {}).items()}
                ),
                prepare=MappingProxyType({ClusterStep(k): StepStatus(v) for k, v in (r.get("prepare") or {}).items()}),
                seq=int(r["seq"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A journal we cannot read must stop the run, never be guessed at.
            raise BadInput(f"checkpoint journal is malformed: {exc!r}") from exc


def _cluster_steps(steps: Mapping[ClusterStep, StepStatus]) -> dict[str, str]:
    """A section of cluster steps as written: plain strings, as journals always held."""
    return {str(k): str(v) for k, v in steps.items()}
