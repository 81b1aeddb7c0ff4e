"""select: choose the units to remove from the scores.

Modes: a ratio per group (`scope=local`, each group loses the same fraction of its
units; `heads=`, `experts=` and `channels=` give attention-head groups, mixture-of-experts
expert groups and all other groups their own ratio, e.g. `select:heads=0.25,channels=0.3`;
a kind not named takes `ratio=`, none by default), one global ratio (`scope=global`, the lowest-scored units of the whole model), or
a target (`macs=0.5` / `params=0.6`: the fraction kept), reached with a uniform ratio
(`scope=local`) or a global ranking (`scope=global`); the cost of a plan is computed
exactly from the graph. `latency=0.5` (a fraction of the dense model's latency) or
`latency_ms=` target latency measured in ONNX Runtime (graphprune.latency_target:
a measured per-node table, `rounds` of measurement and correction until within
`tolerance`; with `scope=global` units go in order of score, or with `ms_power` > 0 of
score over the milliseconds their removal saves to that power, 1 importance per millisecond). Constraints: `round_to` (kept units a multiple of it, experts aside; `auto` uses
the channel block of ONNX Runtime's blocked CPU convolutions on this machine, 16 with
AVX-512 and 8 otherwise, for the groups whose size is a multiple of it today: counts off
that block make ORT fall back to slower kernels, and a pruned model can then run slower
than the dense one; groups already off the block are not constrained),
`min_keep` units per group (an expert group always keeps its router's top-k), `max_ratio` of a group's units, `uniform` (every head
group of one size loses the same number of heads, the mean of what the mode chose: for
runtimes with one head count for all layers, as onnxruntime-genai), `strict` (a `macs=`/`params=`
target the constraints cannot reach is an error; with `strict=false` the plan goes as far
as they allow and the report warns), `exclude` and `include`
(glob patterns separated by `|`, matched against the names of the weights that produce
a group and of their nodes): excluded groups stay whole; with `include`, only matching
groups are pruned.
"""

from __future__ import annotations

import math

import fnmatch

import numpy as np
import onnx_ir as ir

from graphprune.context import unit_masks
from graphprune.errors import BadInput
from graphprune.registry import PrunePass, register


def ort_channel_block() -> int:
    """Channels per block of ONNX Runtime's NCHWc convolutions on this CPU (x86 only)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return 4
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return 8
    return 16 if " avx512f" in flags else 8


def parse_round_to(raw) -> int:
    if str(raw).strip().lower() == "auto":
        return ort_channel_block()
    try:
        value = int(str(raw))
    except ValueError:
        raise BadInput(f"select: round_to must be a positive integer or auto, not {raw!r}") from None
    if value < 1:
        raise BadInput(f"select: round_to must be a positive integer or auto, not {raw!r}")
    return value


def producer_names(group) -> set[str]:
    """Names of the weights whose rows make the group's channels, and of their nodes."""
    names = {key[0] for key, role, _ in group.roles if role == "out"}
    names |= {node for _, role, node in group.roles if role == "out" and node}
    return names or {key[0] for key in group.members}


