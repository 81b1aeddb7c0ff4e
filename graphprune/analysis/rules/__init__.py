"""The dimension-flow rule table: op type -> Rule (how it couples axes, how it is rewritten).

This is the one place that says how an op's channels behave. An op type missing here
pins every axis it touches, and the report names the node.
"""

from graphprune.analysis.rules import conv_linear, elementwise, layout, norm_pool, reshape
from graphprune.analysis.rules.base import Rule

RULES: dict[str, Rule] = {
    **elementwise.RULES,
    **conv_linear.RULES,
    **norm_pool.RULES,
    **reshape.RULES,
    **layout.RULES,
}

__all__ = ["RULES", "Rule"]
