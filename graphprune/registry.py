"""The pass protocol, the registry of passes by name, `NAME:key=value,...` specs, and
the order passes may run in.

A graphprune pass is an onnx-ir in-place pass that also holds the shared `Context`.
Each pass declares its kind, which says where it may run, and its options with
defaults; the option's default type decides how a value from the command line is parsed.

Kinds, in pipeline order:

    normalize   make the graph analysable (exact)                          once
    analysis    opt-in options that change what a unit is (hidden, ...)     before scores
    depth       remove whole residual branches (layers)                     opt-in
    score       fill per-unit scores of the groups                          one or more
    select      choose the units to remove from the scores                  once
    compensate  decide edits on the dense model; `remove` applies them      opt-in
    remove      slice every coupled tensor                                  once
    repair      fix the pruned model against the dense one (refit, ...)     opt-in
    cleanup     dead code, order, exact shapes (exact)                      once

A pipeline whose passes are out of this order is refused (`check_order`): an analysis
option after a score pass would silently drop the scores, a compensation after `remove`
would have nothing to compensate.
"""

from __future__ import annotations

from typing import Any, ClassVar

import onnx_ir as ir

from graphprune.context import Context
from graphprune.errors import BadInput

KINDS = ("normalize", "analysis", "depth", "score", "select", "compensate", "remove", "repair", "cleanup")
# A pipeline gets no pass of these kinds unless asked (or a default asks for it).
OPT_IN_KINDS = ("analysis", "depth", "compensate", "repair")
# At most one pass of each of these kinds.
SINGLE_KINDS = ("normalize", "select", "remove", "cleanup")

_REGISTRY: dict[str, type[PrunePass]] = {}


class PrunePass(ir.passes.InPlacePass):
    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, ctx: Context, **options: Any):
        super().__init__()
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise BadInput(f"pass {self.name}: unknown option(s) {', '.join(sorted(unknown))} (known: {known})")
        self.ctx = ctx
        self.opts = {**self.options, **options}
        self.stats: dict[str, Any] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = bool(self.run(model))
        return ir.passes.PassResult(model, modified=modified)

    def run(self, model: ir.Model) -> bool:
        """Do the pass's one job; return whether the graph changed."""
        raise NotImplementedError

    def spec(self) -> str:
        changed = {k: v for k, v in self.opts.items() if v != self.options[k]}
        if not changed:
            return self.name
        return self.name + ":" + ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                                          for k, v in changed.items())


def register(cls: type[PrunePass]) -> type[PrunePass]:
    assert cls.name and cls.kind in KINDS, cls
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[PrunePass]]:
    import graphprune.passes  # noqa: F401  (registers the suite)

    return dict(_REGISTRY)


def _convert(pass_name: str, key: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if default is None:  # optional number (e.g. select's ratio=); passes validate it
            try:
                return float(raw)
            except ValueError:
                return raw
        return raw
    except ValueError:
        raise BadInput(f"pass {pass_name}: option {key}={raw!r} is not a valid {type(default).__name__}") from None


def check_order(specs: list[str]) -> None:
    """Refuse a pipeline whose passes are out of kind order, or that repeats a single
    stage, naming the passes and an order that works."""
    parsed = [(s, parse_spec(s)[0].kind) for s in specs]
    rank = {k: i for i, k in enumerate(KINDS)}
    for kind in SINGLE_KINDS:
        named = [s for s, k in parsed if k == kind]
        if len(named) > 1:
            raise BadInput(f"pipeline: {' and '.join(named)} are both {kind} passes; give one")
    for (a, ka), (b, kb) in zip(parsed, parsed[1:]):
        if rank[kb] < rank[ka]:
            works = [s for s, _ in sorted(parsed, key=lambda p: rank[p[1]])]
            raise BadInput(f"pipeline: {b} ({kb}) cannot run after {a} ({ka}); "
                           f"an order that works: {', '.join(works)}")


def parse_spec(spec: str) -> tuple[type[PrunePass], dict[str, Any]]:
    """`select:ratio=0.3,round_to=8` -> (SelectPass, {'ratio': 0.3, 'round_to': 8})."""
    name, _, rest = spec.partition(":")
    passes = registered()
    cls = passes.get(name.strip())
    if cls is None:
        raise BadInput(f"unknown pass {name!r} (see --list-passes)")
    opts: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise BadInput(f"pass {cls.name}: option {item!r} needs the form key=value")
        key = key.strip()
        if key not in cls.options:
            known = ", ".join(sorted(cls.options)) or "none"
            raise BadInput(f"pass {cls.name}: unknown option {key!r} (known: {known})")
        opts[key] = _convert(cls.name, key, raw.strip(), cls.options[key])
    return cls, opts
