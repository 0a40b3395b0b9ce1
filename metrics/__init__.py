"""Layer 2: pure evaluation functions (no model, no loss, no I/O besides plots and per_class.csv).

Conventions: inputs are torch tensors or numpy arrays with 0-based labels; results are fractions
in [0, 1]; classes absent from the evaluation set are left out of every per-class mean.
"""

from metrics.batch import batch_accuracy
from metrics.classification import (
    confusion_matrix,
    macro_f1,
    macro_recall,
    per_class_accuracy,
    per_class_mean,
    precision_recall_f1,
    topk_accuracy,
    topk_correct,
    true_class_rank,
)
from metrics.crystal import (
    cs_accuracy_from_sg,
    cs_correct_from_sg,
    cs_head_accuracy,
    enantiomorph_accuracy,
    enantiomorph_correct,
    extinction_accuracy,
    extinction_correct,
    gate_usage,
    gate_usage_by_cs,
    sg_to_cs_np,
)
from metrics.longtail import ICL_XRD_REFERENCE_N, SHOT_PRESETS, ShotGroups, shot_accuracy, shot_groups
from metrics.plots import (
    plot_cs_confusion,
    plot_gate_heatmap,
    plot_lr_schedule,
    plot_per_class_vs_count,
    plot_per_class_vs_count_methods,
    plot_sg_confusion_by_cs,
    plot_training_curves,
)
from metrics.summary import PER_CLASS_COLUMNS, per_class_table, summarize, write_per_class_csv

__all__ = [
    "ICL_XRD_REFERENCE_N", "PER_CLASS_COLUMNS", "SHOT_PRESETS", "ShotGroups", "batch_accuracy",
    "confusion_matrix", "cs_accuracy_from_sg", "cs_correct_from_sg", "cs_head_accuracy",
    "enantiomorph_accuracy", "enantiomorph_correct", "extinction_accuracy", "extinction_correct",
    "gate_usage", "gate_usage_by_cs",
    "macro_f1", "macro_recall", "per_class_accuracy", "per_class_mean", "per_class_table",
    "plot_cs_confusion", "plot_gate_heatmap", "plot_lr_schedule", "plot_per_class_vs_count",
    "plot_per_class_vs_count_methods",
    "plot_sg_confusion_by_cs", "plot_training_curves", "precision_recall_f1", "sg_to_cs_np",
    "shot_accuracy", "shot_groups", "summarize", "topk_accuracy", "topk_correct",
    "true_class_rank", "write_per_class_csv",
]
