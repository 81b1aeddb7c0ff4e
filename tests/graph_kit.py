"""Hand-built ONNX graphs for the module tests: build a model from nodes and constants,
analyse it, and look up the group or the pins of an axis."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from graphprune.context import Context
from graphprune.pipeline import run_passes

R = np.random.default_rng(0)


def w(*shape, scale=0.5):
    return (R.standard_normal(shape) * scale).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def N(op, ins, outs, **kw):
    return helper.make_node(op, ins, outs, **kw)


def build(nodes, inits, inputs, outputs, opset=17, extra_opsets=None) -> onnx.ModelProto:
    """`inputs`/`outputs`: name -> shape (float32), or name -> (shape, TensorProto type)."""
    def info(name, spec):
        shape, dtype = spec if isinstance(spec, tuple) else (spec, TensorProto.FLOAT)
        return helper.make_tensor_value_info(name, dtype, shape)

    graph = helper.make_graph(nodes, "g", [info(k, v) for k, v in inputs.items()],
                              [info(k, v) for k, v in outputs.items()],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    return helper.make_model(graph, opset_imports=opsets)


def save(proto, tmp_path, name="m.onnx") -> str:
    path = str(tmp_path / name)
    onnx.save(proto, path)
    return path


def context(proto, passes=("normalize",), **flow_options) -> Context:
    ctx = Context(ir.from_proto(proto))
    ctx.flow_options.update(flow_options)
    run_passes(ctx, list(passes))
    return ctx


def analyse(proto, **flow_options):
    return context(proto, **flow_options).analysis()


def group_of(analysis, name: str, axis: int):
    """The group holding axis `axis` of tensor `name`, or None."""
    return next((g for g in analysis.groups if (name, axis) in g.members), None)


def pins(analysis, name: str, axis: int) -> list[str]:
    return analysis.flow.pins.get((name, axis), [])


def coupled(analysis, *keys) -> bool:
    """Whether all the (name, axis) keys are in one group."""
    g = group_of(analysis, *keys[0])
    return g is not None and all(k in g.members for k in keys)


def connected(analysis, a, b) -> bool:
    """Whether two axes are joined in the dimension-flow graph (groups or not)."""
    import networkx as nx

    return a in analysis.flow.graph and b in analysis.flow.graph and nx.has_path(analysis.flow.graph, a, b)
