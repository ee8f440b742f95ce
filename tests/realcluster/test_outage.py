"""The API server itself goes away mid-run: the run waits, reconnects and goes on.

A 4-node migration runs through the real CLI; once the first node is cordoned the lab
stops kube-apiserver (SIGTERM), keeps it down for a while, and starts it again with the
same flags (then restarts kube-scheduler, whose cache can go wrong across the outage, and
kwok, which stands in for the kubelets and, unlike them, does not resync on its own).
Requests meanwhile get refused connections and watches break; the run must finish with
exit 0, every node migrated, no PodDisruptionBudget ever below its desiredHealthy, and a
journal that matches the cluster.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.labsupport import wait_for
from tests.realcluster.clilab import CliLab
from tests.realcluster.test_faults import assert_all_migrated, pdb_breaches

pytestmark = pytest.mark.realcluster

DOWN_SECONDS = 8


def test_apiserver_restart_mid_run_is_ridden_out(tmp_path: Path) -> None:
    lab = CliLab(tmp_path, nodes=4)
    pdbs = None
    try:
        assert lab.plan("--max-unavailable", "2").code == 0
        pdbs = lab.watch_pdbs()
        proc = lab.popen("apply", "p.yaml", "--yes")
        wait_for("the first node cordoned", lambda: lab.cordoned() != [], timeout=60)
        started = time.monotonic()
        lab.lab.restart("kube-apiserver", down_seconds=DOWN_SECONDS)
        outage = time.monotonic() - started
        # kube-scheduler rides out the outage in most runs, but in 3 of 7 (a fresh-clone CI
        # of aadd7f4, then loops of 4 and 2) its cache went wrong for the StatefulSet pod db-2,
        # which the drain deletes and the controller re-creates under the same name ("Pod
        # updated on a different node than previously added to. Scheduler cache is
        # corrupted"), and from then on it bound no pod at all, the Cilium agent's
        # included. A control plane that comes back restarts its scheduler too; so does the
        # lab, so that the test is about cni-migrate's client, not the scheduler's cache.
        lab.lab.restart("kube-scheduler")
        # kwok gives up on pod stages that failed while the API was away (kubelets resync
        # after an outage); restarting it makes it re-list and finish terminating pods.
        lab.lab.restart("kwok")
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            # Say what the run was waiting for: the pods not running, and what the node
            # agent (the kubelets' stand-in) last did; the lab's logs stay under tmp_path.
            proc.kill()
            out, err = proc.communicate()
            pods = lab.core.list_pod_for_all_namespaces().items
            stuck = [(p.metadata.namespace, p.metadata.name, p.spec.node_name, p.status.phase) for p in pods]
            stuck = [s for s in stuck if s[3] != "Running"]
            log = lab.agent.log[-25:] if lab.agent is not None else []
            nodes = [
                (
                    n.metadata.name,
                    n.spec.unschedulable,
                    [t.key for t in n.spec.taints or []],
                    [(c.type, c.status) for c in n.status.conditions or [] if c.type == "Ready"],
                )
                for n in lab.core.list_node().items
            ]
            events = lab.core.list_event_for_all_namespaces(field_selector="reason=FailedScheduling").items
            why = sorted({(e.involved_object.name, e.message) for e in events})[-10:]
            pytest.fail(
                f"apply hung after the outage\n{out[-1500:]}\n{err[-1500:]}\npods: {stuck}\n"
                f"nodes: {nodes}\nFailedScheduling: {why}\nagent: {log}"
            )
        if proc.returncode != 0:
            print(err)
        assert proc.returncode == 0, (proc.returncode, out[-2000:], err[-2000:])
        assert "Traceback" not in err
        assert_all_migrated(lab)
        breaches = pdb_breaches(pdbs)
        assert not breaches, breaches[:3]
        print(f"\napiserver away {outage:.1f}s (down {DOWN_SECONDS}s + restart); the run finished on its own")
    finally:
        if pdbs is not None:
            pdbs.stop()
        lab.close()
