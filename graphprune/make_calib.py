"""`graphprune calib MODEL -o calib.npz SOURCE`: a sample file for --calib (or, with labels,
--eval), built for one model: its input names, dtypes, layout and fixed sizes are read from
the model, so the file fits it.

Sources (one of them):
  --images DIR    image files, also in class subfolders (with --labels, each subfolder is a
                  class, numbered in name order); resized to the model's height and width
                  (--size WxH where they are symbolic); channels from the model (3: --color
                  rgb or bgr, 1: gray); values = (pixel * --scale - mean) / std
  --text FILE     lines (or --paragraphs) through a tokenizer folder (--tokenizer, read
                  offline with transformers); padded to --seq, or --pack'ed into full windows
  --audio DIR     16-bit PCM WAV files, cut into chunks of the model's input length
  --arrays NAME=FILE.npy ...  arrays as they are
Inputs no source fills take a constant (--fill NAME=VALUE, e.g. a sample rate or a zero
state): one complete input per sample. The file is written uncompressed (graphprune reads
it on demand), whole, then moved into place, and checked against the model.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from graphprune.errors import BadInput

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphprune calib", description="Build a --calib / --eval sample file for a model.")
    p.add_argument("model", help="the ONNX model the file is for")
    p.add_argument("-o", "--output", required=True, help="the .npz to write")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR")
    src.add_argument("--text", metavar="FILE")
    src.add_argument("--audio", metavar="DIR")
    src.add_argument("--arrays", nargs="+", metavar="NAME=FILE.npy")
    p.add_argument("--input", help="the model input the source fills (default: the first)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many samples (default 1000)")
    p.add_argument("--skip", type=int, default=0, help="leave out the first N samples (e.g. evaluation data)")
    p.add_argument("--size", metavar="WxH", help="image size where the model's is symbolic")
    p.add_argument("--color", choices=["rgb", "bgr", "gray"], help="default: rgb for 3 channels, gray for 1")
    p.add_argument("--scale", type=float, default=1 / 255, help="pixel values (0..255) times this (default 1/255)")
    p.add_argument("--mean", default="0", help="subtracted after scaling, one value or one per channel")
    p.add_argument("--std", default="1", help="divided by after the mean, one value or one per channel")
    p.add_argument("--labels", action="store_true", help="images: write class labels from the subfolders")
    p.add_argument("--tokenizer", metavar="DIR")
    p.add_argument("--seq", type=int, default=128, help="tokens per sample where the model's is symbolic")
    p.add_argument("--paragraphs", action="store_true", help="text: blank-line separated paragraphs, not lines")
    p.add_argument("--pack", action="store_true", help="text: full windows of --seq tokens, no padding")
    p.add_argument("--rate", type=int, help="audio: the sample rate the model wants (files must have it)")
    p.add_argument("--length", type=int, help="audio: samples per chunk where the model's is symbolic")
    p.add_argument("--fill", action="append", default=[], metavar="NAME=VALUE",
                   help="a constant for an input no source fills (repeatable)")
    return p


def _model_inputs(path: str):
    from graphprune.loading import load_model
    from graphprune.probes import graph_input_meta

    return graph_input_meta(load_model(path))


def _floats(text: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in text.split(",")], np.float32)
    except ValueError:
        raise BadInput(f"calib: {text!r} is not a number or a comma-separated list of numbers") from None


def image_files(folder: str) -> tuple[list[str], list[int], list[str]]:
    """Image paths (sorted, subfolders included), their class (index of the top-level
    subfolder, -1 for files at the top) and the class names."""
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    files, labels = [], []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(root, folder)
        top = rel.split(os.sep)[0] if rel != "." else None
        for n in sorted(names):
            if n.lower().endswith(IMAGE_EXT):
                files.append(os.path.join(root, n))
                labels.append(classes.index(top) if top is not None else -1)
    return files, labels, classes


def image_layout(dims) -> tuple[str, int, int | None, int | None]:
    """(nchw | nhwc, channels, height, width) of an image input's declared shape."""
    if len(dims) != 4:
        raise BadInput(f"calib: --images needs a 4-D image input, this one is declared {list(dims)}")
    if dims[1] in (1, 3):
        return "nchw", dims[1], dims[2], dims[3]
    if dims[3] in (1, 3):
        return "nhwc", dims[3], dims[1], dims[2]
    raise BadInput(f"calib: cannot tell the channel axis of an input declared {list(dims)}")


def from_images(args, dims, dtype) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        from PIL import Image
    except ImportError:
        raise BadInput("calib: reading images needs Pillow (pip install 'graphprune[images]')") from None
    layout, channels, h, w = image_layout(dims)
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        if not args.size:
            raise BadInput(f"calib: the model's image size is symbolic ({list(dims)}): give --size WxH")
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise BadInput(f"calib: --size {args.size!r} is not WxH") from None
    files, labels, classes = image_files(args.images)
    files, labels = files[args.skip:args.skip + args.limit], labels[args.skip:args.skip + args.limit]
    if not files:
        raise BadInput(f"calib: no images in {args.images}")
    color = args.color or ("gray" if channels == 1 else "rgb")
    if (color == "gray") != (channels == 1):
        raise BadInput(f"calib: --color {color} does not fit an input with {channels} channels")
    out = np.empty((len(files), h, w, channels), np.float32)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("L" if color == "gray" else "RGB").resize((w, h), Image.BILINEAR)
                px = np.asarray(im, np.float32).reshape(h, w, channels)
        except OSError as e:
            raise BadInput(f"calib: cannot read image {f} ({e})") from None
        out[i] = px[..., ::-1] if color == "bgr" else px
    out = (out * args.scale - _floats(args.mean)) / _floats(args.std)
    if layout == "nchw":
        out = out.transpose(0, 3, 1, 2)
    if dtype is not None and dtype != np.float32:
        out = np.clip(np.round(out), np.iinfo(dtype).min, np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else out
    y = None
    if args.labels:
        if min(labels) < 0 or not classes:
            raise BadInput("calib: --labels needs every image inside a class subfolder")
        y = np.array(labels, np.int64)
    return np.ascontiguousarray(out.astype(dtype or np.float32)), y


def from_text(args, inputs) -> dict[str, np.ndarray]:
    if not args.tokenizer:
        raise BadInput("calib: --text needs --tokenizer DIR (a tokenizer folder, read offline)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise BadInput("calib: --text needs transformers (pip install transformers)") from None
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    parts = [p.strip() for p in (text.split("\n\n") if args.paragraphs else text.splitlines())]
    parts = [p for p in parts if p][args.skip:args.skip + args.limit]
    if not parts:
        raise BadInput(f"calib: no text in {args.text}")
    seq = next((dims[1] for _, dims, _ in inputs if len(dims) == 2 and isinstance(dims[1], int)), args.seq)
    names = [n for n, _, _ in inputs]
    if args.pack:
        ids = pack_tokens([tok(p)["input_ids"] for p in parts], seq)
        if not len(ids):
            raise BadInput(f"calib: {args.text} has fewer than {seq} tokens to pack")
        fill = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    else:
        enc = tok(parts, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
        fill = {k: np.asarray(v, np.int64) for k, v in enc.items()}
    return {n: fill[n] for n in names if n in fill}


def pack_tokens(id_lists, seq: int) -> np.ndarray:
    """(windows, seq) int64: the token lists one after the other, cut every seq tokens; the
    last partial window is dropped."""
    stream = np.fromiter((t for ids in id_lists for t in ids), np.int64)
    n = len(stream) // seq
    return stream[:n * seq].reshape(n, seq)


def from_audio(args, dims) -> np.ndarray:
    import wave

    length = dims[-1] if isinstance(dims[-1], int) and dims[-1] > 0 else args.length
    if not length:
        raise BadInput(f"calib: the model's audio length is symbolic ({list(dims)}): give --length N")
    files = sorted(os.path.join(r, n) for r, _, ns in os.walk(args.audio) for n in ns if n.lower().endswith(".wav"))
    chunks = []
    for f in files:
        with wave.open(f) as w:
            if w.getsampwidth() != 2:
                raise BadInput(f"calib: {f}: only 16-bit PCM WAV files are read")
            if args.rate and w.getframerate() != args.rate:
                raise BadInput(f"calib: {f} is sampled at {w.getframerate()} Hz, not --rate {args.rate}")
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels()).mean(1)
        pcm = (pcm / 32768.0).astype(np.float32)
        chunks += [pcm[s:s + length] for s in range(0, len(pcm) - length + 1, length)]
    chunks = chunks[args.skip:args.skip + args.limit]
    if not chunks:
        raise BadInput(f"calib: no audio chunks of {length} samples in {args.audio}")
    return np.stack(chunks).reshape((len(chunks), *[length if i == len(dims) - 1 else 1 for i in range(1, len(dims))]))


def from_arrays(specs: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq:
            raise BadInput(f"calib: --arrays {spec!r}: use NAME=FILE.npy")
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise BadInput(f"calib: cannot read {path} ({e})") from None
    return out


def _fill(specs, inputs, arrays, n) -> None:
    """Constant inputs: one complete input per sample (its declared shape, batch 1)."""
    from graphprune.runtime import ORT_NUMPY

    meta = {name: (dims, t) for name, dims, t in inputs}
    for spec in specs:
        name, eq, raw = spec.partition("=")
        if not eq or name not in meta:
            raise BadInput(f"calib: --fill {spec!r}: use NAME=VALUE with NAME a model input ({', '.join(meta)})")
        dims, t = meta[name]
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        try:
            value = float(raw)
        except ValueError:
            raise BadInput(f"calib: --fill {spec!r}: {raw!r} is not a number") from None
        arrays[name] = np.full((n, *shape), value, dtype=ORT_NUMPY.get(t, np.float32))


def build(args) -> dict[str, np.ndarray]:
    from graphprune.runtime import ORT_NUMPY

    inputs = _model_inputs(args.model)
    names = [n for n, _, _ in inputs]
    target = args.input or names[0]
    if target not in names:
        raise BadInput(f"calib: the model has no input {target!r} (inputs: {', '.join(names)})")
    dims, tname = next((d, t) for n, d, t in inputs if n == target)
    arrays: dict[str, np.ndarray] = {}
    if args.images:
        arrays[target], labels = from_images(args, dims, ORT_NUMPY.get(tname))
        if labels is not None:
            arrays["labels"] = labels
    elif args.text:
        arrays.update(from_text(args, inputs))
    elif args.audio:
        arrays[target] = from_audio(args, dims)
    else:
        arrays.update(from_arrays(args.arrays))
    n = len(next(iter(arrays.values())))
    if args.fill:
        # Beside constants given per sample, every input is one complete input per sample
        # (graphprune.samples): a batched array becomes a batch of 1 per entry.
        for name, d, _ in inputs:
            if name in arrays and arrays[name].ndim == len(d):
                arrays[name] = arrays[name][:, None]
        _fill(args.fill, inputs, arrays, n)
    return arrays


def main(argv: list[str]) -> int:
    from graphprune.samples import check_arrays, input_spec

    args = _parser().parse_args(argv)
    for path, what in ((args.model, "model"), (args.images, "folder"), (args.text, "file"), (args.audio, "folder")):
        if path and not os.path.exists(path):
            raise BadInput(f"calib: {path}: no such {what}")
    arrays = build(args)
    n, _ = check_arrays(arrays, input_spec(_model_inputs(args.model)), "calib", extra_ok=("labels",))
    from graphprune.saving import check_output_path

    check_output_path(args.output, args.model)
    tmp = f"{args.output}.partial.npz"  # written whole, then moved into place
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    shapes = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in arrays.items())
    print(f"wrote {args.output}: {n} samples; {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
