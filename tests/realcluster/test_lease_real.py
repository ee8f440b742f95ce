"""The executor Lease when a run goes wrong in ways that are not a clean stop (issue 28, 1-2).

Each test starts its own 4-node lab and runs the installed CLI. "Another machine" is another
``CNI_MIGRATE_HOME`` (its own flock and local journal, another Lease holder identity) with
the same kubeconfig, or, through the fault proxy, another client certificate, so that the
proxy's record (``FaultProxy.seen``) says which executor sent what, and when.

Every timing claim is checked against the Lease's own timestamps (its ``renewTime`` plus
``leaseDurationSeconds``: the moment another executor may take it over), never against a
sleep: an executor cut off from the API server must have stopped before that moment, and
one stopped past it, then continued, gets no write accepted after it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from migrate.backends.kubernetes.cluster import KubernetesCluster
from migrate.backends.kubernetes.journal import ConfigMapStore
from migrate.checkpoints.local import LocalStore
from migrate.journal import RunState, RunStatus, StepStatus
from migrate.plan import StepKind, step_id
from tests.labsupport import wait_for
from tests.realcluster.clilab import CliLab, Result
from tests.realcluster.faultproxy import FaultProxy, Rule, Seen
from tests.realcluster.test_cli_real import audit, lease_expired
from tests.realcluster.test_faults import assert_all_migrated, assert_journal_truthful, one_line

pytestmark = pytest.mark.realcluster

ADMIN = "kubernetes-admin"  # the common name of the lab's admin certificate: the first executor
LEASE_API = r"^/apis/coordination\.k8s\.io/"
# Evicted pods stay Terminating this long, so a drain takes a while and a run outlasts a
# Lease's deadline (40 s after its last renewal) when it must.
SLOW_PODS_MS = 3000
SLOWER_PODS_MS = 20_000  # ... each drain half the 40 s from a renewal to the holder's deadline


def renewed(lease: dict[str, Any]) -> float:
    """The Lease's renewTime, as seconds since the epoch."""
    return datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00")).timestamp()


def expiry(lease: dict[str, Any]) -> float:
    """When another executor may take the Lease over: renewTime + leaseDurationSeconds."""
    return renewed(lease) + int(lease["spec"]["leaseDurationSeconds"])


def holder(lab: CliLab) -> str:
    return str(((lab.lease() or {}).get("spec") or {}).get("holderIdentity") or "")


def step_started(lab: CliLab, step: str, home: Path | None = None) -> bool:
    return any(e.get("event") == "step-started" and e.get("step") == step for e in audit(lab, home))


def local_journal(home: Path) -> RunState:
    """The run state an executor's state home mirrors (snapshot and log)."""
    dirs = sorted((home / "runs").glob("*/"))
    assert len(dirs) == 1, dirs
    state = LocalStore(dirs[0]).load()
    assert state is not None
    return state


def cluster_journal(lab: CliLab) -> RunState:
    """The in-cluster journal (snapshot and delta ConfigMaps), read as an executor reads it."""
    names = [
        cm.metadata.name
        for cm in lab.core.list_namespaced_config_map("cni-migrate").items
        if re.fullmatch(r"journal-[0-9a-f]{16}", cm.metadata.name)
    ]
    assert len(names) == 1, names
    cluster = KubernetesCluster.connect(kubeconfig=str(lab.kubeconfig))
    state = ConfigMapStore(cluster, "sha256:" + names[0].removeprefix("journal-")).load()
    assert state is not None
    return state


def lost_lease(result: Result) -> str:
    line = one_line(result)
    assert result.code == 5, result
    assert "lost the executor lease" in line and "resume" in line, line
    return line


def finish(proc: subprocess.Popen[str], timeout: float) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the executor did not stop within {timeout:.0f}s\n{out[-2000:]}\n{err[-2000:]}")
    return Result(proc.returncode, out, err)


def sent_by(proxy: FaultProxy, client: str, after: float) -> list[Seen]:
    return [s for s in list(proxy.seen) if s.client == client and s.at > after]


# -- 1: kill -9, then another machine ----------------------------------------------------------
def test_after_kill_9_another_machine_takes_the_expired_lease_over_and_resumes_from_the_in_cluster_journal(
    tmp_path: Path,
) -> None:
    lab = CliLab(tmp_path, nodes=4, pod_delete_delay_ms=SLOW_PODS_MS)
    try:
        assert lab.plan("--max-unavailable", "2").code == 0
        first = lab.popen("apply", "p.yaml", "--yes")
        try:
            # Killed with the canary drained: enough recorded done to show it is not done again.
            wait_for("the canary's swap under way", lambda: step_started(lab, "swap-cni"), timeout=90, interval=0.05)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        lease = lab.lease()
        assert lease is not None and not lease_expired(lease), lease
        killed = lease["spec"]["holderIdentity"]

        # Until the Lease expires it keeps the other machine out, which writes nothing.
        other = tmp_path / "other-machine"
        refused = lab.cli("resume", "p.yaml", "--yes", home=other)
        line = one_line(refused)
        assert refused.code == 2 and killed in line and "until it expires" in line, refused
        assert lab.lease() == lease, "the refused executor wrote to the Lease"
        assert not step_started(lab, "cordon", other)

        # What the killed run had recorded done in the cluster: the other machine must not do it again.
        done = {
            sid
            for record in cluster_journal(lab).nodes.values()
            for sid, step in record.steps.items()
            if step.status is StepStatus.SUCCEEDED
        }
        assert done, "the killed run recorded nothing done: the kill came too early"

        wait_for("the killed executor's Lease to expire", lambda: lease_expired(lab.lease()), timeout=90)
        resumed = lab.cli("resume", "p.yaml", "--yes", home=other, timeout=400)
        assert resumed.code == 0, resumed
        # Resumed from the in-cluster journal: nothing the killed run recorded done ran again.
        again = {
            step_id(e["node"], StepKind(e["step"]), e.get("phase", "apply"))
            for e in audit(lab, other)
            if e.get("event") == "step-started"
        }
        assert not again & done, sorted(again & done)
        state = local_journal(other)
        assert state.status is RunStatus.COMPLETED, state.status
        assert_journal_truthful(lab, state.to_record())
        assert lab.cordoned() == []
        assert holder(lab) == "", "the other machine did not release the Lease"
        print(f"\nkilled holder {killed}; {len(done)} step(s) done before the kill were not run again")
    finally:
        lab.close()


# -- 1: SIGSTOP past the Lease, then SIGCONT -------------------------------------------------------
def test_an_executor_stopped_past_its_lease_is_refused_when_it_comes_back_and_sends_nothing(tmp_path: Path) -> None:
    lab = CliLab(tmp_path, nodes=4, pod_delete_delay_ms=SLOW_PODS_MS)
    try:
        # No faults: the proxy only tells the two executors apart by their certificates.
        with FaultProxy.for_lab(lab.lab, tmp_path / "proxy") as proxy:
            assert lab.plan("--max-unavailable", "2", kubeconfig=proxy.kubeconfig).code == 0
            other_kubeconfig = proxy.write_kubeconfig(tmp_path / "other.kubeconfig", user="kwok")
            first = lab.popen("apply", "p.yaml", "--yes", kubeconfig=proxy.kubeconfig)
            second = None
            try:
                wait_for("the canary's drain under way", lambda: step_started(lab, "drain"), timeout=90, interval=0.05)
                first.send_signal(signal.SIGSTOP)
                wait_for("the stopped executor's Lease to expire", lambda: lease_expired(lab.lease()), timeout=90)
                lease = lab.lease()
                assert lease is not None
                stopped = lease["spec"]["holderIdentity"]
                expired_at = expiry(lease)

                other = tmp_path / "other-machine"
                second = lab.popen("resume", "p.yaml", "--yes", home=other, kubeconfig=other_kubeconfig)
                wait_for("the other machine to take the Lease", lambda: holder(lab) not in ("", stopped), timeout=60)
                wait_for("the other machine at work", lambda: step_started(lab, "uncordon", other), timeout=120)
                first.send_signal(signal.SIGCONT)
                came_back = finish(first, timeout=120)
                took_over = finish(second, timeout=400)
            finally:
                for proc in (first, second):
                    if proc is not None and proc.poll() is None:
                        proc.send_signal(signal.SIGCONT)
                        proc.kill()
                        proc.communicate()

        line = lost_lease(came_back)
        assert took_over.code == 0, took_over
        # Nothing it sent after its Lease expired changed the cluster. (A request the process
        # froze in the middle of, past the fence, goes out when it thaws: a renewal is then
        # refused by the Lease's resourceVersion; docs/architecture.md, "The executor lock".)
        late = sent_by(proxy, ADMIN, expired_at)
        accepted = [s for s in late if s.accepted_write]
        assert accepted == [], f"the first executor wrote after its Lease expired: {accepted}"
        assert sent_by(proxy, "kwok-controller", 0), "the other machine's requests were not told apart"
        state = local_journal(other)
        assert state.status is RunStatus.COMPLETED, state.status
        assert_journal_truthful(lab, state.to_record())
        assert lab.cordoned() == []
        print(f"\ncame back: {line}; sent after its Lease expired: {[(s.method, s.path, s.status) for s in late]}")
    finally:
        lab.close()


# -- 2: the API server out of reach for longer than the Lease -------------------------------------------
@dataclass(frozen=True)
class Cut:
    """An apply cut off mid-drain: how it ended, when it was cut and when it had exited
    (wall clock), and its Lease as the API server has it then (the last renewal that got through)."""

    result: Result
    cut_at: float
    exited_by: float
    lease: dict[str, Any]


def apply_then_cut(lab: CliLab, proxy: FaultProxy) -> Cut:
    """Plan and apply through ``proxy`` disarmed; arm it once the canary's drain is under way."""
    proxy.disarm()
    assert lab.plan("--max-unavailable", "2", kubeconfig=proxy.kubeconfig).code == 0
    first = lab.popen("apply", "p.yaml", "--yes", kubeconfig=proxy.kubeconfig)
    try:
        wait_for("the canary's drain under way", lambda: step_started(lab, "drain"), timeout=90, interval=0.05)
        proxy.arm()
        cut_at = time.time()
        result = finish(first, timeout=120)
        exited_by = time.time()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    lease = lab.lease()  # read directly, not through the cut
    assert lease is not None
    return Cut(result, cut_at, exited_by, lease)


def resume_after_the_cut(lab: CliLab, proxy: FaultProxy) -> None:
    """The in-cluster journal as the cut executor left it: still running (marking it
    interrupted would have been a write after the Lease was lost), no more recorded than
    happened; resume goes on from it (this machine: its own Lease, taken again at once)."""
    state = cluster_journal(lab)
    assert state.status is RunStatus.RUNNING, state.status
    assert_journal_truthful(lab, state.to_record())
    proxy.disarm()
    resumed = lab.cli("resume", "p.yaml", "--yes", kubeconfig=proxy.kubeconfig, timeout=400)
    assert resumed.code == 0, resumed
    assert_all_migrated(lab)


def test_an_executor_cut_off_from_the_api_server_stops_before_its_lease_could_be_taken_over(tmp_path: Path) -> None:
    lab = CliLab(tmp_path, nodes=4, pod_delete_delay_ms=SLOW_PODS_MS)
    # Every request hangs unanswered, as on a network that drops packets, until disarmed.
    cut = Rule("stall", path=r"^/", seconds=600, times=10**6, name="cut")
    try:
        with FaultProxy.for_lab(lab.lab, tmp_path / "proxy", [cut]) as proxy:
            run = apply_then_cut(lab, proxy)
            line = lost_lease(run.result)
            spec = run.lease["spec"]
            assert holder(lab) == spec["holderIdentity"] != "", "the Lease was released through the cut"
            # Stopped (the process gone, not only its writes) before another executor could
            # take the Lease over.
            assert run.exited_by < expiry(run.lease), (run.exited_by - renewed(run.lease), spec)
            through = [s for s in list(proxy.seen) if s.forwarded and s.at > run.cut_at]
            assert through == [], through[:5]
            resume_after_the_cut(lab, proxy)
        print(
            f"\ncut {run.cut_at - renewed(run.lease):.1f}s after the last renewal; exited "
            f"{run.exited_by - renewed(run.lease):.1f}s after it (the Lease lasts {spec['leaseDurationSeconds']}s): "
            f"{line}"
        )
    finally:
        lab.close()


def test_an_executor_whose_renewals_fail_stops_writing_before_its_lease_could_be_taken_over(tmp_path: Path) -> None:
    """Only the Lease is out of reach: the run goes on writing until the holder's deadline,
    and not one write after it."""
    lab = CliLab(tmp_path, nodes=4, pod_delete_delay_ms=SLOWER_PODS_MS)
    cut = Rule("stall", path=LEASE_API, seconds=600, times=10**6, name="cut-lease")
    try:
        with FaultProxy.for_lab(lab.lab, tmp_path / "proxy", [cut]) as proxy:
            run = apply_then_cut(lab, proxy)
            line = lost_lease(run.result)
            writes = [s for s in sent_by(proxy, ADMIN, run.cut_at) if s.accepted_write]
            assert writes, "the run wrote nothing after the renewals were cut: the test proves nothing"
            last = max(s.at for s in writes)
            assert last < expiry(run.lease), (last - renewed(run.lease), run.lease["spec"], writes[-3:])
            resume_after_the_cut(lab, proxy)
        print(
            f"\n{len(writes)} write(s) after the cut, the last {last - renewed(run.lease):.1f}s after the last "
            f"renewal (the Lease lasts {run.lease['spec']['leaseDurationSeconds']}s): {line}"
        )
    finally:
        lab.close()
