"""Writing models atomically.

The model is written to a temporary file beside the destination and renamed over it only
when complete, so an interrupted run never leaves a partial model. Models whose tensors
exceed the protobuf limit are written with external data in a file next to the model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import onnx_ir as ir

from graphprune.errors import BadInput

# Protobuf refuses messages over 2 GiB; stay well below it.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def tensor_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def file_mode() -> int:
    """The mode a new file gets under the process's umask (mkstemp would leave 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_output_path(out_path: str, input_path: str | None) -> None:
    """Refuse writing over the input model or into a folder that does not exist."""
    out_abs = os.path.abspath(out_path)
    folder = os.path.dirname(out_abs)
    if not os.path.isdir(folder):
        raise BadInput(f"{out_path}: output folder {folder} does not exist")
    if os.path.isdir(out_abs):
        raise BadInput(f"{out_path}: is a folder, expected a file name")
    if input_path is not None:
        same = os.path.realpath(out_abs) == os.path.realpath(input_path)
        if not same and os.path.exists(out_abs):
            same = os.path.samefile(out_abs, input_path)
        if same:
            raise BadInput(f"{out_path}: refusing to write over the input model")


def model_bytes(path: str) -> int:
    """Size of a model file plus the external-data files it references."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.getsize(path) + sum(os.path.getsize(os.path.join(folder, loc)) for loc in external_files(path))


def external_files(path: str) -> list[str]:
    """The external-data files (relative to the model's folder) a model file references."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    folder = os.path.dirname(os.path.abspath(path))
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    return sorted(loc for loc in locations if os.path.isfile(os.path.join(folder, loc)))


def uses_external_data(model: ir.Model) -> bool:
    return any(isinstance(v.const_value, ir.ExternalTensor) for v in model.graph.initializers.values())


def save_model(model: ir.Model, out_path: str, input_path: str | None = None,
               before_commit: Callable[[str], None] | None = None, external: bool | None = None) -> None:
    """Write `model` to `out_path` atomically (temporary file + rename).

    `external`: write tensors to `<out>.data` (default: only past the protobuf limit).
    `before_commit(tmp_path)` may inspect the written file and raise to abandon it."""
    check_output_path(out_path, input_path)
    out_abs = os.path.abspath(out_path)
    folder, name = os.path.split(out_abs)
    external = bool(external) or tensor_bytes(model) > EXTERNAL_DATA_THRESHOLD
    remove_stale_temporaries(folder, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.fchmod(fd, file_mode())
    os.close(fd)
    data_name = f"{name}.data"
    # No ".." anywhere in the name: the checker reads it as leaving the folder.
    tmp_data = os.path.basename(tmp)[: -len(".tmp")] + ".data.tmp"
    try:
        if external:
            ir.save(model, tmp, format="protobuf", external_data=tmp_data)
            if before_commit is not None:
                before_commit(tmp)
            _rewrite_locations(tmp, tmp_data, data_name)
            os.replace(os.path.join(folder, tmp_data), os.path.join(folder, data_name))
        else:
            _inline_external(model)
            ir.save(model, tmp, format="protobuf")
            if before_commit is not None:
                before_commit(tmp)
        os.replace(tmp, out_abs)
    except BaseException:
        for leftover in (tmp, os.path.join(folder, tmp_data)):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise


def copy_model(src: str, out_path: str, before_commit: Callable[[str], None] | None = None) -> None:
    """Write the input file's bytes to `out_path`, atomically (a model whose external data
    would need rewriting is saved through `save_model` instead)."""
    import shutil

    check_output_path(out_path, src)
    out_abs = os.path.abspath(out_path)
    folder, name = os.path.split(out_abs)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.fchmod(fd, file_mode())
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        if before_commit is not None:
            before_commit(tmp)
        os.replace(tmp, out_abs)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_scratch(model: ir.Model, path: str) -> None:
    """Write an intermediate model for ONNX Runtime to run (calibration, refits,
    --verify-each). IR versions before 4 want every initializer listed as an input, which
    holds only once cleanup has run, so the scratch file says IR 4 or later."""
    ir_version = model.ir_version
    model.ir_version = max(ir_version, 4)
    try:
        save_model(model, path, external=uses_external_data(model))
    finally:
        model.ir_version = ir_version


def remove_stale_temporaries(folder: str, name: str) -> None:
    """Delete temporary files a killed run left for this output (their pid is gone).
    A run killed with SIGKILL cannot clean up after itself; the next one does."""
    prefix = f".{name}."
    for entry in os.listdir(folder):
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _inline_external(model: ir.Model) -> None:
    """Read tensors still stored in the input's external data into memory, so a model
    written as one file does not point at the input's data file."""
    for value in model.graph.initializers.values():
        t = value.const_value
        if isinstance(t, ir.ExternalTensor):
            value.const_value = ir.tensor(t.numpy(), name=value.name)


def _rewrite_locations(model_file: str, old: str, new: str) -> None:
    """Point the external-data entries of a freshly written model at the final data file."""
    import onnx

    proto = onnx.load(model_file, load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    with open(model_file, "wb") as f:
        f.write(proto.SerializeToString())
