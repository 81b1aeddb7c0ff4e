"""graphprune/task_metric.py: a user's metric from a module or a file, called on a model
path; a number or a dict; its failures are one-line errors; retention is after / before."""

from __future__ import annotations

import pytest

from graphprune import task_metric
from graphprune.errors import BadInput


def test_from_a_file_and_a_module(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def size(path):\n    import os\n    return os.path.getsize(path)\n"
                 "def both(path):\n    return {'a': 2, 'b': 3}\n"
                 "def broken(path):\n    raise ValueError('no faces')\n")
    fn = task_metric.load(f"{f}:size")
    assert task_metric.measure(fn, str(f)) == {"metric": float(f.stat().st_size)}
    assert task_metric.measure(task_metric.load(f"{f}:both"), "x") == {"a": 2.0, "b": 3.0}
    assert task_metric.load("os.path:getsize") is not None
    with pytest.raises(BadInput, match="ValueError: no faces"):
        task_metric.measure(task_metric.load(f"{f}:broken"), "x")
    assert task_metric.retention({"a": 4.0}, {"a": 3.0}) == 0.75 and task_metric.retention({"a": 0.0}, {"a": 0.0}) == 1.0


@pytest.mark.parametrize("spec,needle", [("nocolon", "MODULE:FUNCTION"), ("missing_file.py:f", "no file"),
                                         ("os.path:nothing", "no function"), ("no_such_module_x:f", "cannot load")])
def test_refusals(spec, needle):
    with pytest.raises(BadInput, match=needle):
        task_metric.load(spec)
