"""Loading ONNX files safely.

The file is parsed as a protobuf without touching external data, every tensor is checked
(external-data locations must stay inside the model's folder and be plain regular files;
stored lengths must match declared shapes), and only then is it turned into an onnx-ir
model whose external tensors are memory-mapped. Every refusal is a `BadInput` with a
one-line message naming the file or the tensor.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from graphprune.errors import BadInput, first_line

MIN_OPSET = 7
# One tensor may declare at most this many bytes (a guard against crafted shapes backed
# by sparse files); raise it with GRAPHPRUNE_MAX_TENSOR_BYTES.
MAX_TENSOR_BYTES = int(os.environ.get("GRAPHPRUNE_MAX_TENSOR_BYTES", str(1 << 36)))
_EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}


def load_model(path: str | os.PathLike) -> ir.Model:
    """Load and validate the ONNX model at `path`; raise `BadInput` when it is unusable."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BadInput(f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadInput(f"{path}: not a regular file")
    proto = _parse(path)
    check_model_proto(proto, path)
    base_dir = os.path.dirname(os.path.abspath(path))
    for tensor, where in iter_tensors(proto.graph):
        check_tensor(tensor, f"{path}: {where}", base_dir)
    _check_text(proto, path)
    _check_with_onnx(proto, path)
    _check_value_types(proto, path)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as e:  # noqa: BLE001 - a model onnx-ir cannot represent is bad input
        raise BadInput(f"{path}: cannot read the graph ({first_line(e)})") from None
    _check_names(model, path)
    ir.external_data.set_base_dir(model.graph, base_dir)
    return model


