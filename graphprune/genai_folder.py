"""onnxruntime-genai model folders: a decoder written by the genai model builder comes with
a `genai_config.json` (head counts, head size, hidden size, the cache's tensor names) and
tokenizer files beside it. A pruned decoder leaves as a folder the runtime can open: the
config updated to the pruned graph, the other files copied.

The runtime allocates every layer's cache with one `num_key_value_heads`, so a plan that
leaves layers with different head counts is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import onnx_ir as ir

from graphprune.errors import BadInput

CONFIG = "genai_config.json"


def config_beside(model_path: str) -> str | None:
    """The genai config that describes `model_path` (its decoder's filename), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            decoder = json.load(f)["model"]["decoder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if decoder.get("filename") == os.path.basename(model_path) else None


def _attention_counts(model: ir.Model) -> tuple[set[int], set[int], set[int]]:
    """(query heads, KV heads, head sizes) over the model's GroupQueryAttention nodes."""
    from graphprune.analysis.rules.decoder_attention import gqa_layout
    from graphprune.shapes import shape_of

    heads, kv, sizes = set(), set(), set()
    for node in model.graph:
        if node.op_type == "GroupQueryAttention":
            layout = gqa_layout(node, shape_of)
            if layout is not None:
                heads.add(layout[0])
                kv.add(layout[1])
                sizes.add(layout[2])
    return heads, kv, sizes


def _hidden_size(model: ir.Model) -> int | None:
    """The embedding width: the table a Gather on the token ids reads."""
    graph = model.graph
    inputs = {v.name for v in graph.inputs}
    for node in graph:
        if node.op_type == "Gather" and len(node.inputs) > 1 and node.inputs[1] is not None \
                and node.inputs[1].name in inputs and node.inputs[0] is not None \
                and node.inputs[0].const_value is not None and len(node.inputs[0].const_value.shape) == 2:
            return int(node.inputs[0].const_value.shape[1])
    return None


def updated_config(config_path: str, model: ir.Model) -> dict:
    """The config with the pruned decoder's sizes; BadInput where the runtime cannot take
    the plan (different head counts per layer)."""
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    heads, kv, sizes = _attention_counts(model)
    if len(heads) > 1 or len(kv) > 1 or len(sizes) > 1:
        raise BadInput(
            f"onnxruntime-genai needs the same head counts in every layer ({CONFIG} has one "
            f"num_key_value_heads), but the plan keeps KV heads {sorted(kv)} and query heads {sorted(heads)}: "
            "prune heads with a per-layer ratio (select:heads=R) or add uniform=true to the select pass")
    decoder = config["model"]["decoder"]
    layers = sum(1 for n in model.graph if n.op_type == "GroupQueryAttention")
    if layers and "num_hidden_layers" in decoder:
        decoder["num_hidden_layers"] = layers  # depth pruning removed attention layers
    if heads:
        decoder["num_attention_heads"] = heads.pop()
        decoder["num_key_value_heads"] = kv.pop()
        decoder["head_size"] = sizes.pop()
    hidden = _hidden_size(model)
    if hidden is not None and "hidden_size" in decoder:
        decoder["hidden_size"] = hidden
    return config


def check_destination(config_path: str, output: str) -> None:
    """The folder is written beside the output; never over the input's own folder."""
    if os.path.samefile(os.path.dirname(config_path), os.path.dirname(os.path.abspath(output)) or "."):
        raise BadInput(f"the input comes with an onnxruntime-genai folder ({CONFIG}); write the pruned model "
                       "into another folder, where its updated config and tokenizer files go")


def write_folder(config_path: str, config: dict, output: str) -> list[str]:
    """Write the updated config beside `output` and copy the source folder's other files
    (tokenizer, processing configs; not the model or its weights). Returns what was written."""
    src = os.path.dirname(config_path)
    dst = os.path.dirname(os.path.abspath(output))
    model_file = config["model"]["decoder"]["filename"]
    config["model"]["decoder"]["filename"] = os.path.basename(output)
    skip = {CONFIG, model_file, model_file + ".data", model_file + "_data"}
    written = []
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if name in skip or not os.path.isfile(path) or name.endswith((".onnx", ".onnx.data")):
            continue
        _atomic_copy(path, os.path.join(dst, name))
        written.append(name)
    fd, tmp = tempfile.mkstemp(dir=dst, prefix=".genai_config.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=4)
    os.replace(tmp, os.path.join(dst, CONFIG))
    return [CONFIG, *written]


def _atomic_copy(src: str, dst: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".copy.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise
