"""The pass suite, one pass per module; importing this package registers them all."""

from graphprune.passes import (  # noqa: F401
    ablation,
    act_norm,
    amp,
    bn_scale,
    cleanup,
    compensate_bias,
    depth,
    fluctuation,
    fpgm,
    analysis_options,
    lamp,
    magnitude,
    metanet,
    normalize,
    random_score,
    refit,
    remove,
    restore_stats,
    select,
    wanda_sp,
)
