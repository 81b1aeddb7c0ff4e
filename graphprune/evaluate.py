"""Top-1 accuracy of a classifier on a labelled `.npz` (one array per model input, plus
`labels`), for the before/after line of the report."""

from __future__ import annotations

import numpy as np

from graphprune.errors import BadInput
from graphprune.runtime import session


def accuracy(path: str, data: dict[str, np.ndarray], labels: np.ndarray, batch: int = 256) -> float:
    sess = session(path, optimize=True)
    inp = sess.get_inputs()
    fixed = isinstance(inp[0].shape[0], int) and inp[0].shape[0] > 0
    step = inp[0].shape[0] if fixed else batch
    correct = 0
    n = len(labels)
    for s in range(0, n - (n % step if fixed else 0), step):
        feeds = {i.name: data[i.name][s:s + step] for i in inp}
        logits = sess.run(None, feeds)[0].reshape(len(feeds[inp[0].name]), -1)
        correct += int((logits.argmax(1) == labels[s:s + step]).sum())
    used = n - (n % step if fixed else 0)
    return correct / max(used, 1)


def accuracy_pair(before_path: str, after_path: str, data_path: str) -> dict:
    try:
        data = np.load(data_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BadInput(f"{data_path}: cannot read evaluation data ({e})") from None
    if "labels" not in data.files:
        raise BadInput(f"{data_path}: needs an array named 'labels'")
    arrays = {k: data[k] for k in data.files}
    labels = arrays.pop("labels")
    names = [i.name for i in session(before_path).get_inputs()]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise BadInput(f"{data_path}: no array for model input(s) {', '.join(missing)}")
    return {"before": accuracy(before_path, arrays, labels),
            "after": accuracy(after_path, arrays, labels), "samples": int(len(labels))}
