"""migrate.surge.decide: which drains surge which Deployments, and what the plan says about
the workloads that cannot surge (pure; the procedure is tested in tests/scenario/test_surge.py)."""

from __future__ import annotations

from dataclasses import replace

from migrate.model import (
    AutoscalerInfo,
    DeploymentInfo,
    LabelSelector,
    OwnerRef,
    PodInfo,
    SurgeRecord,
    frozen_map,
)
from migrate.plan import PlanOptions, Severity, Target
from migrate.planner import build_plan
from migrate.preflight import plan_findings, recheck
from migrate.surge import decide as decide_surges
from migrate.surge import deployment_of, gitops_manager
from tests import builders as b

NODES = [b.node("a"), b.node("b"), b.node("c")]
WAVES = [["a"], ["b"], ["c"]]


def web_pod(name: str, node: str, **kw: object) -> PodInfo:
    """A pod of Deployment default/web as a real cluster shows it: owned by its ReplicaSet."""
    return replace(
        b.pod(name, node, app="web", **kw),
        labels=frozen_map({"app": "web", "pod-template-hash": "5d9c"}),
        owner=OwnerRef("ReplicaSet", "web-5d9c"),
    )


def web(replicas: int = 1, **kw: object) -> DeploymentInfo:
    fields: dict[str, object] = dict(
        namespace="default",
        name="web",
        replicas=replicas,
        selector=LabelSelector(match_labels=frozen_map({"app": "web"})),
        version="7",
    )
    fields.update(kw)
    return DeploymentInfo(**fields)  # type: ignore[arg-type]


def findings_of(inv, waves=WAVES, **opts):
    return {f.check: f for f in decide_surges(inv, waves, PlanOptions(**opts)).findings}


def test_a_pod_belongs_to_the_deployment_its_replicaset_is_named_after():
    assert deployment_of(web_pod("web-5d9c-x1", "a")) == ("default", "web")
    # A ReplicaSet not made by a Deployment has no pod-template-hash suffix to strip.
    assert deployment_of(b.pod("cache-1", "a", app="cache")) is None
    assert deployment_of(b.pod("db-0", "a", app="db", owner="StatefulSet")) is None
    assert deployment_of(b.pod("debug", "a", owner=None)) is None
    # The simulation's pods name their Deployment.
    assert deployment_of(b.pod("api-1", "a", app="api", owner="Deployment")) == ("default", "api")


def test_a_single_replica_surges_on_its_node_and_nowhere_else():
    inv = b.inventory(NODES, [web_pod("web-5d9c-x1", "b")], deployments=(web(),))
    surges = decide_surges(inv, WAVES, PlanOptions())
    assert dict(surges.by_node) == {"b": ("default/web",)}
    assert surges.findings == ()


def test_a_budget_allowing_no_disruption_surges_instead_of_blocking_the_plan():
    pods = [web_pod("web-5d9c-x1", "a"), web_pod("web-5d9c-x2", "b")]
    frozen = b.pdb("web", "web", allowed=0, healthy=2, desired=2)
    inv = b.inventory(NODES, pods, [frozen], deployments=(web(2),))
    plan = build_plan(inv, PlanOptions(), Target("sim", "t"))
    assert {n.name: n.surge for n in plan.nodes} == {"a": ("default/web",), "b": ("default/web",), "c": ()}
    assert "pdb-budget" not in {f.check for f in plan.findings}
    # With --without-surge the budget blocks, as before.
    plain = build_plan(inv, PlanOptions(surge=False), Target("sim", "t"))
    assert [f.check for f in plain.blocking] == ["pdb-budget"]
    assert all(n.surge == () for n in plain.nodes)


def test_a_budget_that_allows_a_disruption_needs_no_surge():
    pods = [web_pod("web-5d9c-x1", "a"), web_pod("web-5d9c-x2", "b")]
    inv = b.inventory(NODES, pods, [b.pdb("web", "web", allowed=1, healthy=2, desired=1)], deployments=(web(2),))
    assert dict(decide_surges(inv, WAVES, PlanOptions()).by_node) == {}


def test_every_replica_in_one_wave_surges_only_when_no_budget_makes_the_drain_wait():
    pods = [web_pod("web-5d9c-x1", "a"), web_pod("web-5d9c-x2", "b")]
    inv = b.inventory(NODES, pods, deployments=(web(2),))
    assert dict(decide_surges(inv, [["a", "b"], ["c"]], PlanOptions()).by_node) == {
        "a": ("default/web",),
        "b": ("default/web",),
    }
    # Spread over two waves: a replica always serves elsewhere.
    assert dict(decide_surges(inv, WAVES, PlanOptions()).by_node) == {}


