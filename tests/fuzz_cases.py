"""Mutations of valid models, at the protobuf level and the file level, for the fuzz suite.

`cases(seed_models, n, seed)` yields (name, bytes): n mutated files, each one mutation of
one seed model. Mutations: drop or rewire nodes, corrupt dims and dtypes, truncate tensors,
wrong opsets and IR versions, cycles, duplicate names, dangling inputs, huge declared
shapes, nodes wrapped in If/Loop/Scan subgraphs, bad attributes, unknown ops, truncated
files and random bytes.
"""

from __future__ import annotations

import random

import onnx
from onnx import TensorProto, helper


def _names(m):
    return [o for n in m.graph.node for o in n.output] + [i.name for i in m.graph.input] + \
           [t.name for t in m.graph.initializer]


def drop_node(m, r):
    if len(m.graph.node) > 1:
        del m.graph.node[r.randrange(len(m.graph.node))]


def rewire(m, r):
    n = r.choice(m.graph.node)
    if n.input:
        n.input[r.randrange(len(n.input))] = r.choice(_names(m) + ["ghost"])


def corrupt_dims(m, r):
    if m.graph.initializer:
        t = r.choice(m.graph.initializer)
        if t.dims:
            t.dims[r.randrange(len(t.dims))] = r.choice([0, 1, 2, 7, -1, 1 << 40])


def corrupt_dtype(m, r):
    if m.graph.initializer:
        r.choice(m.graph.initializer).data_type = r.choice([0, 2, 6, 7, 9, 10, 16, 99])


def truncate_tensor(m, r):
    ts = [t for t in m.graph.initializer if t.raw_data]
    if ts:
        t = r.choice(ts)
        t.raw_data = t.raw_data[: r.randrange(len(t.raw_data))]


def wrong_opset(m, r):
    m.opset_import[0].version = r.choice([0, 1, 3, 6, 40, 1000])


def wrong_ir(m, r):
    m.ir_version = r.choice([0, 1, 2, 99, -1])


def cycle(m, r):
    if len(m.graph.node) > 2:
        i = r.randrange(len(m.graph.node) - 1)
        late = m.graph.node[r.randrange(i + 1, len(m.graph.node))]
        if m.graph.node[i].input:
            m.graph.node[i].input[0] = late.output[0]


def duplicate_name(m, r):
    if len(m.graph.node) > 1:
        a, b = r.sample(list(m.graph.node), 2)
        b.output[0] = a.output[0]


def dangling_input(m, r):
    if m.graph.input:
        del m.graph.input[0]


def huge_shape(m, r):
    d = m.graph.input[0].type.tensor_type.shape.dim
    if d:
        d[r.randrange(len(d))].dim_value = r.choice([1 << 31, 1 << 45, 0])


def bad_attribute(m, r):
    n = r.choice(m.graph.node)
    choice = r.randrange(4)
    if choice == 0:
        n.attribute.append(helper.make_attribute("group", r.choice([0, 3, -1, 1 << 20])))
    elif choice == 1:
        n.attribute.append(helper.make_attribute("perm", [3, 3, 0]))
    elif choice == 2:
        n.attribute.append(helper.make_attribute("axis", r.choice([-9, 9, 1 << 33])))
    else:
        for a in n.attribute:
            if a.ints:
                a.ints[0] = r.choice([-5, 0, 1 << 30])
    # drop duplicates so the model still parses as one attribute each
    seen, keep = set(), []
    for a in n.attribute:
        if a.name not in seen:
            seen.add(a.name)
            keep.append(a)
    del n.attribute[:]
    n.attribute.extend(keep)


def unknown_op(m, r):
    n = r.choice(m.graph.node)
    n.op_type = r.choice(["FrobnicateConv", "Einsum", "DepthToSpace", "NonZero", "Relu6"])
    if r.random() < 0.5:
        n.domain = "com.example"
        m.opset_import.append(helper.make_opsetid("com.example", 1))


def wrap_in_subgraph(m, r):
    """Move one single-input node into both branches of an If (or a Loop/Scan body)."""
    idx = r.randrange(len(m.graph.node))
    n = m.graph.node[idx]
    if not n.input or not n.output:
        return
    inner = onnx.NodeProto()
    inner.CopyFrom(n)
    out = n.output[0]
    inner.output[0] = out + "_inner"
    body_out = helper.make_tensor_value_info(out + "_inner", TensorProto.FLOAT, None)
    kind = r.choice(["If", "Loop", "Scan"])
    if kind == "If":
        branch = helper.make_graph([inner], "b", [], [body_out])
        cond_name = "fuzz_cond"
        m.graph.initializer.append(helper.make_tensor(cond_name, TensorProto.BOOL, [], [True]))
        new = helper.make_node("If", [cond_name], [out], then_branch=branch, else_branch=branch)
    elif kind == "Loop":
        body = helper.make_graph(
            [inner, helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), body_out])
        m.graph.initializer.append(helper.make_tensor("fuzz_trip", TensorProto.INT64, [], [1]))
        new = helper.make_node("Loop", ["fuzz_trip", ""], [out + "_scan"], body=body)
        m.graph.node.insert(idx + 1, helper.make_node("Squeeze", [out + "_scan", "fuzz_ax"], [out]))
        m.graph.initializer.append(helper.make_tensor("fuzz_ax", TensorProto.INT64, [1], [0]))
    else:
        state = inner.input[0]
        body = helper.make_graph([inner], "scan", [helper.make_tensor_value_info(state, TensorProto.FLOAT, None)],
                                 [body_out])
        new = helper.make_node("Scan", [n.input[0]], [out], body=body, num_scan_inputs=0)
    m.graph.node.remove(n)
    m.graph.node.insert(idx, new)


PROTO_MUTATIONS = [drop_node, rewire, corrupt_dims, corrupt_dtype, truncate_tensor, wrong_opset,
                   wrong_ir, cycle, duplicate_name, dangling_input, huge_shape, bad_attribute,
                   unknown_op, wrap_in_subgraph]


def file_mutation(data: bytes, r: random.Random) -> bytes:
    kind = r.randrange(3)
    if kind == 0:
        return data[: r.randrange(len(data))]
    if kind == 1:
        b = bytearray(data)
        for _ in range(r.randint(1, 20)):
            b[r.randrange(len(b))] = r.randrange(256)
        return bytes(b)
    return bytes(r.randrange(256) for _ in range(r.randint(0, 2000)))


def cases(seeds: dict[str, bytes], n: int, seed: int = 0):
    r = random.Random(seed)
    names = sorted(seeds)
    for i in range(n):
        base = r.choice(names)
        if r.random() < 0.25:
            yield f"{i}_{base}_file", file_mutation(seeds[base], r)
            continue
        m = onnx.ModelProto()
        m.ParseFromString(seeds[base])
        mutation = r.choice(PROTO_MUTATIONS)
        try:
            mutation(m, r)
        except Exception:  # noqa: BLE001 - a mutation that does not apply leaves the model
            pass
        yield f"{i}_{base}_{mutation.__name__}", m.SerializeToString()
