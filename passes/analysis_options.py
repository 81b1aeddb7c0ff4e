"""Opt-in analysis options.

hidden: let the hidden size (the residual stream of a transformer) be pruned.

The residual stream runs through every LayerNorm/RMSNorm, which normalize over it, so by
default it is pinned. This pass, given explicitly, turns on an analysis option under
which a normalization over the last axis (LayerNormalization, RMSNormalization, ONNX
Runtime's SkipLayerNormalization, and ReduceMean over the last axis as in RMSNorm written
out) passes that axis through. The result is not exact even for inert channels: the
norm's mean and variance then run over fewer features. The report says so.

channel-norms: let channels be pruned through a mean over channels of per-channel
statistics, as in ConvNeXt-V2's global response normalization (GRN: each channel's
spatial L2 norm divided by the mean of those norms over the channels). By default such a
mean pins its channels; with this pass the mean runs over the kept channels, which is not
exact either: the report warns.

query-heads: in grouped-query attention a unit is normally a KV head with all its query
heads. With this pass the KV heads stay and a unit is the r-th query head of every KV
group, so query heads are removed uniformly per group (n_rep shrinks).

head-dims: a unit is the j-th position of every head (Q and K positions together, V and
the output projection's columns together); heads stay. Where rotary embeddings pair
head_dim positions through tables or gathers, head_dim stays pinned (whole heads only).
The softmax scale keeps its constant, as in Torch-Pruning's head-dim pruning.
"""

from __future__ import annotations

import onnx_ir as ir

from graphprune.registry import PrunePass, register

class _AnalysisOption(PrunePass):
    """Turns on one option of the dimension-flow analysis (`flag`), warning where the
    result is inexact."""

    kind = "analysis"
    options = {}
    flag = ""
    warning = ""

    def run(self, model: ir.Model) -> bool:
        self.ctx.flow_options[self.flag] = True
        self.ctx.graph_changed()
        if self.warning:
            self.ctx.warn(self.warning)
        return False


@register
class HiddenPass(_AnalysisOption):
    name = "hidden"
    summary = "opt-in: prune the hidden size through LayerNorm/RMSNorm (inexact; reported)"
    flag = "through_norms"
    warning = ("hidden-size pruning: normalizations now run over fewer features, so outputs "
               "change even where removed channels were inert")


@register
class ChannelNormsPass(_AnalysisOption):
    name = "channel-norms"
    summary = "opt-in: prune channels through a mean over per-channel statistics (GRN; inexact; reported)"
    flag = "channel_stats"
    warning = ("channel-norms pruning: a mean over channels (e.g. GRN's) now runs over fewer "
               "channels, so outputs change even where removed channels were inert")


@register
class TorchSizesPass(_AnalysisOption):
    name = "torch-sizes"
    summary = ("set by graphprune.torch: axes whose sizes the module's code spells out (Pad amounts, "
               "Slice bounds) stay, since the pruned module could not follow them")
    flag = "literal_sizes"


@register
class QueryHeadsPass(_AnalysisOption):
    name = "query-heads"
    summary = ("opt-in: in grouped-query attention, prune the r-th query head of every KV group "
               "(KV heads kept) instead of whole KV groups")
    flag = "query_heads"


@register
class HeadDimsPass(_AnalysisOption):
    name = "head-dims"
    summary = "opt-in: prune the j-th position of every attention head (head_dim) instead of whole heads"
    flag = "head_dims"
