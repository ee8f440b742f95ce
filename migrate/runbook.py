"""The runbook: a plan rendered as Markdown for a change board and the people on call.

``render_runbook(plan, plan_path)`` turns a reviewed ``Plan`` into a document that says
what will be touched (scope, waves, nodes), what could stop it (preflight findings), what
each step does with its equivalent manual ``kubectl`` command, how a node is validated,
how long it should take, and the exact command to undo or continue from every point of
the run. It differs from ``output.plan_summary`` (a terminal summary) in being a complete,
standalone document meant to be read away from the terminal.

The wording lives in Jinja2 templates shipped inside the package (``migrate/templates/``,
package data, so a wheel or ``pipx install .`` carries them); this module only builds a plain view of the plan for them
(commands are assembled and shell-quoted here, so templates never build commands). Output
is deterministic: no timestamps, and every list follows the plan's own order.

How long each node and wave should take comes from ``migrate.estimate``, the duration model
the window gate decides with too; without pod counts the runbook says what it assumed.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.errors import BadInput, Interrupted, MigrateError, NodeLost, PreflightBlocked, StepFailed, ValidationFailed
from migrate.estimate import ASSUMED_PODS_PER_NODE, DRAIN_SECONDS_PER_POD, STEP_SECONDS, Estimate, estimate
from migrate.handoff import SETTLE_SECONDS
from migrate.model import HANDOFF_LABEL, MIGRATION_LABEL
from migrate.plan import (
    FORWARD_STEPS,
    ROLLBACK_STEPS,
    Finding,
    NodePlan,
    Plan,
    PlanOptions,
    Severity,
    StepKind,
    step_id,
)
from migrate.surge import RETIRE_COST
from migrate.traffic import CHECK as TRAFFIC_CHECK
from migrate.verdicts import CHECKS
from migrate.window import duration

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "runbook.md.j2"
TEMPLATES_ENV = "CNI_MIGRATE_RUNBOOK_TEMPLATES"  # overrides the template folder (your own wording)

# What the validate step checks (``migrate.verdicts.CHECKS``), in words.
CHECK_DESCRIPTIONS: Mapping[str, str] = {
    "cilium-agent-ready": "the Cilium agent pod on the node is Ready",
    "cilium-node": "the node's CiliumNode has pod CIDRs inside the Cilium pool ({pool})",
    "pod-network": "a probe pod on the node gets an address from the Cilium pool ({pool})",
    "dns": "a probe pod on the node resolves kubernetes.default.svc.cluster.local",
    "connectivity": "a probe pod on the node reaches the API server through the kubernetes Service",
    "cross-node": "probe pods on the node and on a Calico and a Cilium peer node reach each other both ways, "
    "and the node reaches a ClusterIP Service backed by the peers",
    "traffic-watch": "with `apply --traffic-watch`: the probers on every node saw no more than "
    "`--max-probe-failures` failed requests between the start of this node's swap and now",
}

# What each exit code asks of the operator; the meaning comes from the error's docstring.
EXIT_ACTIONS: tuple[tuple[type[MigrateError], str], ...] = (
    (BadInput, "fix the command or file named in the message and run it again"),
    (PreflightBlocked, "fix the blocking findings, make a new plan and have it reviewed"),
    (ValidationFailed, "read `status`; fix the cause, then `resume`, or `rollback` everything"),
    (Interrupted, "`resume` to continue where it stopped, or `rollback` to undo"),
    (StepFailed, "read `status`; fix the cause (e.g. a PDB), then `resume`, or `rollback` everything"),
    (
        NodeLost,
        "look at the node named (its machine, its kubelet) and bring it back; `resume` waits for it, reads its "
        "CNI and finishes it (or `rollback`)",
    ),
)


def render_runbook(
    plan: Plan,
    plan_path: str,
    *,
    pods_per_node: Mapping[str, int] | None = None,
    templates: Path | None = None,
) -> str:
    """The runbook for ``plan`` (read from ``plan_path``) as Markdown.

    ``pods_per_node`` refines the drain estimates; ``templates`` overrides the template
    folder (default: ``template_dir()``). Raises ``MigrateError`` if the templates are missing.
    """
    import jinja2  # here, not at import: every other command starts 0.1 s sooner without it

    env = _environment(templates or template_dir())
    try:
        template = env.get_template(TEMPLATE)
    except jinja2.TemplateNotFound as exc:
        # The package ships it: only an override (``templates``, $CNI_MIGRATE_RUNBOOK_TEMPLATES) lacks it.
        raise MigrateError(
            f"runbook template {TEMPLATE} not found in {templates or template_dir()}; "
            f"unset ${TEMPLATES_ENV} for the shipped template, or put a {TEMPLATE} there"
        ) from exc
    return template.render(**view(plan, plan_path, pods_per_node))


def template_dir() -> Path:
    """``$CNI_MIGRATE_RUNBOOK_TEMPLATES``, else the package's own ``templates/`` (package data:
    there in a source tree, an editable install and a wheel alike)."""
    override = os.environ.get(TEMPLATES_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "templates"


def _environment(directory: Path) -> jinja2.Environment:
    import jinja2

    if not directory.is_dir():
        raise MigrateError(
            f"runbook templates not found: {directory} is not a directory; "
            f"point ${TEMPLATES_ENV} at a folder with {TEMPLATE}, or unset it for the shipped template"
        )
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly, not silently empty
        autoescape=False,  # Markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# -- commands ------------------------------------------------------------------------------
def manual_commands(plan: Plan, node: NodePlan, kind: StepKind) -> list[str]:
    """The kubectl commands that do by hand what step ``kind`` does to ``node``."""
    n = shlex.quote(node.name)
    opts = plan.options
    if kind is StepKind.CORDON:
        return [f"kubectl cordon {n}"]
    if kind is StepKind.DRAIN:
        flags = ["--ignore-daemonsets"]
        flags += ["--delete-emptydir-data"] if opts.delete_emptydir_data else []
        flags += ["--force"] if opts.force else []
        surge = []
        for key in node.surge:
            ns, name = (shlex.quote(part) for part in key.split("/", 1))
            surge += [
                f"# surge {key}: N = its replicas now, K = its pods on {node.name}",
                f"kubectl -n {ns} scale deployment {name} --replicas=$((N+K))",
                f"kubectl -n {ns} rollout status deployment {name}  # N Ready off {node.name}",
                f"kubectl -n {ns} annotate pod POD-ON-{n} controller.kubernetes.io/pod-deletion-cost={RETIRE_COST}",
                f"kubectl -n {ns} scale deployment {name} --replicas=N",
            ]
        handoff = []
        for h in node.handoff:
            ns = shlex.quote(h.deployment.split("/", 1)[0])
            services = ",".join(h.services)
            handoff += [
                f"# hand off each pod of {h.deployment} on {node.name} (POD) before the drain:",
                f"kubectl -n {ns} label pod POD {' '.join(f'{k}-' for k in h.labels)} {HANDOFF_LABEL}={h.services[0]}",
                f"kubectl -n {ns} get endpointslices -l 'kubernetes.io/service-name in ({services})' -o wide"
                f"  # until POD's address is gone; wait {SETTLE_SECONDS:.0f}s more",
                f"kubectl -n {ns} delete pod POD",
            ]
        return [*surge, *handoff, f"kubectl drain {n} {' '.join(flags)} --timeout={opts.drain_timeout_seconds}s"]
    if kind is StepKind.SWAP_CNI:
        return [
            f"kubectl label node {n} {MIGRATION_LABEL}=true --overwrite",
            f"kubectl -n kube-system delete pod -l k8s-app=cilium --field-selector spec.nodeName={n}",
            f"kubectl -n kube-system wait pod -l k8s-app=cilium --field-selector spec.nodeName={n} "
            "--for=condition=Ready --timeout=300s",
            *(
                [
                    f"# reboot {node.name} the orderly way (on it: systemctl reboot; or your provider's console), "
                    "not a reset; wait until it is Ready again"
                ]
                if opts.reboot
                else []
            ),
            f"kubectl get pods -A -o wide --field-selector spec.nodeName={n}",
        ]
    if kind is StepKind.VALIDATE:
        return [
            f"kubectl -n kube-system get pod -l k8s-app=cilium --field-selector spec.nodeName={n}",
            f"kubectl get pods -A -o wide --field-selector spec.nodeName={n}",
        ]
    if kind is StepKind.UNCORDON:
        return [] if node.keep_cordoned else [f"kubectl uncordon {n}"]
    raise ValueError(f"no manual command for {kind}")  # restore-cni is rollback-only


def _step_text(plan: Plan, node: NodePlan, kind: StepKind) -> str:
    pool = plan.options.cilium_pool_cidr
    if kind is StepKind.CORDON:
        return "Mark the node unschedulable (with the rest of its wave, before any drain)."
    if kind is StepKind.DRAIN:
        surge = (
            f"First surge {', '.join(node.surge)}: scale up by its pods here, wait until its original count is "
            "Ready elsewhere, retire its pods here (lowest deletion cost) and scale back, its count recorded on it "
            "until then. "
            if node.surge
            else ""
        )
        handoff = (
            "Hand off the pods of "
            + ", ".join(f"{h.deployment} (Service {', '.join(h.services)})" for h in node.handoff)
            + ": ask the Eviction API whether their budget allows it (a dry run), remove their label key(s) "
            + ", ".join(sorted({k for h in node.handoff for k in h.labels}))
            + " so their Services drop them while they still answer, wait until the EndpointSlices no longer "
            f"list them and {SETTLE_SECONDS:.0f}s more for kube-proxy to flush their UDP conntrack entries, "
            "then evict them. "
            if node.handoff
            else ""
        )
        return (
            surge
            + handoff
            + (
                "Evict the node's pods through the Eviction API, honouring PodDisruptionBudgets; "
                f"fails after {plan.options.drain_timeout_seconds}s if a budget keeps refusing."
            )
        )
    if kind is StepKind.SWAP_CNI:
        return (
            f"Label the node `{MIGRATION_LABEL}=true` so Cilium's per-node config selects it, restart its "
            "Cilium agent and wait until the new agent is Ready, "
            + ("reboot the node and wait until it is back Ready with a new boot ID, " if plan.options.reboot else "")
            + "then delete the pods still on the node "
            f"that have a Calico address (outside {pool}) so their controllers re-create them on Cilium."
        )
    if kind is StepKind.VALIDATE:
        return "Probe the node; any failed check rolls the node back to Calico."
    if node.keep_cordoned:
        return "Left cordoned: the node was cordoned before the run, so it stays cordoned."
    return "Mark the node schedulable again."


def rollback_command(plan_path: str, node: str | None = None) -> str:
    target = f" --node {shlex.quote(node)}" if node else ""
    return f"cni-migrate rollback {shlex.quote(plan_path)}{target} --yes"


# -- the view the template renders -----------------------------------------------------------
def view(plan: Plan, plan_path: str, pods_per_node: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Everything the template needs, as plain data in the plan's order."""
    est = estimate(plan, pods_per_node)
    path = shlex.quote(plan_path)
    pool = plan.options.cilium_pool_cidr
    policy = [f for f in plan.findings if f.check == "network-policy"]
    return {
        "plan_path": plan_path,
        "commands": {
            "apply": f"cni-migrate apply {path} --yes",
            "resume": f"cni-migrate resume {path} --yes",
            "rollback_all": rollback_command(plan_path),
            "status": f"cni-migrate status {path}",
            "plan": f"cni-migrate plan {_plan_flags(plan)} --out {path} --overwrite",
        },
        "scope": {
            "server": plan.cluster.server,
            "target": f"{plan.target.backend} `{plan.target.name}`",
            "fingerprint": plan.cluster.fingerprint,
            "plan_id": plan.id,
            "checksum": plan.checksum,
            "node_count": len(plan.nodes),
            "cluster_node_count": len(plan.cluster.nodes),
            "wave_count": len(plan.waves),
            "excluded": [{"name": n, "reason": r} for n, r in plan.excluded],
            "options": [
                ("max unavailable", str(plan.options.max_unavailable)),
                ("canary workers", str(plan.options.canary)),
                ("drain timeout", f"{plan.options.drain_timeout_seconds}s"),
                ("evict bare pods (--force)", _yes(plan.options.force)),
                ("delete emptyDir data (--delete-emptydir-data)", _yes(plan.options.delete_emptydir_data)),
                ("Cilium pool CIDR", pool),
                ("reboot nodes after the swap (--reboot-nodes)", _yes(plan.options.reboot)),
                (
                    "nodes of a wave at once (--node-parallelism)",
                    str(plan.options.node_parallelism) if plan.options.node_parallelism else "the whole wave",
                ),
                (
                    "install Cilium with Helm first (--install-cilium)",
                    f"yes: chart {plan.options.install_cilium_chart} {plan.options.install_cilium_version}"
                    if plan.options.install_cilium_chart
                    else "no: Cilium must already run in migration mode",
                ),
            ],
        },
        "blocking": [_finding(f) for f in plan.blocking],
        "warnings": [_finding(f) for f in plan.findings if f.severity is Severity.WARNING],
        "policy_subjects": [s for f in policy for s in f.subjects],
        "parallelism": plan.options.node_parallelism,
        "estimate": {
            "total": duration(est.total),
            "assumed_pods": est.assumed_pods,
            "steps": [(k.value, STEP_SECONDS[k]) for k in FORWARD_STEPS],
            "per_pod": DRAIN_SECONDS_PER_POD,
            "pods_assumed": ASSUMED_PODS_PER_NODE,
            "drain_timeout": plan.options.drain_timeout_seconds,
        },
        "waves": [
            {
                "index": w.index,
                "canary": w.canary,
                "names": [n.name for n in w.nodes],
                "estimate": duration(est.waves[w.index]),
                "nodes": [_node(plan, plan_path, n, est) for n in w.nodes],
            }
            for w in plan.waves
        ],
        "rollback_steps": [k.value for k in ROLLBACK_STEPS],
        "checks": [(c, CHECK_DESCRIPTIONS[c].format(pool=pool)) for c in (*CHECKS, TRAFFIC_CHECK)],
        "exit_codes": [(0, "Done: every node of the plan is on Cilium (or the rollback finished).", "nothing")]
        + [(cls.exit_code, _doc(cls), action) for cls, action in EXIT_ACTIONS],
    }


