"""graphprune/registry.py: passes by name, `NAME:key=value` specs parsed by the type of
each option's default, unknown names and options refused in one line, the spec a pass
prints back, and the order of kinds a pipeline must keep."""

from __future__ import annotations

import pytest

from graphprune.errors import BadInput
from graphprune.registry import KINDS, OPT_IN_KINDS, PrunePass, check_order, parse_spec, registered


def test_every_registered_pass_has_a_kind_a_summary_and_typed_options():
    passes = registered()
    assert {"normalize", "l1", "select", "remove", "refit", "restore-stats", "cleanup"} <= set(passes)
    for name, cls in passes.items():
        assert cls.name == name and cls.kind in KINDS and cls.summary, name
    assert set(OPT_IN_KINDS) < set(KINDS)


def test_specs_are_parsed_by_the_type_of_the_default():
    cls, opts = parse_spec("select:ratio=0.25,round_to=auto,min_keep=2,strict=false")
    assert cls.name == "select" and opts == {"ratio": 0.25, "round_to": "auto", "min_keep": 2, "strict": False}
    assert parse_spec("l2")[1] == {}


@pytest.mark.parametrize("spec,needle", [
    ("nope", "unknown pass 'nope'"),
    ("select:bogus=1", "unknown option 'bogus'"),
    ("select:min_keep=two", "is not a valid int"),
    ("select:strict=maybe", "is not a valid bool"),
    ("select:ratio", "needs the form key=value"),
])
def test_bad_specs_are_refused(spec, needle):
    with pytest.raises(BadInput, match=needle):
        parse_spec(spec)


def test_a_pass_prints_back_only_the_options_it_changed():
    from graphprune.context import Context

    cls, opts = parse_spec("select:ratio=0.5,round_to=auto")
    p = cls(Context(model=None), **opts)
    assert p.spec() == "select:ratio=0.5" and isinstance(p, PrunePass)
    with pytest.raises(BadInput, match="unknown option"):
        cls(Context(model=None), frob=1)


def test_check_order_accepts_every_kind_in_order_and_repeats_where_allowed():
    check_order(["normalize", "hidden", "l1", "wifv:groups=channels", "select:ratio=0.1", "compensate",
                 "compensate:method=lsq", "remove", "refit", "restore-stats", "cleanup"])
    with pytest.raises(BadInput, match="cannot run after"):
        check_order(["select:ratio=0.1", "l1"])
