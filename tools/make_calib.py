"""Build a calibration file for `graphprune --calib` (one array per model input, first
axis = samples) from a folder of images or from a text file and a tokenizer.

    python tools/make_calib.py images DIR -o calib.npz --size 32 --mean 0.485,0.456,0.406 \\
        --std 0.229,0.224,0.225 [--name x] [--layout nchw|nhwc] [--limit 1000]
    python tools/make_calib.py text FILE -o calib.npz --tokenizer DIR [--seq 128] [--limit 512] \\
        [--names input_ids,attention_mask] [--skip-lines 0] [--pack]

Images need Pillow (pip install pillow); they are resized to size x size (bilinear),
scaled to [0, 1], normalized, and stacked in file-name order. Text needs transformers and
a tokenizer folder (read offline); each non-empty line (or blank-line separated paragraph
with --paragraphs) is one sample, padded or cut to --seq tokens; prune with
`--calib-mask attention_mask` so the pad positions stay out of the statistics. With --pack, the
encoded samples (special tokens included) are concatenated and cut into windows of --seq
tokens with no padding: short texts padded to --seq would fill the statistics with pad
positions, which the model masks out but every activation statistic would count. The file
is written uncompressed so graphprune memory-maps it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def from_images(folder, size, mean, std, layout, limit):
    try:
        from PIL import Image
    except ImportError:
        sys.exit("make_calib: reading images needs Pillow (pip install pillow)")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXT))[:limit]
    if not files:
        sys.exit(f"make_calib: no images in {folder}")
    out = np.empty((len(files), size, size, 3), np.float32)
    for i, f in enumerate(files):
        with Image.open(os.path.join(folder, f)) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255.0
    out = (out - np.array(mean, np.float32)) / np.array(std, np.float32)
    return out.transpose(0, 3, 1, 2).copy() if layout == "nchw" else out


def from_text(path, tokenizer, seq, limit, names, paragraphs, skip, pack=False):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parts = [p.strip() for p in (text.split("\n\n") if paragraphs else text.splitlines())]
    parts = [p for p in parts if p][skip:skip + limit]
    if not parts:
        sys.exit(f"make_calib: no text in {path}")
    if pack:
        ids = pack_tokens([tok(p)["input_ids"] for p in parts], seq)
        if not len(ids):
            sys.exit(f"make_calib: {path} has fewer than --seq {seq} tokens to pack")
        fill = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        unknown = [n for n in names if n not in fill]
        if unknown:
            sys.exit(f"make_calib: --pack cannot fill input {unknown[0]!r}")
        return {n: fill[n] for n in names}
    enc = tok(parts, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    return {n: enc[n].astype(np.int64) for n in names}


def pack_tokens(id_lists, seq: int) -> np.ndarray:
    """(windows, seq) int64: the token lists one after the other, cut every seq tokens; the
    last partial window is dropped."""
    stream = np.fromiter((t for ids in id_lists for t in ids), np.int64)
    n = len(stream) // seq
    return stream[:n * seq].reshape(n, seq)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["images", "text"])
    ap.add_argument("source")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--mean", default="0.485,0.456,0.406")
    ap.add_argument("--std", default="0.229,0.224,0.225")
    ap.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw")
    ap.add_argument("--name", default="x", help="model input name for images")
    ap.add_argument("--tokenizer")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--names", default="input_ids,attention_mask")
    ap.add_argument("--paragraphs", action="store_true")
    ap.add_argument("--pack", action="store_true", help="concatenate the texts into full windows (no padding)")
    ap.add_argument("--skip-lines", type=int, default=0, help="leave out the first N samples (e.g. evaluation data)")
    args = ap.parse_args()
    if not os.path.exists(args.source):
        sys.exit(f"make_calib: {args.source}: no such {'folder' if args.kind == 'images' else 'file'}")
    if args.kind == "images":
        arrays = {args.name: from_images(args.source, args.size, [float(v) for v in args.mean.split(",")],
                                         [float(v) for v in args.std.split(",")], args.layout, args.limit)}
    else:
        if not args.tokenizer:
            sys.exit("make_calib: text needs --tokenizer DIR")
        arrays = from_text(args.source, args.tokenizer, args.seq, args.limit, args.names.split(","),
                           args.paragraphs, args.skip_lines, args.pack)
    tmp = f"{args.output}.partial.npz"  # written whole, then moved into place
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    shapes = ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in arrays.items())
    print(f"wrote {args.output}: {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