def _check_with_onnx(proto: onnx.ModelProto, path: str) -> None:
    """The ONNX checker on the structure (tensor data is checked above, not copied)."""
    stripped = proto
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        # The checker would read the data files (already checked above); give it one-element
        # placeholders instead, which its structural check accepts without copying data.
        stripped = onnx.ModelProto()
        stripped.CopyFrom(proto)
    for t in stripped.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            t.ClearField("external_data")
            t.data_location = onnx.TensorProto.DEFAULT
            del t.dims[:]
            t.dims.append(1)
            t.raw_data = b"\0" * max(1, (ir.DataType(t.data_type).bitwidth + 7) // 8)
    from graphprune.ort_ops import alias_ort_ops, needs_ort_alias

    if needs_ort_alias(stripped):
        if stripped is proto:
            stripped = onnx.ModelProto()
            stripped.CopyFrom(proto)
        alias_ort_ops(stripped)
    try:
        onnx.checker.check_model(stripped)
    except Exception as e:  # noqa: BLE001 - checker errors come in several types
        raise BadInput(f"{path}: not a valid ONNX model ({first_line(e)})") from None


def _check_value_types(proto, path: str) -> None:
    """Map-typed values (scikit-learn's ZipMap output: a sequence of maps) are not read;
    say which and how to export without them."""
    for vi in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        t = vi.type
        while t.HasField("sequence_type"):
            t = t.sequence_type.elem_type
        if t.HasField("map_type"):
            raise BadInput(f"{path}: value {vi.name!r} is a map (a classifier's ZipMap output), which graphprune does "
                           "not read: export the model without it (skl2onnx: options={'zipmap': False})")


def _check_text(msg, path: str) -> None:
    """Every text field (names, op types, string attributes, metadata) must be valid UTF-8:
    protobuf lets invalid bytes through, and such a model could not be written back."""
    from google.protobuf.descriptor import FieldDescriptor as F

    if isinstance(msg, onnx.TensorProto):  # only its name: listing its fields would copy the data
        if not isinstance(msg.name, str):
            raise BadInput(f"{path}: a tensor name is not valid UTF-8 text")
        return
    for fd, value in msg.ListFields():
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == F.LABEL_REPEATED
        items = value if repeated else [value]
        if fd.type == F.TYPE_STRING:
            if any(not isinstance(v, str) for v in items):
                raise BadInput(f"{path}: field {fd.name!r} of a {msg.DESCRIPTOR.name} is not valid UTF-8 text")
        elif fd.type == F.TYPE_MESSAGE:
            for item in items:
                _check_text(item, path)
    if isinstance(msg, onnx.AttributeProto) and msg.type in (onnx.AttributeProto.STRING, onnx.AttributeProto.STRINGS):
        try:
            for s in [msg.s, *msg.strings]:
                s.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{path}: string attribute {msg.name!r} is not valid UTF-8 text") from None


def _check_names(model: ir.Model, path: str) -> None:
    """Names must be text: protobuf lets invalid UTF-8 through, and such a model could
    not be written back."""
    def bad(name) -> bool:
        return name is not None and not isinstance(name, str)

    graph = model.graph
    values = [*graph.inputs, *graph.outputs, *graph.initializers.values()]
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if bad(node.name) or bad(node.op_type) or bad(node.domain):
            raise BadInput(f"{path}: a node has a name, op type or domain that is not valid UTF-8 text")
        values.extend(v for v in (*node.inputs, *node.outputs) if v is not None)
    if any(bad(v.name) for v in values):
        raise BadInput(f"{path}: a tensor name is not valid UTF-8 text")


def _parse(path: str) -> onnx.ModelProto:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise BadInput(f"{path}: empty file, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise BadInput(f"{path}: not an ONNX model or truncated file ({e})") from None
    return proto


def check_model_proto(proto: onnx.ModelProto, path: str) -> None:
    """Refuse models that parse as protobuf but are not usable ONNX models."""
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise BadInput(f"{path}: not an ONNX model or truncated file (no graph or IR version)")
    if proto.ir_version > onnx.IR_VERSION:
        raise BadInput(
            f"{path}: IR version {proto.ir_version} is newer than supported ({onnx.IR_VERSION})"
        )
    if len(proto.graph.node) == 0:
        raise BadInput(f"{path}: the graph has no nodes (empty or truncated model)")
    default = [op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")]
    if proto.ir_version >= 3 and not default:
        raise BadInput(f"{path}: no opset import for the default ONNX domain")
    opset = default[0] if default else 1
    newest = onnx.defs.onnx_opset_version()
    if opset < MIN_OPSET or opset > newest:
        raise BadInput(f"{path}: opset {opset} is not supported (supported: {MIN_OPSET}..{newest})")
    _check_graph_wiring(proto.graph, path)


def _check_graph_wiring(graph: onnx.GraphProto, path: str) -> None:
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    known |= {t.values.name for t in graph.sparse_initializer}
    for node in graph.node:
        for name in node.input:
            if name not in known:
                # Outer-scope names are legal only inside subgraphs; at the top level an
                # unknown input means a dangling edge, a cycle or an unsorted graph.
                raise BadInput(
                    f"{path}: node {node.name or node.op_type!r} reads {name!r}, which nothing "
                    "produces before it (dangling input, cycle or unsorted graph)"
                )
        for name in node.output:
            if name and name in known:
                raise BadInput(f"{path}: value {name!r} is produced twice")
            known.add(name)
    for out in graph.output:
        if out.name not in known:
            raise BadInput(f"{path}: graph output {out.name!r} is not produced by any node")


def iter_tensors(graph: onnx.GraphProto, prefix: str = "") -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every tensor stored in a graph and its subgraphs, with a readable location."""
    for t in graph.initializer:
        yield t, f"{prefix}initializer {t.name!r}"
    for st in graph.sparse_initializer:
        yield st.values, f"{prefix}sparse initializer {st.values.name!r}"
    for node in graph.node:
        label = node.name or node.op_type
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t, f"{prefix}node {label!r} attribute {attr.name!r}"
            for t in attr.tensors:
                yield t, f"{prefix}node {label!r} attribute {attr.name!r}"
            if attr.HasField("g"):
                yield from iter_tensors(attr.g, f"{prefix}{label}/")
            for g in attr.graphs:
                yield from iter_tensors(g, f"{prefix}{label}/")


def expected_nbytes(tensor: onnx.TensorProto, where: str = "") -> int | None:
    """Bytes that a tensor of this dtype and shape must hold; None for strings/unknown."""
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    count = 1
    for d in tensor.dims:
        if d < 0:
            raise BadInput(f"{where or 'tensor ' + repr(tensor.name)}: declares a negative dimension {d}")
        count *= d
    try:
        bits = ir.DataType(tensor.data_type).bitwidth
    except (ValueError, TypeError):
        raise BadInput(f"{where or 'tensor ' + repr(tensor.name)}: unknown data type {tensor.data_type}") from None
    return (count * bits + 7) // 8


_T = onnx.TensorProto
# Values per element in the typed repeated fields (sub-byte types are left to onnx-ir).
_TYPED_FIELD = {
    _T.FLOAT: ("float_data", 1), _T.COMPLEX64: ("float_data", 2),
    _T.DOUBLE: ("double_data", 1), _T.COMPLEX128: ("double_data", 2),
    _T.INT64: ("int64_data", 1), _T.UINT64: ("uint64_data", 1), _T.UINT32: ("uint64_data", 1),
    **{t: ("int32_data", 1) for t in (_T.INT32, _T.INT16, _T.INT8, _T.UINT16, _T.UINT8,
                                       _T.BOOL, _T.FLOAT16, _T.BFLOAT16)},
}


def check_tensor(tensor: onnx.TensorProto, where: str, base_dir: str) -> None:
    """Refuse a tensor whose data escapes the model folder or does not match its shape."""
    nbytes = expected_nbytes(tensor, where)
    if nbytes is not None and nbytes > MAX_TENSOR_BYTES:
        raise BadInput(f"{where}: declares {nbytes} bytes, over the {MAX_TENSOR_BYTES}-byte limit per tensor "
                       "(GRAPHPRUNE_MAX_TENSOR_BYTES)")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        _check_external(tensor, where, base_dir, nbytes)
        return
    if nbytes is None:
        return
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise BadInput(
                f"{where}: stores {len(tensor.raw_data)} bytes but its shape "
                f"{list(tensor.dims)} needs {nbytes}"
            )
        return
    field, per_element = _TYPED_FIELD.get(tensor.data_type, (None, 0))
    if field is None:
        return
    stored = len(getattr(tensor, field))
    count = 1
    for d in tensor.dims:
        count *= d
    if stored == count * per_element:
        return
    if stored:
        raise BadInput(
            f"{where}: stores {stored} values but its shape {list(tensor.dims)} "
            f"needs {count * per_element}"
        )
    if nbytes:
        raise BadInput(f"{where}: declares shape {list(tensor.dims)} but stores no data")


def _check_external(tensor: onnx.TensorProto, where: str, base_dir: str, nbytes: int | None) -> None:
    info = {e.key: e.value for e in tensor.external_data}
    unknown = set(info) - _EXTERNAL_KEYS
    if unknown:
        raise BadInput(f"{where}: unknown external-data keys {sorted(unknown)}")
    location = info.get("location", "")
    if not location:
        raise BadInput(f"{where}: external data without a location")
    if location.startswith("*/_ORT_MEM_ADDR_/*"):
        raise BadInput(f"{where}: external data points into process memory ({location!r})")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location:
        raise BadInput(f"{where}: external-data location {location!r} is an absolute path")
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        raise BadInput(f"{where}: external-data location {location!r} leaves the model folder")
    current = base_dir
    for part in parts:
        if part in ("", "."):
            continue
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise BadInput(f"{where}: external-data location {location!r} goes through a symlink")
    full = os.path.realpath(current)
    # Unreachable when the checks above hold; kept as a last line of defence.
    if os.path.commonpath([full, os.path.realpath(base_dir)]) != os.path.realpath(base_dir):
        raise BadInput(f"{where}: external-data location {location!r} resolves outside the model folder")
    try:
        st = os.lstat(full)
    except OSError:
        raise BadInput(f"{where}: external-data file {location!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{where}: external-data file {location!r} is not a regular file")
    if st.st_nlink > 1:
        raise BadInput(f"{where}: external-data file {location!r} is a hard link")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise BadInput(f"{where}: external-data offset/length are not integers") from None
    if offset < 0 or (length is not None and length < 0):
        raise BadInput(f"{where}: negative external-data offset or length")
    if length is None:
        length = st.st_size - offset
    if offset + length > st.st_size:
        raise BadInput(
            f"{where}: external data [{offset}, {offset + length}) runs past the end of "
            f"{location!r} ({st.st_size} bytes)"
        )
    if nbytes is not None and length != nbytes:
        raise BadInput(
            f"{where}: external data holds {length} bytes but its shape "
            f"{list(tensor.dims)} needs {nbytes}"
        )
