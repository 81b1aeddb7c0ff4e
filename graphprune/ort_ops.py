"""Ops ONNX Runtime registers in the default ONNX domain beyond ONNX's own (such as
SimplifiedLayerNormalization, which onnxruntime-genai's model builder writes): ONNX
Runtime runs them, the ONNX checker has no schema for them. For the checker alone they
go under an alias domain, so that it checks everything else as usual; the model itself
keeps them where they are."""

from __future__ import annotations

import os

import onnx

ORT_DEFAULT_DOMAIN_ALIAS = "graphprune.onnxruntime"


def _ort_only(node) -> bool:
    return node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type) and \
        node.op_type in ort_default_domain_ops()


def needs_ort_alias(proto: onnx.ModelProto) -> bool:
    return any(_ort_only(n) for n in proto.graph.node)


def alias_ort_ops(proto: onnx.ModelProto) -> None:
    """Ops ONNX Runtime registers in the default domain itself (SimplifiedLayerNormalization,
    which onnxruntime-genai's builder writes) have no ONNX schema: for the ONNX checker they
    go under a domain of their own, so it checks everything else as usual."""
    for n in proto.graph.node:
        if _ort_only(n):
            n.domain = ORT_DEFAULT_DOMAIN_ALIAS
    proto.opset_import.add(domain=ORT_DEFAULT_DOMAIN_ALIAS, version=1)


def check_onnx_file(path: str) -> None:
    """The ONNX checker on a model file (path form: works past 2 GB), with alias_ort_ops."""
    proto = onnx.load(path, load_external_data=False)
    if not needs_ort_alias(proto):
        onnx.checker.check_model(path)
        return
    alias_ort_ops(proto)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.check")
    try:
        onnx.save(proto, tmp)
        onnx.checker.check_model(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
_ORT_OPS: frozenset | None = None


def ort_default_domain_ops() -> frozenset:
    """Ops ONNX Runtime registers in the default ONNX domain beyond ONNX's own."""
    global _ORT_OPS
    if _ORT_OPS is None:
        try:
            from onnxruntime.capi import onnxruntime_pybind11_state as C

            _ORT_OPS = frozenset(s.name for s in C.get_all_operator_schema()
                                 if s.domain in ("", "ai.onnx") and not onnx.defs.has(s.name))
        except Exception:  # noqa: BLE001 - a build without schemas: nothing beyond ONNX
            _ORT_OPS = frozenset()
    return _ORT_OPS
