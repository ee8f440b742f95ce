"""Finalize: after every node is on Cilium, take the cluster out of migration mode.

Cilium's migration guide, in its order: apply the final values, restart the agents, then
delete the per-node config (and only then remove Calico). The final Helm values (migration
settings off, policy enforcement back to ``default``) are written by the shell next to the
plan; applying them is the operator's ``helm upgrade``, or, for a Cilium that apply
installed (``plan --install-cilium``), the first step here with ``--upgrade-cilium``.

Every later step waits until the live cilium-config has the final values
(``cilium.final_config_problems`` is empty): until then finalize restarts nothing and deletes
nothing, and says what is missing. Restarting agents that would only read the migration
values again, or deleting the ``cilium-default`` CiliumNodeConfig while they run with them,
is what the guide's order avoids: the CiliumNodeConfig is what holds every node's agent in
the migration settings that the final values replace.

Steps, each run by the executor's step runner (recorded in the journal's ``finalize``
section before and after, as ``ClusterStep``s) and safe to run again: restart every Cilium
agent one node at a time (so they start with the final values), check that NetworkPolicy
is enforced (an allowed and a denied client against a probe server), delete the
``cilium-default`` CiliumNodeConfig, and, only when asked, remove Calico (the Tigera
``Installation`` for operator installs, the calico-node DaemonSet and
calico-kube-controllers for manifest installs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from migrate import reconcile, verdicts
from migrate.cilium import NODE_CONFIG_NAME, final_config_problems, final_values
from migrate.errors import BadInput, ClusterError, Interrupted, PermanentError, ValidationFailed
from migrate.executor.commit import GroupCommit
from migrate.executor.config import RunConfig
from migrate.executor.run import Run
from migrate.executor.runner import StepRunner
from migrate.journal import ClusterStep, NodeState, RunState, RunStatus
from migrate.plan import Plan
from migrate.ports import CheckpointStore, Clock, Cluster, EventSink, ExecutorLock, StopFlag, SystemClock
from migrate.steps import StepContext

CALICO_OBJECTS = {
    "operator": [("operator.tigera.io/v1", "Installation", "", "default")],
    "manifest": [
        ("apps/v1", "DaemonSet", "kube-system", "calico-node"),
        ("apps/v1", "Deployment", "kube-system", "calico-kube-controllers"),
    ],
}
LEFTOVERS = (
    "Calico's iptables chains (cali-*), its vxlan.calico interface and routes stay on each node "
    "until the node reboots; reboot nodes in a later window, one at a time."
)


@dataclass
class Finalizer:
    plan: Plan
    cluster: Cluster
    store: CheckpointStore
    lock: ExecutorLock
    emit: EventSink
    agent_timeout: float = 300.0
    probe_timeout: float = 60.0
    # finalize --upgrade-cilium: upgrades the release apply installed to the final values
    # (Helm on a real cluster); None: the operator runs helm upgrade with the values file.
    cilium_upgrader: Callable[[dict[str, Any]], str] | None = None
    held_back: str = ""  # set by run(): what was asked for and not done, and why
    # set by run(): what in the live cilium-config still differs from the final values; the
    # steps after the upgrade wait for it to be empty
    values_pending: list[str] = field(default_factory=list)
    clock: Clock = field(default_factory=SystemClock)

    def _admit(self, state: RunState | None, *, read_cni: bool = False) -> RunState:
        """Refuse, naming the nodes, while any live node (in the plan or not) is not on
        Cilium: judged by the nodes' labels, and with ``read_cni`` (under the lock: a node
        task each) by every node's CNI configuration too. The journal alone never decides."""
        if state is None or state.plan_id != self.plan.id:
            raise BadInput(f"plan {self.plan.id} has no run on this cluster to finalize")
        under_way = sorted(
            n for n, r in state.nodes.items() if r.state in (NodeState.IN_PROGRESS, NodeState.ROLLING_BACK)
        )
        if under_way:
            raise BadInput(
                f"finalize needs every node migrated; not yet: {', '.join(under_way)} (its run is unfinished: "
                "'cni-migrate resume' or 'cni-migrate rollback' first)"
            )
        live = reconcile.live_map(self.cluster.nodes())
        blockers = reconcile.finalize_blockers(self.plan, live)
        if not blockers and read_cni:
            read = {}
            for name, node in live.items():
                try:
                    read[name] = replace(node, cni=self.cluster.node_cni(name))
                except ClusterError as exc:
                    # A node we cannot look at may still run Calico: that is reason enough to wait.
                    raise BadInput(
                        f"finalize needs every node on Cilium; cannot read {name}'s CNI configuration "
                        f"({exc.message}); nothing was changed"
                    ) from exc
            blockers = reconcile.finalize_blockers(self.plan, read)
        if blockers:
            raise BadInput(
                f"finalize needs every node on Cilium; not yet: {', '.join(blockers)}; nothing was changed: "
                "migrate them (a new plan covers nodes outside this one) or roll back"
            )
        if self.cilium_upgrader is not None and not state.done(ClusterStep.INSTALL_CILIUM):
            raise BadInput(
                "--upgrade-cilium upgrades only a Cilium that this run installed; apply found Cilium already "
                "running and installed nothing: upgrade your release with the final values finalize writes "
                "next to the plan"
            )
        return state

    def run(self, remove_calico: bool) -> list[str]:
        """Finalize; returns the report lines (what was done, what is left)."""
        self._admit(self.store.load())  # refuse before the lock: taking it is a cluster write
        with self.lock.hold():
            runner = self._runner(self._admit(self.store.load(), read_cni=True))
            self.cluster.cleanup_helper_pods()  # a killed finalize's policy probe, if any
            report: list[str] = []
            steps: list[tuple[ClusterStep, Callable[[], str]]] = []
            if self.cilium_upgrader is not None:
                steps.append((ClusterStep.UPGRADE_CILIUM, self._upgrade_cilium))  # before the restarts pick it up
            steps += [
                (ClusterStep.RESTART_AGENTS, self._restart_agents),
                # Before anything is removed: a cluster that does not enforce policy stops here.
                (ClusterStep.CHECK_POLICY, self._check_policy),
                (ClusterStep.DELETE_NODE_CONFIG, self._delete_node_config),
            ]
            if remove_calico:
                steps.append((ClusterStep.REMOVE_CALICO, self._remove_calico))
            upgraded = False
            self.held_back = ""
            self.values_pending = []
            for step, fn in steps:
                state = runner.run.state
                # Agents read cilium-config when they start: an upgrade in this run means they
                # restart again, and the policy check is made again, whatever an earlier run did.
                redo = upgraded and step in (ClusterStep.RESTART_AGENTS, ClusterStep.CHECK_POLICY)
                if state.done(step) and not redo:
                    report.append(f"{step}: done earlier")
                    continue
                if step is not ClusterStep.UPGRADE_CILIUM:
                    # The guide's order: nothing after the final values until they are live.
                    self.values_pending = final_config_problems(self.cluster.cilium_config())
                if self.values_pending:
                    if remove_calico:
                        self.held_back = (
                            "Calico was not removed: Cilium does not run with the final values yet; apply them "
                            "(helm upgrade), then finalize --remove-calico again"
                        )
                    said = any("still runs with the migration values" in line for line in report)
                    report.append(
                        f"{step}: not yet: waits for the final values"
                        if said
                        else f"{step}: not yet: Cilium still runs with the migration values "
                        f"({'; '.join(self.values_pending)}); apply the final values, then run finalize again"
                    )
                    continue
                if step is ClusterStep.CHECK_POLICY and not self._enforcing():
                    report.append(
                        f"{step}: not yet: Cilium does not enforce policy yet (enable-policy never in "
                        "kube-system/cilium-config); after the helm upgrade to the final values, run finalize again"
                    )
                    continue
                if step is ClusterStep.REMOVE_CALICO and not state.done(ClusterStep.CHECK_POLICY):
                    self.held_back = (
                        "Calico was not removed: Cilium's policy enforcement is not proven yet (check-policy); "
                        "upgrade Cilium to the final values, restart its agents, then finalize --remove-calico again"
                    )
                    report.append(f"{step}: not yet: {self.held_back}")
                    continue
                if step is ClusterStep.UPGRADE_CILIUM:
                    upgraded = True
                outcome = runner.cluster_step(step, fn)
                if isinstance(outcome.error, ClusterError):
                    raise Interrupted(
                        f"finalize {step} stopped: {outcome.error.message}; run finalize again"
                    ) from outcome.error
                if outcome.error is not None:
                    raise outcome.error
                report.append(f"{step}: {outcome.message}")
            if not self.held_back:
                runner.run.set_status(RunStatus.COMPLETED)
            report.append(f"left on the nodes: {LEFTOVERS}")
            return report

    def _runner(self, state: RunState) -> StepRunner:
        """The executor's step runner, over this run's journal; finalize runs no node step."""
        config = RunConfig(agent_timeout=self.agent_timeout, probe_timeout=self.probe_timeout)
        stop = StopFlag()
        run = Run(self.plan, config, self.cluster, self.clock, stop, GroupCommit(self.store, state), self.emit)
        context = StepContext(self.cluster, self.plan.options, self.clock, stop, self.emit, self.plan.id)
        return StepRunner(run, {}, context)

    def _upgrade_cilium(self) -> str:
        assert self.cilium_upgrader is not None
        message = self.cilium_upgrader(final_values(self.plan.options))
        problems = final_config_problems(self.cluster.cilium_config())
        if problems:
            raise PermanentError(f"after the upgrade, cilium-config still says {'; '.join(problems)}")
        return message

    def _enforcing(self) -> bool:
        return verdicts.policy_enforced(self.cluster.cilium_config())

    def _check_policy(self) -> str:
        result = self.cluster.policy_probe(self.probe_timeout)
        if not result.ok:
            raise ValidationFailed(
                f"finalize check-policy failed: {result.observed} (expected: {result.expected}); nothing is undone "
                "after finalize: check Cilium's policy settings, then run finalize again"
            )
        return f"NetworkPolicy enforced: {result.observed}"

    def _restart_agents(self) -> str:
        restarted = 0
        for node in self.cluster.nodes():
            agent = self.cluster.cilium_agent(node.name)
            if agent is None:
                continue
            self.cluster.delete_pod(agent)
            self.cluster.wait_cilium_agent_ready(node.name, agent.uid, self.agent_timeout)
            restarted += 1
        return f"restarted {restarted} Cilium agent(s), one node at a time"

    def _delete_node_config(self) -> str:
        api = self.plan.cluster.node_config_api
        if self.cluster.delete_object(api, "CiliumNodeConfig", "kube-system", NODE_CONFIG_NAME):
            return f"deleted CiliumNodeConfig kube-system/{NODE_CONFIG_NAME}"
        return f"CiliumNodeConfig kube-system/{NODE_CONFIG_NAME} was already gone"

    def _remove_calico(self) -> str:
        install = self.cluster.inventory().calico_install
        objects = CALICO_OBJECTS.get(install, [])
        if not objects:
            return "no Calico install found"
        gone = [
            f"{kind} {ns + '/' if ns else ''}{name}"
            for api, kind, ns, name in objects
            if self.cluster.delete_object(api, kind, ns, name)
        ]
        return f"removed Calico ({install} install): {', '.join(gone) or 'already gone'}"
