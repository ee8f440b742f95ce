"""The command line: parse, wire adapters to the engine, map errors to exit codes.

No migration logic lives here. Exit codes: 0 done, 1 unexpected, 2 bad input, 3 blocked
by preflight, 4 validation failed (node rolled back), 5 interrupted (resumable), 6 a step
failed (node put back), 7 a node went NotReady under its step (stopped, resumable).
``--debug`` shows tracebacks; otherwise one line on stderr.

- ``app``: the typer apps, one error line and exit code per error, signals, the entry point;
- ``options``: the options several commands share, and apply's and resume's one signature;
- ``wiring``: the backend a plan or the flags name, hooks, Cilium's installer, the Executor;
- ``gates``: the questions between waves and nodes (window end, guided runs);
- ``commands_plan``: plan, runbook, policy-report; ``commands_run``: apply, resume,
  finalize, rollback, status; ``commands_sim``: sim create/show/delete/list, demo;
  ``version`` lives in ``app``.

The commands are registered here, in the order ``--help`` lists them.
"""

from migrate.cli import commands_plan, commands_run, commands_sim
from migrate.cli.app import PROCESS, Command, app, run, sim_app, stop_on_signals, version

app.command(cls=Command)(commands_plan.plan)
app.command(cls=Command)(commands_run.apply)
app.command(cls=Command)(commands_run.resume)
app.command(cls=Command)(commands_run.finalize)
app.command(cls=Command)(commands_plan.runbook)
app.command(cls=Command)(commands_run.rollback)
app.command(cls=Command)(commands_run.status)
app.command("policy-report", cls=Command)(commands_plan.policy_report)
app.command(cls=Command)(commands_sim.demo)
app.command(cls=Command)(version)
sim_app.command("create", cls=Command)(commands_sim.sim_create)
sim_app.command("show", cls=Command)(commands_sim.sim_show)
sim_app.command("delete", cls=Command)(commands_sim.sim_delete)
sim_app.command("list", cls=Command)(commands_sim.sim_list)

__all__ = ["PROCESS", "app", "run", "stop_on_signals"]
