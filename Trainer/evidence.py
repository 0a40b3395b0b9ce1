"""Evaluation with the indexing evidence (``--evidence index``): fit the fusion on the validation
split, then report every evaluated split three ways — the model alone, the index alone and the
fusion (``Trainer.fusion``).

The evidence arrives through an injected *source*: a callable ``source(x, name) -> (N, 110)`` that
maps the evaluated patterns (N, L) on the data's 2θ grid to their indexing evidence vectors
(``index_method.PatternEvidenceSource``: peak picking + indexing, cached per pattern on disk, so
the fixed val/test files are indexed once per machine). This layer never imports ``indexing``.

Metric keys (``log.jsonl``, ``test_metrics.json``, the results table): the unprefixed keys are the
run's prediction, i.e. the fusion; ``model_*`` the model alone, ``index_*`` the index alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from metrics import gate_usage
from Trainer.fusion import (
    FusionParams,
    fit_fusion,
    fuse,
    index_prediction,
    log_prior,
    mask_by_system,
    model_log_probs,
    system_scores,
)
from utils.checkpoint import atomic_save, atomic_writer, load_checkpoint
from utils.distributed import unwrap

EvidenceSource = Callable[[np.ndarray, str], np.ndarray]
VARIANTS = ("fused", "model", "index")   # report order; "fused" keys are unprefixed
PREFIX = {"fused": "", "model": "model_", "index": "index_"}


def predict_with_inputs(evaluator: Any, loader: Iterable) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The evaluator's predictions of ``loader`` and the patterns (N, L) they were made from."""
    pred = evaluator.predict(loader, keep_inputs=True)
    x = pred.pop("x")
    return pred, x.reshape(len(x), -1)


def predict_with_evidence(evaluator: Any, loader: Iterable, source: EvidenceSource,
                          name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The evaluator's predictions of ``loader`` and the evidence (N, 110) of its patterns. A model
    that takes the evidence as an input (``uses_evidence``: ICL with evidence inputs) is run a
    second time with it, so its predictions are the ones made with the evidence."""
    pred, x = predict_with_inputs(evaluator, loader)
    evidence = source(x, name)
    if getattr(unwrap(evaluator.model), "uses_evidence", False):
        pred = evaluator.predict(loader, evidence=evidence)
    return pred, evidence


def fit_on_split(evaluator: Any, loader: Iterable, source: EvidenceSource, name: str = "val") -> FusionParams:
    """Fit the fusion on ``loader`` (the validation split) and log what it changed there."""
    pred, evidence = predict_with_evidence(evaluator, loader, source, name)
    params = fit_fusion(pred, evidence)
    f = params.fit
    logger.info(f"evidence fusion fitted on {name} ({f['n_val']} patterns, {100 * f['val_solved']:.1f} % "
                f"indexed): {params.describe()}; {name} NLL {f['val_nll_model']:.3f} → "
                f"{f['val_nll_fused']:.3f}, "
                f"top-1 {100 * f['val_top1_model']:.1f} → {100 * f['val_top1_fused']:.1f} %")
    return params


def with_target_prior(pred: dict[str, np.ndarray], counts: np.ndarray,
                      target_counts: np.ndarray | None) -> dict[str, np.ndarray]:
    """The model's prediction moved from the training prior to a target prior (post-hoc logit
    adjustment, Menon et al. 2021): log-posteriors + log π_target − log π_train, the system scores
    likewise; ``pred`` itself when ``target_counts`` is None."""
    if target_counts is None:
        return pred
    shift = log_prior(target_counts) - log_prior(counts)                      # (230,)
    base = model_log_probs(pred) + shift[None]
    out = dict(pred, logits=base.astype(np.float32))
    if "ensemble_logits" in pred and "cs_logits" in pred:  # keep the hierarchy: adjust both levels
        per_cs = system_scores(base)
        out["cs_logits"] = per_cs.astype(np.float32)
        out["ensemble_logits"] = base.astype(np.float32)  # p(g) within its system ∝ exp(base)
        out["logits"] = mask_by_system(base, per_cs).astype(np.float32)
    return out


def variants(pred: dict[str, np.ndarray], evidence: np.ndarray | None, params: FusionParams | None,
             counts: np.ndarray, target_counts: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{"fused", "model", "index"}`` prediction dicts of the same patterns (only ``model``
    without evidence); with ``target_counts`` every prior is the target's (:func:`with_target_prior`)."""
    model = with_target_prior(pred, counts, target_counts)
    if evidence is None or params is None:
        return {"model": model}
    prior = counts if target_counts is None else target_counts
    return {"fused": fuse(model, evidence, params), "model": model,
            "index": index_prediction(pred, evidence, prior)}


