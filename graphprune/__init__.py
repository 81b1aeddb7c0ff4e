"""graphprune: structured pruning of ONNX models.

    from graphprune import prune, Options
    report = prune("model.onnx", Options(passes=["l2", "select:macs=0.5"], output="small.onnx"))
"""

__version__ = "0.1.0"

from graphprune.pipeline import Options, prune  # noqa: E402

__all__ = ["Options", "prune", "__version__"]