def _node(plan: Plan, plan_path: str, node: NodePlan, est: Estimate) -> dict[str, Any]:
    return {
        "name": node.name,
        "role": "control-plane" if node.control_plane else "worker",
        "keep_cordoned": node.keep_cordoned,
        "estimate": duration(est.nodes[node.name]),
        "rollback": rollback_command(plan_path, node.name),
        "steps": [
            {
                "id": step_id(node.name, kind),
                "kind": kind.value,
                "text": _step_text(plan, node, kind),
                "commands": manual_commands(plan, node, kind),
            }
            for kind in FORWARD_STEPS
        ],
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {"check": f.check, "message": f.message, "fix": f.fix, "subjects": list(f.subjects)}


def _plan_flags(plan: Plan) -> str:
    """The plan command that makes this plan again (to re-plan after fixing findings)."""
    o = plan.options
    t = plan.target
    flags = [f"--sim {shlex.quote(t.name)}" if t.backend == "sim" else f"--context {shlex.quote(t.name)}"]
    flags += [
        f"--max-unavailable {o.max_unavailable}",
        f"--canary {o.canary}",
        f"--drain-timeout {o.drain_timeout_seconds}",
    ]
    flags += ["--force"] if o.force else []
    flags += ["--delete-emptydir-data"] if o.delete_emptydir_data else []
    flags += [f"--exclude-node {shlex.quote(n)}" for n in o.exclude_nodes]
    flags += (
        [f"--cilium-pool-cidr {o.cilium_pool_cidr}"] if o.cilium_pool_cidr != PlanOptions().cilium_pool_cidr else []
    )
    flags += ["--reboot-nodes"] if o.reboot else []
    flags += [f"--node-parallelism {o.node_parallelism}"] if o.node_parallelism else []
    flags += [] if o.surge else ["--without-surge"]
    flags += [f"--max-surge {o.max_surge}"] if o.max_surge else []
    flags += [] if o.handoff else ["--without-handoff"]
    if o.install_cilium_chart:
        flags += [
            "--install-cilium",
            f"--cilium-chart {shlex.quote(o.install_cilium_chart)}",
            f"--cilium-version {shlex.quote(o.install_cilium_version)}",
        ]
        flags += ["--cilium-values FILE (the plan's installCilium.values)"] if o.install_cilium_values else []
    return " ".join(flags)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _doc(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]