@register
class SelectPass(PrunePass):
    name = "select"
    kind = "select"
    summary = "choose units by ratio (local/global) or by a macs=/params=/latency= target"
    options = {"ratio": None, "heads": None, "channels": None, "experts": None, "macs": None, "params": None,
               "latency": None, "latency_ms": None, "ms_power": 0.0, "rounds": 5, "tolerance": 0.03, "scope": "local", "round_to": "auto",
               "min_keep": 1, "max_ratio": 1.0, "strict": True, "exclude": "", "include": "", "uniform": False}

    def run(self, model: ir.Model) -> bool:
        o = self.opts
        self._latency_record = None
        targets = [k for k in ("ratio", "macs", "params", "latency", "latency_ms") if o[k] is not None]
        if len(targets) > 1:
            raise BadInput(f"select: give one of ratio=, macs=, params=, latency=, latency_ms= "
                           f"(got {', '.join(targets)})")
        if o["latency_ms"] is not None and (not isinstance(o["latency_ms"], (int, float)) or o["latency_ms"] <= 0):
            raise BadInput(f"select: latency_ms must be a positive number of milliseconds, not {o['latency_ms']!r}")
        if not isinstance(o["ms_power"], (int, float)) or not 0 <= o["ms_power"] <= 1:
            raise BadInput(f"select: ms_power must be a number between 0 and 1, not {o['ms_power']!r}")
        if o["scope"] not in ("local", "global"):
            raise BadInput(f"select: scope must be local or global, not {o['scope']!r}")
        kinds = [k for k in ("heads", "channels", "experts") if o[k] is not None]
        if kinds and (targets[1:] or targets and targets[0] != "ratio" or o["scope"] != "local"):
            raise BadInput("select: heads=, channels= and experts= are local ratios; they do not mix with "
                           "macs=, params=, latency= or scope=global")
        for k in [t for t in targets if t != "latency_ms"] + kinds:
            if not isinstance(o[k], float) or not 0.0 <= o[k] <= 1.0:
                raise BadInput(f"select: {k} must be a number between 0 and 1, not {o[k]!r}")
        if self.ctx.score_name is None:
            raise BadInput("select: no scores; put a score pass (l1, l2, bn-scale, random) before it")
        analysis = self.prepare()
        if kinds:
            counts = self._local(o["ratio"] or 0.0, {k: o[k] for k in kinds})
        elif not targets or targets[0] == "ratio":
            ratio = o["ratio"] if targets else 0.3
            counts = self._local(ratio) if o["scope"] == "local" else self._global_count(ratio)
        elif targets[0] in ("latency", "latency_ms"):
            from graphprune.latency_target import LatencyTarget

            target = LatencyTarget(self, o["latency"], o["latency_ms"])
            counts, self._latency_record = target.reach(int(o["rounds"]), float(o["tolerance"]))
        else:
            counts = self._reach(targets[0], o[targets[0]])
        if o["uniform"]:
            counts = self._uniform(counts)
        self.ctx.plan = {gid: self._lowest(gid, k) for gid, k in counts.items() if k > 0}
        after = analysis.cost.totals(self.ctx.removed_masks())
        before = analysis.cost.totals()
        self.stats = {
            "groups": len(analysis.groups), "groups_prunable": len(self.cands),
            "units_removed": int(sum(len(u) for u in self.ctx.plan.values())),
            "macs_kept": after.macs / before.macs if before.macs else 1.0,
            "params_kept": after.params / before.params if before.params else 1.0,
            "round_to": self.round_to,
        }
        if self._latency_record:
            self.stats["latency"] = self._latency_record
        asked = (not targets and not kinds) or any(o[k] for k in ("ratio", *kinds)) or \
            any(o[k] is not None and o[k] < 1 for k in ("macs", "params", "latency")) or o["latency_ms"] is not None
        if asked and not self.ctx.plan:
            why = ("no group can be pruned (see the pinned lines)" if not self.cands else
                   f"{len(self.cands)} prunable groups, but the budget, round_to or min_keep leave "
                   "none of their units to remove")
            self.ctx.warn(f"{self.spec()} removed nothing: {why}")
        return False

    # -- candidates and limits ---------------------------------------------------------
    def prepare(self):
        """Read the constraints and find the candidate groups (before any mode runs)."""
        o = self.opts
        self.round_to = parse_round_to(o["round_to"])
        self.auto = str(o["round_to"]).strip().lower() == "auto"
        self._memo: dict = {}
        self._owned_cache: dict = {}
        analysis = self.ctx.analysis()
        self.cands = self._candidates(analysis.groups)
        return analysis

    def _candidates(self, groups) -> dict[int, np.ndarray]:
        exclude = [p for p in self.opts["exclude"].split("|") if p]
        include = [p for p in self.opts["include"].split("|") if p]
        cands = {}
        for g in groups:
            if g.id not in self.ctx.scores or g.n_units <= 1:
                continue
            names = producer_names(g)
            if any(fnmatch.fnmatchcase(n, p) for n in names for p in exclude):
                continue
            if include and not any(fnmatch.fnmatchcase(n, p) for n in names for p in include):
                continue
            units = g.prunable
            if len(units):
                cands[g.id] = units
        return cands

    def _cap(self, gid: int) -> int:
        g = self.ctx.analysis().groups[gid]
        cap = min(len(self.cands[gid]), g.n_units - max(self.opts["min_keep"], 1, g.min_units),
                  int(np.floor(self.opts["max_ratio"] * g.n_units)))
        return max(cap, 0)

    def _round(self, gid: int, k: int) -> int:
        g = self.ctx.analysis().groups[gid]
        n = g.n_units
        r = self.round_to
        if self.auto and n % r or g.kind == "experts":  # off ORT's channel block, or whole experts
            r = 1
        k = min(k, self._cap(gid))
        while k > 0 and (n - k) % r:
            k -= 1
        return k

    def _uniform(self, counts: dict[int, int]) -> dict[int, int]:
        """The same number of heads removed from every head group of one size (their mean,
        rounded): runtimes such as onnxruntime-genai take one head count for all layers."""
        groups = self.ctx.analysis().groups
        by_size: dict[int, list[int]] = {}
        for gid in self.cands:
            if groups[gid].kind == "heads":
                by_size.setdefault(groups[gid].n_units, []).append(gid)
        out = dict(counts)
        for gids in by_size.values():
            k = min([int(round(np.mean([counts.get(g, 0) for g in gids])))] + [self._cap(g) for g in gids])
            out.update({g: k for g in gids})
        return out

    def _lowest(self, gid: int, k: int) -> np.ndarray:
        """The k lowest-scored candidates, skipping any unit whose removal would leave a
        member axis empty (a concat input, a layer inside a dense block)."""
        key = (gid, k)
        if key in self._memo:
            return self._memo[key]
        units = self.cands[gid]
        order = units[np.argsort(self.ctx.scores[gid][units], kind="stable")]
        owned = self._owned(gid)
        left = owned.sum(0)
        chosen = []
        for u in order:
            if len(chosen) >= k:
                break
            row = owned[u]
            if np.all(left[row > 0] - row[row > 0] >= 1):
                left -= row
                chosen.append(u)
        result = np.sort(np.array(chosen, dtype=np.int64))
        self._memo[key] = result
        return result

    def _owned(self, gid: int) -> np.ndarray:
        """units x member axes: how many positions of each axis a unit owns."""
        if gid not in self._owned_cache:
            g = self.ctx.analysis().groups[gid]
            self._owned_cache[gid] = np.stack(
                [np.bincount(u, minlength=g.n_units) for u in g.members.values()], axis=1)
        return self._owned_cache[gid]

    # -- modes --------------------------------------------------------------------------
    def _local(self, ratio: float, by_kind: dict[str, float] | None = None) -> dict[int, int]:
        # A group of n units keeps int(n * (1 - ratio)) of them, Torch-Pruning's convention,
        # so the same ratio removes the same channels in both tools.
        groups = self.ctx.analysis().groups
        counts = {}
        for gid in self.cands:
            n = groups[gid].n_units
            r = (by_kind or {}).get(groups[gid].kind, ratio)
            counts[gid] = self._round(gid, n - int(n * (1 - r) + 1e-9))
        return counts

    def _global_order(self, priority: dict[int, np.ndarray] | None = None) -> list[int]:
        """Group id of each successive removal when units go in global order of their score
        (or of `priority`, lowest first)."""
        values = priority or self.ctx.scores
        entries = [(values[gid][u], gid, u) for gid, units in self.cands.items() for u in units]
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        caps = {gid: self._cap(gid) for gid in self.cands}
        taken = dict.fromkeys(self.cands, 0)
        order = []
        for _, gid, _ in entries:
            if taken[gid] < caps[gid]:
                taken[gid] += 1
                order.append(gid)
        return order

    def _global_count(self, ratio: float) -> dict[int, int]:
        order = self._global_order()
        total = sum(len(u) for u in self.cands.values())
        return self._counts_from(order, int(ratio * total + 1e-9))

    def _counts_from(self, order: list[int], n: int) -> dict[int, int]:
        counts = dict.fromkeys(self.cands, 0)
        for gid in order[:n]:
            counts[gid] += 1
        return {gid: self._round(gid, k) for gid, k in counts.items()}

    def _cost(self, counts: dict[int, int], what: str) -> float:
        analysis = self.ctx.analysis()
        plan = {gid: self._lowest(gid, k) for gid, k in counts.items()}
        return getattr(analysis.cost.totals(unit_masks(analysis.groups, plan)), what)

    def _reach(self, what: str, keep: float) -> dict[int, int]:
        total = getattr(self.ctx.analysis().cost.totals(), what)
        goal = keep * total
        if self.opts["scope"] == "local":
            make = self._local
            lo, hi = 0.0, 1.0
            for _ in range(30):
                mid = (lo + hi) / 2
                if self._cost(make(mid), what) <= goal:
                    hi = mid
                else:
                    lo = mid
            best = make(hi)
        else:
            order = self._global_order()
            lo, hi = 0, len(order)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._cost(self._counts_from(order, mid), what) <= goal:
                    hi = mid
                else:
                    lo = mid + 1
            best = self._counts_from(order, lo)
        reached = self._cost(best, what)
        if reached > goal * (1 + 1e-6):
            line = (f"select: cannot reach {what}={keep:g}; the most this model allows with "
                    f"these constraints is {what}={math.ceil(reached / total * 1000) / 1000:.3f}")
            if self.opts["strict"]:
                raise BadInput(line)
            if reached < total:  # a plan that removes nothing is reported as such below
                self.ctx.warn(line + ", which was taken")
        return best
