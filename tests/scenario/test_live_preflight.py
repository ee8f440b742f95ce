"""A new run checks the cluster as it is, not as the plan file remembers it: the plan's
blocking preflight checks run again on the live inventory before anything is written.
(Resume, re-apply and rollback are never refused for it: tests/cli/test_plan_soundness.py.)"""

from __future__ import annotations

import pytest

from migrate.errors import PreflightBlocked

FROZEN = {"namespace": "shop", "name": "frozen", "selector": {"app": "thumbnailer"}, "maxUnavailable": "0"}


def test_a_budget_frozen_after_the_plan_refuses_a_new_run_before_any_write(backend):
    # Without surge: a plan that surges thumbnailer is not blocked by it (tests/scenario/test_surge.py).
    plan = backend.plan(surge=False)
    assert plan.blocking == ()
    backend.add_pdb(FROZEN)
    backend.wait_settled()
    ex = backend.executor(plan)
    with pytest.raises(PreflightBlocked, match="pdb-budget: PodDisruptionBudget shop/frozen allows no disruption"):
        ex.apply()
    assert ex.store.load() is None
    assert not any(unschedulable for _, unschedulable, _ in backend.node_view().values())
