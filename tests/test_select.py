"""Selection: ratios, global ranking, MAC/param targets, rounding, minimums, exclusion."""

from __future__ import annotations

import numpy as np
import pytest

from graphprune.context import Context
from graphprune.loading import load_model
from graphprune.pipeline import run_passes
from graphprune.passes.select import producer_names


def plan_for(path, *specs):
    ctx = Context(load_model(path))
    run_passes(ctx, ["normalize", *specs])
    return ctx


def test_local_ratio_removes_the_same_fraction_per_group(zoo):
    ctx = plan_for(zoo["resnetish"], "l1", "select:ratio=0.25,round_to=1")
    for gid, units in ctx.plan.items():
        g = ctx.analysis().groups[gid]
        assert len(units) == g.n_units - int(0.75 * g.n_units)


def test_lowest_scores_go_first(zoo):
    ctx = plan_for(zoo["resnetish"], "l2", "select:ratio=0.5,round_to=1")
    for gid, units in ctx.plan.items():
        scores = ctx.scores[gid]
        kept = np.setdiff1d(ctx.analysis().groups[gid].prunable, units)
        assert scores[units].max() <= scores[kept].min() + 1e-12


def test_global_ratio_ranks_across_groups(zoo):
    ctx = plan_for(zoo["resnetish"], "l1", "select:ratio=0.3,scope=global,round_to=1")
    total = sum(len(g.prunable) for g in ctx.analysis().groups if g.id in ctx.scores and g.n_units > 1)
    removed = sum(len(u) for u in ctx.plan.values())
    assert abs(removed - int(0.3 * total)) <= len(ctx.plan)
    per_group = {gid: len(u) / ctx.analysis().groups[gid].n_units for gid, u in ctx.plan.items()}
    assert max(per_group.values()) - min(per_group.values()) > 0.05  # not uniform


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("what,keep", [("macs", 0.5), ("params", 0.6), ("macs", 0.33)])
def test_targets_are_reached(zoo, scope, what, keep):
    ctx = plan_for(zoo["resnetish"], "l1", f"select:{what}={keep},scope={scope},round_to=1")
    cost = ctx.analysis().cost
    after = getattr(cost.totals(ctx.removed_masks()), what)
    before = getattr(cost.totals(), what)
    assert after <= keep * before * (1 + 1e-9)
    assert after >= (keep - 0.1) * before  # not overshooting by much


def test_round_to_and_min_keep(zoo):
    ctx = plan_for(zoo["resnetish"], "l1", "select:ratio=0.6,round_to=4,min_keep=6")
    for gid, units in ctx.plan.items():
        g = ctx.analysis().groups[gid]
        kept = g.n_units - len(units)
        assert kept % 4 == 0 and kept >= 6


def test_round_to_auto_is_the_ort_block(zoo):
    from graphprune.passes.select import ort_channel_block

    ctx = plan_for(zoo["resnetish"], "l1", "select:ratio=0.5,round_to=auto")
    block = ort_channel_block()
    assert block in (4, 8, 16)
    for gid, units in ctx.plan.items():
        n = ctx.analysis().groups[gid].n_units
        if n % block == 0:  # groups on the block stay on it; the others are free
            assert (n - len(units)) % block == 0


def test_exclude_by_name(zoo):
    ctx = plan_for(zoo["simple_cnn"], "l1", "select:ratio=0.5,round_to=1")
    excluded = plan_for(zoo["simple_cnn"], "l1", "select:ratio=0.5,exclude=c1.*|fc1.*,round_to=1")
    assert len(excluded.plan) == len(ctx.plan) - 2
    for gid in excluded.plan:
        names = producer_names(excluded.analysis().groups[gid])
        assert not any(n.startswith(("c1.", "fc1.")) for n in names)
    included = plan_for(zoo["simple_cnn"], "l1", "select:ratio=0.5,include=c2.*,round_to=1")
    assert len(included.plan) == 1


def test_no_member_axis_is_emptied(zoo):
    ctx = plan_for(zoo["inceptionish"], "random:seed=3", "select:ratio=1.0,round_to=1")
    an = ctx.analysis()
    for gid, units in ctx.plan.items():
        for key, unit_of in an.groups[gid].members.items():
            assert (~np.isin(unit_of, units)).any(), key
