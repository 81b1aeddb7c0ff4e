"""A task metric for UltraFace (../shared/assets/wild): the faces it finds on the photos.

Usable as `graphprune ... --eval-metric tests/face_metric.py:faces_found`. A face is an
anchor whose face score passes 0.7, after non-maximum suppression (IoU 0.3) over the
corner-form boxes, as the detector's own demo does. Photos are resized to 320x240, RGB,
(x - 127) / 128."""

from __future__ import annotations

import os

import numpy as np

PHOTOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "assets", "wild", "face_photos")


def photos(folder: str = PHOTOS, names: list[str] | None = None) -> np.ndarray:
    from PIL import Image

    names = names or sorted(f for f in os.listdir(folder) if f.lower().endswith(".jpg"))
    out = []
    for n in names:
        with Image.open(os.path.join(folder, n)) as im:
            out.append(np.asarray(im.convert("RGB").resize((320, 240), Image.BILINEAR), np.float32))
    x = (np.stack(out) - 127.0) / 128.0
    return x.transpose(0, 3, 1, 2).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[int]:
    order = np.argsort(-scores)
    keep = []
    while len(order):
        i = order[0]
        keep.append(int(i))
        x1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        y1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        x2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        y2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        union = area(boxes[i]) + area(boxes[order[1:]]) - inter
        order = order[1:][inter / np.maximum(union, 1e-9) <= iou]
    return keep


def detect(model_path: str, images: np.ndarray, threshold: float = 0.7) -> list[np.ndarray]:
    """Boxes of the faces found in each image."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    found = []
    for img in images:
        scores, boxes = sess.run(["scores", "boxes"], {name: img[None]})
        face = scores[0, :, 1]
        hit = face > threshold
        keep = nms(boxes[0][hit], face[hit])
        found.append(boxes[0][hit][keep])
    return found


def faces_found(model_path: str, folder: str = PHOTOS, names: list[str] | None = None) -> float:
    """The number of faces found on the photos (every photo has at least one)."""
    return float(sum(len(b) for b in detect(model_path, photos(folder, names))))


def split() -> tuple[list[str], list[str]]:
    """The photos in two halves: even positions (calibration), odd ones (evaluation)."""
    names = sorted(f for f in os.listdir(PHOTOS) if f.lower().endswith(".jpg"))
    return names[0::2], names[1::2]


def faces_found_held_out(model_path: str) -> float:
    """Faces found on the evaluation half of the photos."""
    return faces_found(model_path, names=split()[1])
