"""select:latency= (graphprune/latency.py, latency_target.py): the measured table predicts
the dense model exactly and less for every removal, ORT's renamed nodes map to the
convolutions they time, the table is cached per structure and settings, the rounds are
reported, the input is never touched, and bad targets are one-line errors. Whether the
target is met within 5% is a benchmark (tools/bench_latency.py), not a timed test."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import graphprune
from graphprune.cli import main
from graphprune.context import Context, unit_masks
from graphprune.latency import LatencySettings, PlanInfo, node_keys, write_pruned
from graphprune.latency_target import LatencyTarget
from graphprune.loading import load_model
from graphprune.pipeline import build_passes, run_passes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHPRUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _target(options="latency=0.6,scope=global"):
    ctx = Context(load_model(DEMO), quiet=True)
    ctx.latency = LatencySettings({"input": np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)},
                                  repeats=5, profile_runs=3)
    run_passes(ctx, ["normalize", "l2"])
    sel = build_passes(ctx, [f"select:{options}"])[0]
    sel.prepare()
    return ctx, sel, LatencyTarget(sel, 0.6, None)


def test_table_predicts_the_dense_model_and_less_for_every_removal():
    ctx, sel, target = _target()
    table = target.table
    assert target.predict({gid: 0 for gid in sel.cands}) == pytest.approx(table.dense_wall_ms, rel=1e-9)
    previous = table.dense_wall_ms
    for ratio in (0.25, 0.5, 0.75):
        now = target.predict(sel._local(ratio))
        assert now <= previous + 1e-9  # interpolated kernel times never grow with removal
        previous = now
    assert previous < table.dense_wall_ms
    for entry in table.nodes.values():  # every node has its dense point, ratios within (0, 1]
        assert any(abs(r - 1.0) < 1e-9 for r, _ in entry["points"])
        assert all(0 < r <= 1 + 1e-9 and t >= 0 for r, t in entry["points"])
    saved = table.unit_ms(ctx.analysis(), target.keys)
    assert all(saved[g].min() > 0 for g in sel.cands)  # every prunable unit saves some time


def test_ort_node_names_map_to_the_convolutions_they_time():
    from graphprune.profile import node_times

    ctx, sel, target = _target()
    with_dense = os.path.join(os.path.dirname(DEMO), "digits_cnn.onnx")
    times = node_times(with_dense, ctx.latency.feeds, runs=2)
    conv_ms = sum(t["ms"] for t in times.values() if t["op"] == "Conv")
    owner = ctx.analysis().cost.owner
    mapped = sum(t["ms"] for n, t in times.items()
                 if t["op"] == "Conv" and any(k in owner for k in target.keys.get(n, ())))
    assert mapped >= 0.9 * conv_ms  # NCHWc names (`<output>_nchwc`) reach their Conv's axes
    macs = {n for n, _, _ in ctx.analysis().cost.terms}
    assert all(node_keys(ctx.model, ctx.analysis())[n] for n in macs)


def test_cached_per_structure_and_settings(cache):
    _, _, first = _target()
    assert not first.table.cached and len(os.listdir(cache / "latency")) == 1
    _, _, again = _target()
    assert again.table.cached and again.table.to_json() == first.table.to_json()
    ctx, sel, _ = _target()
    ctx.latency.threads = 1  # other settings: another table
    assert not LatencyTarget(sel, 0.6, None).table.cached and len(os.listdir(cache / "latency")) == 2


def test_write_pruned_leaves_the_model_alone(tmp_path):
    ctx, sel, target = _target()
    before = {n: v.const_value.numpy().copy() for n, v in ctx.model.graph.initializers.items()}
    plan = target._plan(sel._local(0.5))
    write_pruned(ctx, plan, str(tmp_path / "p.onnx"))
    assert {n: v.const_value.numpy().shape for n, v in ctx.model.graph.initializers.items()} == \
        {n: a.shape for n, a in before.items()}
    assert all(np.array_equal(v.const_value.numpy(), before[n]) for n, v in ctx.model.graph.initializers.items())
    info = PlanInfo(ctx.analysis(), target.keys, unit_masks(ctx.analysis().groups, plan))
    assert info.mac_ratio < 0.75
    pruned = load_model(str(tmp_path / "p.onnx"))  # the file holds the plan: fewer weights
    size = sum(v.const_value.size for v in pruned.graph.initializers.values())
    assert size < 0.75 * sum(a.size for a in before.values())


def test_cli_latency_target_reports_rounds(tmp_path, capsys):
    out, rep = tmp_path / "s.onnx", tmp_path / "r.json"
    code = main([DEMO, "-o", str(out), "--pass", "l2", "--pass", "select:latency=0.6,scope=global,rounds=2",
                 "--bench-repeats", "5", "--report", str(rep), "-q"])
    assert code == 0 and out.exists()
    stats = next(p["stats"] for p in json.loads(rep.read_text())["passes"] if p["kind"] == "select")
    lat = stats["latency"]
    assert 1 <= len(lat["rounds"]) <= 2 and lat["target"] == {"fraction": 0.6, "ms": None}
    assert lat["settings"]["inputs"] == {"input": [16, 1, 8, 8]} and lat["settings"]["provider"] == "CPUExecutionProvider"
    chosen = lat["rounds"][lat["chosen_round"]]
    assert lat["measured_error"] == pytest.approx(chosen["measured_fraction"] / 0.6 - 1, abs=0.01)
    assert stats["units_removed"] > 0 and stats["macs_kept"] < 1
    assert lat["groups"] and all(g["kept"] <= g["units"] for g in lat["groups"])
    code = main([DEMO, "-o", str(tmp_path / "ms.onnx"), "--pass", "l2", "--pass", "select:latency_ms=1000",
                 "--bench-repeats", "5", "-q"])
    assert code == 0  # a target above the dense latency removes nothing (and says so)


def test_a_target_missed_after_every_round_is_a_warning(monkeypatch):
    ctx, sel, target = _target()
    calls = []

    def slow(counts, tmp):  # every plan measures 0.9 of the dense model: the target (0.6) is never met
        calls.append(dict(counts))
        return 10.0, 9.0

    monkeypatch.setattr(target, "measure", slow)
    counts, record = target.reach(rounds=3, tolerance=0.03)
    assert len(calls) == 3 and any(counts.values()) and record["measured_error"] == pytest.approx(0.5)
    assert any("missed by +50.0% after 3 measured rounds" in w for w in ctx.report.get("warnings", []))
    ctx2, sel2, target2 = _target()
    monkeypatch.setattr(target2, "measure", lambda counts, tmp: (10.0, 6.1))  # within 3%: no warning
    target2.reach(rounds=3, tolerance=0.03)
    assert not any("missed" in w for w in ctx2.report.get("warnings", []))


@pytest.mark.parametrize("select, message", [
    ("select:latency=1.5", "latency must be a number between 0 and 1"),
    ("select:latency_ms=-2", "latency_ms must be a positive number"),
    ("select:latency=0.5,macs=0.5", "give one of ratio=, macs=, params=, latency="),
    ("select:latency=0.5,heads=0.5", "do not mix with macs=, params=, latency="),
    ("select:latency=0.001,scope=global,rounds=3,round_to=1", "cannot reach the latency target"),
    ("select:latency=0.5,scope=global,ms_power=2", "ms_power must be a number between 0 and 1"),
])
def test_bad_targets_are_one_line_errors(tmp_path, capsys, select, message):
    out = tmp_path / "s.onnx"
    assert main([DEMO, "-o", str(out), "--pass", "l2", "--pass", select, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_global_latency_ranking_is_score_over_ms_saved_to_ms_power(power):
    ctx, sel, target = _target(f"latency=0.6,scope=global,round_to=1,ms_power={power}")
    goal = 0.6 * target.table.dense_wall_ms
    counts = target.solve(goal)
    assert target.predict(counts) <= goal + 1e-9
    saved = target.table.unit_ms(ctx.analysis(), target.keys)
    floor = min(float(np.min(ctx.scores[g][u])) for g, u in sel.cands.items())
    rank = {g: (ctx.scores[g] - floor) / saved[g] ** power for g in sel.cands}
    gone, left = [], []
    for g, units in sel.cands.items():
        removed = set(sel._lowest(g, counts[g]).tolist()) if counts[g] else set()
        gone += [float(rank[g][u]) for u in units if u in removed]
        if counts[g] < sel._cap(g):  # a group at its floor keeps units whatever their rank
            left += [float(rank[g][u]) for u in units if u not in removed]
    # The units removed are the lowest-ranked of the model (power 0: the lowest scores).
    assert gone and left and max(gone) <= min(left) * (1 + 1e-9)


def test_next_goal_moves_toward_the_target():
    from graphprune.latency_target import next_goal

    assert next_goal([(10.0, 0.8)]) == pytest.approx(12.5)  # one round: scaled by the error
    assert next_goal([(10.0, 0.8), (14.0, 1.2)]) == pytest.approx(12.0)  # between the bracketing rounds
    assert next_goal([(10.0, 0.8), (12.0, 0.9)]) == pytest.approx(14.0)  # through the last two
    assert next_goal([(10.0, 0.1), (10.5, 0.11)]) == pytest.approx(21.0)  # never past 2x the last goal
    assert next_goal([(12.0, 1.07), (11.0, 1.08)]) == pytest.approx(11.0 / 1.08)  # noise, not a slope


def test_measured_points_are_made_non_decreasing_in_the_work():
    from graphprune.latency import _non_decreasing

    assert _non_decreasing([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.0, 2.0, 4.0]
    assert _non_decreasing([5.0, 1.0, 1.5]) == [1.0, 1.0, 1.5]  # the dense point stays
    assert _non_decreasing([1.0, 2.0]) == [1.0, 2.0]
