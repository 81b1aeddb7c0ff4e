"""Top-1 accuracy of a classifier on a labelled `.npz` (one array per model input, plus
`labels`), for the before/after line of the report.

The class output is found, not assumed: `--eval-output NAME`, else an integer output of
one value per sample (predicted labels, as scikit-learn exports write), else the float
output of one row of class scores per sample ([N, C], or [N, C, 1, 1]); several of those
need --eval-output. Labels are integers, one per sample, or one-hot rows; anything else
is refused.
"""

from __future__ import annotations

import numpy as np

from graphprune.errors import BadInput
from graphprune.probes import input_meta
from graphprune.runtime import session


def class_output(outputs: list[tuple[str, np.ndarray]], n: int, name: str | None = None) -> tuple[int, str]:
    """(index, 'labels' | 'scores') of the class output among (name, value on n samples)."""
    if name is not None:
        idx = next((i for i, (nm, _) in enumerate(outputs) if nm == name), None)
        if idx is None:
            raise BadInput(f"--eval-output: the model has no output {name!r} (outputs: "
                           f"{', '.join(nm for nm, _ in outputs)})")
        v = outputs[idx][1]
        return idx, "labels" if v.dtype.kind in "iu" else "scores"
    labels = [i for i, (_, v) in enumerate(outputs) if v.dtype.kind in "iu" and v.size == n]
    if labels:
        return labels[0], "labels"
    scores = [i for i, (_, v) in enumerate(outputs)
              if v.dtype.kind == "f" and v.ndim >= 2 and v.shape[0] == n and v.size // n > 1
              and v.size // n == v.reshape(n, -1).shape[1] and all(d == 1 for d in v.shape[2:])]
    if len(scores) == 1:
        return scores[0], "scores"
    names = ", ".join(outputs[i][0] for i in scores) or "none"
    raise BadInput(f"--eval: cannot tell which output holds the class scores (candidates: {names}); "
                   "name it with --eval-output NAME")


def check_labels(labels: np.ndarray, n: int, classes: int | None) -> np.ndarray:
    """Integer labels, one per sample (one-hot rows are read as their class)."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[0] == n and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        y = y.argmax(1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise BadInput(f"--eval: 'labels' must hold one class per sample ({n}), or one-hot rows; "
                       f"it has shape {list(y.shape)}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise BadInput("--eval: 'labels' must be whole numbers (class indices)")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise BadInput(f"--eval: 'labels' has dtype {y.dtype}; class indices are integers")
    if classes is not None and len(y) and (y.min() < 0 or y.max() >= classes):
        raise BadInput(f"--eval: labels run from {y.min()} to {y.max()}, but the class output has {classes} classes")
    return y


def _predict(sess, runs, n: int, output: str | None) -> tuple[np.ndarray, int | None, str]:
    from graphprune.verify import run_all

    names = [o.name for o in sess.get_outputs()]
    values = run_all(sess, runs)
    idx, kind = class_output(list(zip(names, values)), n, output)
    v = values[idx].reshape(n, -1)
    return (v[:, 0] if kind == "labels" else v.argmax(1)), (None if kind == "labels" else v.shape[1]), names[idx]


def predictions(path: str, data_path: str, output: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(predicted class, labels, output name) over all samples of the labelled file."""
    from graphprune.samples import read_runs

    sess = session(path, optimize=True)
    runs, extras, n = read_runs(data_path, input_meta(sess), batch=256, extra_ok=("labels",))
    if "labels" not in extras:
        raise BadInput(f"{data_path}: needs an array named 'labels'")
    pred, classes, name = _predict(sess, runs, n, output)
    return pred, check_labels(extras["labels"], n, classes), name


def accuracy(path: str, data: dict[str, np.ndarray], labels: np.ndarray, batch: int = 256,
             output: str | None = None) -> float:
    """Top-1 on in-memory samples (one array per input, samples first), for scripts."""
    from graphprune.samples import batches, fixed_batch, input_spec

    sess = session(path, optimize=True)
    fixed = fixed_batch(input_spec(input_meta(sess)))
    arrays = {i.name: data[i.name] for i in sess.get_inputs()}
    runs = [feeds for _, feeds in batches(arrays, set(), fixed or batch, fixed=fixed)]
    n = sum(len(next(iter(f.values()))) for f in runs)
    pred, classes, _ = _predict(sess, runs, n, output)
    return float(np.mean(pred == check_labels(np.asarray(labels)[:n], n, classes)))


def accuracy_pair(before_path: str, after_path: str, data_path: str, output: str | None = None) -> dict:
    pb, y, name = predictions(before_path, data_path, output)
    pa, _, _ = predictions(after_path, data_path, name)
    return {"before": float(np.mean(pb == y)), "after": float(np.mean(pa == y)), "samples": int(len(y)),
            "output": name}