def summarize_variants(preds: dict[str, dict[str, np.ndarray]],
                       summarize: Callable[[dict[str, np.ndarray]], dict[str, float]]) -> dict[str, float]:
    """One flat metric dict: fused unprefixed, ``model_*``, ``index_*`` (only the model's,
    unprefixed, without evidence); the model's gate usage (a mixture of experts) unprefixed too."""
    if "fused" not in preds:
        out = summarize(preds["model"])
        if "gate" in preds["model"]:
            out.update(gate_usage(preds["model"]["gate"]))
        return out
    out = {}
    for name in VARIANTS:
        out.update({f"{PREFIX[name]}{k}": v for k, v in summarize(preds[name]).items()})
    if "gate" in preds["model"]:
        out.update(gate_usage(preds["model"]["gate"]))
    return out


def evaluate_split(evaluator: Any, loader: Iterable, source: EvidenceSource | None,
                   params: FusionParams | None, counts: np.ndarray, name: str,
                   target_counts: np.ndarray | None = None
                   ) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Metrics (see :func:`summarize_variants`) and the prediction dicts of one split (the three
    variants with a source, the model's alone without)."""
    if source is None:
        pred = evaluator.predict(loader)
        preds = variants(pred, None, None, counts, target_counts)
        return summarize_variants(preds, evaluator.summarize), preds
    pred, evidence = predict_with_evidence(evaluator, loader, source, name)
    preds = variants(pred, evidence, params, counts, target_counts)
    return summarize_variants(preds, evaluator.summarize), preds


def store_params(run_dir: Path, params: FusionParams, checkpoints: Iterable[str] = ("best.pt",)) -> None:
    """``fusion.json`` in the run folder, and the params inside its checkpoints (atomically), so
    that ``test.py --ckpt`` and ``predict.py`` fuse with the same weights."""
    with atomic_writer(run_dir / "fusion.json", "w") as fh:
        json.dump(params.to_dict(), fh, indent=2)
    for name in checkpoints:
        path = run_dir / name
        if path.is_file():
            state = load_checkpoint(path)
            state["fusion"] = params.to_dict()
            atomic_save(state, path)


class EvidenceMixin:
    """The Trainer's final evaluation with or without evidence (``self.evidence``: a source or
    None; ``self.fusion``: the fitted params). Used by :meth:`Trainer.finish`."""

    evidence: EvidenceSource | None
    fusion: FusionParams | None
    test_predictions: dict[str, dict[str, dict[str, np.ndarray]]]

    def prepare_fusion(self) -> FusionParams | None:
        """Fit the fusion on the validation split once (the weights of the best checkpoint)."""
        if self.evidence is None or self.fusion is not None:
            return self.fusion
        val = self.loaders.get("val")  # type: ignore[attr-defined]
        if val is None:
            logger.warning("--evidence index without a validation split: fusion with the default "
                           f"weights ({FusionParams().describe()}), not fitted")
            self.fusion = FusionParams()
        else:
            self.fusion = fit_on_split(self.evaluator, val, self.evidence, "val")  # type: ignore[attr-defined]
        if self.run_dir:  # type: ignore[attr-defined]
            store_params(self.run_dir, self.fusion)  # type: ignore[attr-defined]
        return self.fusion

    def final_metrics(self, loader: Iterable, name: str) -> dict[str, float]:
        """Metrics of one test split: the model's (``evaluate``) without evidence, else the three
        variants; the prediction dicts stay in ``test_predictions[name]``."""
        if self.evidence is None or self.fusion is None:
            metrics = self.evaluate(loader)  # type: ignore[attr-defined]
            self.test_predictions[name] = {"model": self.last_pred}  # type: ignore[attr-defined]
            return metrics
        metrics, preds = evaluate_split(self.evaluator, loader, self.evidence, self.fusion,  # type: ignore[attr-defined]
                                        self.class_counts, name)  # type: ignore[attr-defined]
        self.test_predictions[name] = preds
        self.last_pred = preds["model"]  # callbacks (wandb's gate usage) read the model's outputs
        return metrics


__all__ = ["EvidenceMixin", "EvidenceSource", "PREFIX", "VARIANTS", "evaluate_split", "fit_on_split",
           "predict_with_inputs", "store_params", "summarize_variants", "variants", "with_target_prior"]
