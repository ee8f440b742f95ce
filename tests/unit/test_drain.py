"""Drain filters decide like kubectl drain and name the flag that overrides them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.drain import DrainOptions, Verdict, classify, noteworthy, to_evict, verdict_for
from migrate.steps.drain import named
from tests import builders as b


def test_daemonset_and_mirror_pods_are_skipped():
    ds = b.pod("agent", "n1", owner="DaemonSet")
    mirror = b.pod("kube-apiserver-n1", "n1", owner="Node", mirror=True)
    assert verdict_for(ds, DrainOptions()).verdict is Verdict.SKIP
    assert verdict_for(mirror, DrainOptions()).verdict is Verdict.SKIP


def test_bare_pod_is_refused_without_force_and_the_message_names_the_flag():
    bare = b.pod("debug", "n1", owner=None)
    refused = verdict_for(bare, DrainOptions())
    assert refused.verdict is Verdict.REFUSE and "--force" in refused.message
    assert verdict_for(bare, DrainOptions(force=True)).verdict is Verdict.WARN


def test_emptydir_pod_is_refused_unless_its_data_may_be_deleted():
    scratch = b.pod("cache", "n1", emptydir=True)
    refused = verdict_for(scratch, DrainOptions())
    assert refused.verdict is Verdict.REFUSE and "--delete-emptydir-data" in refused.message
    assert verdict_for(scratch, DrainOptions(delete_emptydir_data=True)).verdict is Verdict.WARN


def test_finished_bare_pod_is_evicted_without_force():
    done = b.pod("job-x", "n1", owner=None, phase="Succeeded")
    assert verdict_for(done, DrainOptions()).verdict is Verdict.EVICT


def test_every_pod_gets_a_verdict_not_just_the_first_bad_one():
    pods = [b.pod("a", "n1", owner=None), b.pod("b", "n1", emptydir=True), b.pod("c", "n1")]
    verdicts = classify(pods, DrainOptions())
    assert [v.verdict for v in verdicts] == [Verdict.REFUSE, Verdict.REFUSE, Verdict.EVICT]
    assert [p.name for p in to_evict(verdicts)] == ["c"]


def test_warnings_from_several_filters_are_joined():
    pod = b.pod("x", "n1", owner=None, emptydir=True, local_pv=True)
    verdict = verdict_for(pod, DrainOptions(force=True, delete_emptydir_data=True))
    assert verdict.verdict is Verdict.WARN
    assert "bare pod" in verdict.message and "emptyDir" in verdict.message and "local" in verdict.message


PODS = st.builds(
    lambda i, owner, mirror, emptydir, local_pv, deleting, phase: b.pod(
        f"p{i}", "n1", owner=owner, mirror=mirror, emptydir=emptydir, local_pv=local_pv, deleting=deleting, phase=phase
    ),
    st.integers(0, 99),
    st.sampled_from([None, "ReplicaSet", "DaemonSet", "StatefulSet", "Node"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["Running", "Pending", "Succeeded", "Failed"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PODS, max_size=12), st.booleans(), st.booleans())
def test_noteworthy_is_classify_without_the_plain_evictions(pods, force, emptydir):
    options = DrainOptions(force=force, delete_emptydir_data=emptydir)
    assert noteworthy(pods, options) == [v for v in classify(pods, options) if v.verdict is not Verdict.EVICT]


def test_the_drain_names_the_pods_it_evicted_and_counts_the_rest() -> None:
    keys = [f"shop/web-{i:02d}" for i in range(12)]
    assert named(keys[:2]) == "shop/web-00, shop/web-01"
    assert named(keys) == ", ".join(keys[:10]) + ", and 2 more"
