"""graphprune: structured pruning of ONNX models.

    from graphprune import prune, Options
    report = prune("model.onnx", Options(passes=["l2", "select:macs=0.5"], output="small.onnx"))
"""

__version__ = "0.1.0"
__all__ = ["Options", "prune", "__version__"]


def __getattr__(name):
    # Imported on first use, so `graphprune` on the command line starts (and can be
    # interrupted) before numpy, onnx and ONNX Runtime are loaded.
    if name in ("Options", "prune"):
        from graphprune import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'graphprune' has no attribute {name!r}")
