"""graphprune: structured pruning of ONNX models.

    import graphprune
    report = graphprune.prune("model.onnx", output="small.onnx", calib="calib.npz",
                              passes=["select:macs=0.5"], report="report.json")

The passes are onnx-ir passes too: `graphprune.build_passes(ctx, specs)` binds them to a
`graphprune.Context` for an `onnx_ir.passes.PassManager`.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"
__all__ = ["Context", "Options", "build_passes", "complete_pipeline", "prune", "__version__"]

_LAZY = {"Options": "pipeline", "prune": "pipeline", "build_passes": "pipeline",
         "complete_pipeline": "pipeline", "Context": "context"}


class _CheckoutPasses:
    """In a source checkout the pass suite is the top-level folder `passes/`, installed as
    `graphprune.passes`; this finder makes it importable under that name without an
    install (`python -m graphprune` in a fresh clone)."""

    def __init__(self, folder: str):
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if name != "graphprune.passes":
            return None
        import importlib.util

        return importlib.util.spec_from_file_location(
            name, _os.path.join(self.folder, "__init__.py"), submodule_search_locations=[self.folder])


def _install_checkout_finder() -> None:
    here = _os.path.dirname(_os.path.abspath(__file__))
    folder = _os.path.join(_os.path.dirname(here), "passes")
    if not _os.path.isdir(_os.path.join(here, "passes")) and _os.path.isfile(_os.path.join(folder, "__init__.py")):
        _sys.meta_path.insert(0, _CheckoutPasses(folder))


_install_checkout_finder()


def __getattr__(name):
    # Imported on first use, so `graphprune` on the command line starts (and can be
    # interrupted) before numpy, onnx and ONNX Runtime are loaded.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"graphprune.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'graphprune' has no attribute {name!r}")
