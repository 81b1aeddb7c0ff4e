"""Residual branches: the units of depth pruning.

A residual network adds branches to a stream: y = a + f(a) (a transformer's attention and
MLP sublayers, a ResNet's blocks). A branch is found from the graph alone: an Add (or ONNX
Runtime's fused SkipLayerNormalization / SkipSimplifiedLayerNormalization, which add
`skip` to `input` before normalizing) with operands a and b of one shape, where b is
computed from a through at least one weight (MatMul, Gemm, Conv). Operands that do not
depend on each other (a ResNet's projection shortcut beside its main path) are no branch.
Removing the branch makes y = a: exact where the branch adds nothing.

A branch that reads a KV cache owns it: removing the branch drops those past inputs and
present outputs from the interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

SKIP_NORMS = {"SkipLayerNormalization": "LayerNormalization",
              "SkipSimplifiedLayerNormalization": "SimplifiedLayerNormalization"}
_WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "MatMulNBits"}


@dataclass
class Branch:
    node: ir.Node            # the Add or skip-norm that joins the branch to the stream
    stream: ir.Value         # a
    branch: ir.Value         # b = f(a)
    stream_at: int = 0       # which input of `node` is the stream
    weights: list[str] = field(default_factory=list)  # the weights it computes with
    pasts: list[str] = field(default_factory=list)    # KV-cache graph inputs it reads
    attention: bool = False  # attention ops or a cache inside

    @property
    def feature_axis(self) -> int:
        """The axis the branch's features lie on (channels of NCHW, else the last)."""
        producer = self.branch.producer()
        return 1 if producer is not None and producer.op_type in ("Conv", "BatchNormalization") else -1


def _cone(b: ir.Value, a: ir.Value):
    """(the nodes b is computed by, back to a; the graph inputs they read; whether a is
    among what they read). Sizes read with Shape are not followed."""
    nodes, inputs, reads_a = [], set(), False
    seen, todo = set(), [b]
    # A fused skip norm hands the next branch its normalized sum (output 0), the stream
    # its sum (output 3): reading either is reading the stream.
    source = a.producer()
    stops = {id(v) for v in source.outputs} if source is not None and source.op_type in SKIP_NORMS and \
        len(source.outputs) > 3 and source.outputs[3] is a else {id(a)}
    while todo:
        v = todo.pop()
        if id(v) in stops:
            reads_a = True
            continue
        node = v.producer()
        if node is None:
            if v.const_value is None:
                inputs.add(v.name)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        if node.op_type == "Shape":
            continue
        todo.extend(x for x in node.inputs if x is not None)
    return nodes, inputs, reads_a


def _weights(nodes) -> list[str]:
    return sorted({x.name for n in nodes if n.op_type in _WEIGHT_OPS for x in n.inputs[1:2]
                   if x is not None and x.const_value is not None})


def find_branches(model: ir.Model, pasts: set[str] = frozenset()) -> list[Branch]:
    """Every residual branch of the main graph, in graph order. `pasts`: KV-cache inputs."""
    graph = model.graph
    outputs = {id(v) for v in graph.outputs}
    found = []
    for node in graph:
        if node.domain in ("", "ai.onnx") and node.op_type == "Add":
            joined = node.outputs[0]
        elif node.domain == "com.microsoft" and node.op_type in SKIP_NORMS and len(node.inputs) >= 3:
            joined = node.outputs[3] if len(node.outputs) > 3 else None
        else:
            continue
        if joined is not None and id(joined) in outputs:
            continue
        x, y = node.inputs[0], node.inputs[1]
        if x is None or y is None or x.shape is None or x.shape != y.shape:
            continue
        for at, (a, b) in enumerate(((x, y), (y, x))):
            if b.producer() is None:
                continue
            nodes, inputs, reads_a = _cone(b, a)
            if not reads_a:
                continue
            weights = _weights(nodes)
            if not weights:
                continue
            read = sorted(inputs & set(pasts))
            attention = bool(read) or any("Attention" in n.op_type or n.op_type == "Softmax" for n in nodes)
            found.append(Branch(node, a, b, at, weights, read, attention))
            break
    return found