def test_an_autoscaled_deployment_is_not_surged_and_the_plan_says_what_to_do():
    inv = b.inventory(
        NODES,
        [web_pod("web-5d9c-x1", "a")],
        deployments=(web(),),
        autoscalers=(AutoscalerInfo("default", "web-hpa", "Deployment", "web", 1, 5),),
    )
    found = findings_of(inv)["surge-autoscaled"]
    assert found.severity is Severity.WARNING and found.subjects == ("default/web",)
    assert "HorizontalPodAutoscaler default/web-hpa" in found.message and "minReplicas" in found.fix
    assert dict(decide_surges(inv, WAVES, PlanOptions()).by_node) == {}


def test_gitops_and_unfinished_rollouts_are_not_surged():
    inv = b.inventory(NODES, [web_pod("web-5d9c-x1", "a")], deployments=(web(gitops="Flux"),))
    assert "managed by Flux" in findings_of(inv)["surge-gitops"].message
    inv = b.inventory(NODES, [web_pod("web-5d9c-x1", "a")], deployments=(web(settled=False),))
    assert "surge-rollout" in findings_of(inv)


def test_gitops_marks():
    assert gitops_manager({}, {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}) == "Argo CD"
    assert gitops_manager({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}) == "Flux"
    assert gitops_manager({"helm.toolkit.fluxcd.io/name": "web"}, {}) == "Flux"
    # Helm sets app.kubernetes.io/instance too: not a GitOps mark on its own.
    assert gitops_manager({"app.kubernetes.io/instance": "web"}, {}) == ""


def test_max_surge_caps_the_extra_pods_of_a_wave():
    apps = ("web", "api", "cache")
    pods = [b.pod(f"{app}-1", "a", app=app, owner="Deployment") for app in apps]  # three single replicas on one node
    deployments = tuple(
        DeploymentInfo("default", app, replicas=1, selector=LabelSelector(frozen_map({"app": app}))) for app in apps
    )
    inv = b.inventory(NODES, pods, deployments=deployments)
    surges = decide_surges(inv, WAVES, PlanOptions(max_surge=2))
    assert dict(surges.by_node) == {"a": ("default/api", "default/cache")}
    limited = {f.check: f for f in surges.findings}["surge-limit"]
    assert limited.subjects == ("default/web",) and "--max-surge 2" in limited.message


def test_a_single_replica_statefulset_gets_a_downtime_estimate():
    db = b.pod("db-0", "a", app="db", owner="StatefulSet", grace_seconds=20, startup_seconds=12.4)
    found = findings_of(b.inventory(NODES, [db]))["statefulset-downtime"]
    assert found.subjects == ("default/db",)
    assert "about 32s (grace 20s, start to Ready 12s)" in found.message
    # Two replicas under a budget: the drain waits for each to come back; nothing is down.
    pair = [db, b.pod("db-1", "a", app="db", owner="StatefulSet")]
    assert "statefulset-downtime" not in findings_of(b.inventory(NODES, pair, [b.pdb("db", "db")]))


def test_the_live_recheck_keeps_the_surges_the_plan_was_reviewed_with():
    pods = [web_pod("web-5d9c-x1", "a")]
    frozen = b.pdb("web", "web", allowed=0, healthy=1, desired=1)
    inv = b.inventory(NODES, pods, [frozen], deployments=(web(),))
    # A plan that surges nothing (made with --without-surge, or before the budget froze) is
    # blocked by the budget; the one that surges web is not.
    blocked = build_plan(inv, PlanOptions(surge=False), Target("sim", "t"))
    assert [f.check for f in recheck(blocked, inv) if f.severity is Severity.BLOCKING] == ["pdb-budget"]
    surged = build_plan(inv, PlanOptions(), Target("sim", "t"))
    assert [f for f in recheck(surged, inv) if f.severity is Severity.BLOCKING] == []
    assert plan_findings(inv, NODES, WAVES, PlanOptions()) == list(surged.findings)


def test_a_surge_record_reads_back_and_refuses_what_is_not_ours():
    record = SurgeRecord(original=1, extra=1, node="a", plan="abc")
    assert SurgeRecord.from_json(record.to_json()) == record
    assert SurgeRecord.from_json("not json") is None
    assert SurgeRecord.from_json('{"original": 1}') is None
    assert SurgeRecord.from_json('{"original": 1, "extra": 0, "node": "a", "plan": "p"}') is None
