"""The cluster-level work around a run's nodes: the running Cilium checked against the
plan's migration mode (and installed, with ``apply --install-cilium``), the
``cilium-default`` CiliumNodeConfig, and the traffic watch deployed before the first node
and removed after the last.

Each one that fails stops the run before any node is touched, resumably.
"""

from __future__ import annotations

from migrate import traffic
from migrate.cilium import INSTALL_CILIUM, live_config_problems, migration_values, node_config
from migrate.errors import ClusterError, Interrupted, LeaseLost, PreflightBlocked
from migrate.executor.run import Run
from migrate.executor.runner import StepRunner
from migrate.journal import RunStatus
from migrate.plan import Plan
from migrate.ports import Cluster, Event


def check_cilium(plan: Plan, cluster: Cluster, *, may_install: bool = False) -> bool:
    """The running Cilium must be in the migration mode the plan prescribes: checked on the
    live configuration, not on the values file the operator may or may not have used.
    Returns True when none runs and ``may_install``: the run installs it. A Cilium that runs
    otherwise is never upgraded behind the operator's back."""
    config = cluster.cilium_config()
    if may_install and not config:
        return True
    problems = live_config_problems(config, plan.options)
    if problems:
        hint = (
            "--install-cilium installs Cilium only where none runs; upgrade this one"
            if config and may_install
            else "install or upgrade it"
        )
        raise PreflightBlocked(
            f"the running Cilium is not in the plan's migration mode: {'; '.join(problems)}; "
            f"{hint} with the values written next to the plan, then apply again"
        )
    return False


class Prepare:
    def __init__(self, run: Run) -> None:
        self.run = run

    def install_cilium(self, runner: StepRunner) -> None:
        """Install Cilium in migration mode before the first node, a cluster step of the
        journal (one cut short is run again on resume: it is an idempotent ``helm upgrade
        --install``); then check the live configuration it made."""
        run = self.run
        installer = run.config.cilium_installer
        assert installer is not None

        def install() -> str:
            message = installer(migration_values(run.plan.options))
            check_cilium(run.plan, run.cluster)
            return message

        try:
            outcome = runner.cluster_step(
                INSTALL_CILIUM, install, starting="installing Cilium in migration mode", stops_run=True
            )
        except PreflightBlocked:
            # Installed, and not as the plan prescribes: stop, the step left as started.
            run.set_status(RunStatus.INTERRUPTED)
            raise
        if isinstance(outcome.error, ClusterError):
            raise Interrupted(
                f"installing Cilium stopped: {outcome.error.message}; no node was touched; "
                "fix it and run 'cni-migrate resume PLANFILE' (with --helm PATH if helm is not on PATH)"
            ) from outcome.error
        if outcome.error is not None:
            raise outcome.error

    def node_config(self) -> None:
        """The ``cilium-default`` CiliumNodeConfig the swapped nodes' agents read."""
        run = self.run
        try:
            if run.cluster.ensure_object(node_config(run.plan.cluster.node_config_api)):
                run.report(Event("prepared", run.plan.id, message="created CiliumNodeConfig cilium-default"))
        except ClusterError as exc:
            run.set_status(RunStatus.INTERRUPTED)
            raise Interrupted(f"cannot create CiliumNodeConfig cilium-default: {exc.message}") from exc

    def start_traffic(self) -> traffic.TrafficWatch:
        """Deploy the traffic watch before the first node, for the validate step to read; a
        watch that does not report stops the run before any node is touched (a silent
        prober would fail every node's validation)."""
        run = self.run
        try:
            message = run.cluster.start_traffic_watch(run.config.traffic_start_timeout)
        except ClusterError as exc:
            run.set_status(RunStatus.INTERRUPTED)
            self.remove_traffic(None)
            raise Interrupted(
                f"the traffic watch did not start: {exc.message}; no node was touched; fix it (or leave out "
                "--traffic-watch) and run 'cni-migrate resume PLANFILE'"
            ) from exc
        run.report(Event("prepare", run.plan.id, step=traffic.CHECK, message=message))
        return traffic.TrafficWatch(
            read=run.cluster.traffic_reports, now=run.clock.now, max_failures=run.config.max_probe_failures
        )

    def remove_traffic(self, watch: traffic.TrafficWatch | None, *, leftover: bool = False) -> None:
        """Report what the watch saw per node, then remove it; a cluster that refuses is told
        to the operator, never allowed to mask how the run ended. ``leftover``: only a killed
        run's watch, if any, is looked for (quietly: this identity may have no rights there)."""
        run = self.run
        if watch is not None:
            for node, seen in sorted(watch.seen.items()):
                run.report(
                    Event("prepare", run.plan.id, node=node, step=traffic.CHECK, message=f"{node}: {seen.describe()}")
                )
        try:
            removed = run.cluster.stop_traffic_watch()
        except (ClusterError, LeaseLost) as exc:
            if leftover:
                return  # looking for a watch this run never asked for: not worth a word
            # The run's outcome stands; the probers are harmless and the next run removes them.
            message = (
                f"could not remove the traffic watch ({exc.message}); delete namespace {traffic.NAMESPACE}'s objects"
            )
            run.report(Event("prepare", run.plan.id, step=traffic.CHECK, message=message))
            return
        if removed:
            run.report(Event("prepare", run.plan.id, step=traffic.CHECK, message="traffic watch removed"))
