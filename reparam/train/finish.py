"""The end of a run, after the loop: final held-out metrics with the IS log-likelihood, summary.json, pictures."""

from __future__ import annotations

from .. import evaluate, objectives, runs
from ..report import pictures
from .loop import Trainer


def finish(trainer: Trainer, progress: bool = True) -> dict | None:
    """The run's summary (written to summary.json) and its pictures, on rank 0 (None elsewhere).

    The test set is read here, once, on the weights training ends with: with ``train.keep_best``
    the best by the validation metric (``kept``: which step, epoch and value; ``validation``:
    that evaluation's validation numbers), else the last.

    ``train.eval_k=auto`` gives the whole evaluation ``evaluate.budget.SHARE`` of the training
    time (see ``evaluate.budget``); an explicit K runs on every test image.
    """
    t, held = trainer, trainer.held_out
    if not t.dist.is_main:
        return None
    seconds = held.records[-1]["seconds"] if held.records else t.clock.elapsed()
    summary = evaluate.evaluate(t.model, held.test_x, t.cfg.train.eval_k, nll_shift=held.nll_shift, y=held.test_y,
                                budget_seconds=evaluate.budget.SHARE * seconds, progress=progress)  # fmt: skip
    summary.update(
        epochs=t.batches.epoch,
        steps=t.step,
        passes=t.batches.passes,
        stopped_by="early_stop" if t.stopping() else "budget" if t.clock.out_of_time() else "epochs",
        budget_seconds=t.clock.budget,
        skipped_steps=t.skipped_steps,
        rollbacks=t.rollbacks,
        train_seconds=seconds,
        parameters=sum(p.numel() for p in t.model.parameters()),
        processes=t.dist.world,
        global_batch=min(t.cfg.train.batch_size, t.batches.n),
    )
    if held.split == "val":  # which weights the test numbers describe, and their validation numbers
        last = held.records[-1] if held.records else {}
        kept = t.selection.kept() if t.selection is not None and t.selection.best_at is not None else {"weights": "last", "step": last.get("step"), "epoch": last.get("epoch")}
        summary["kept"] = kept
        summary["validation"] = {k[4:]: v for k, v in next((r for r in held.records if r["step"] == kept["step"]), {}).items() if k.startswith("val_")}
    warning = objectives.schedule_warning(t.cfg.objective, t.step)
    if warning:  # a warm-up longer than training: warn, don't fail
        t.warn(warning)
    if t.warnings:
        summary["warnings"] = t.warnings
    runs.write_json(t.run_dir / runs.SUMMARY, summary)
    pictures.save_run_pictures(t.model, t.run_dir, held.test_x, t.cfg.seed, held.columns, held.test_y)
    return summary
