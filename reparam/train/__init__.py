"""Training: the loop, its parts, and the entry points.

- ``loop``: :class:`Trainer`, one short loop whose whole state is ``state_dict()``;
- ``parts``, ``batches``, ``held_out``, ``average``, ``threads``: the pieces of training
  state, each owning its state and its entries of the checkpoint (``reparam.checkpoint``);
- ``finish``: the end of a run (final evaluation, summary.json, pictures);
- ``run``: :func:`train` and :func:`resume`, which load data, build the model, join
  torchrun's process group and write the run folder;
- ``members``, ``ensemble``, ``stacked``: :func:`train_many`, lists over the seed and one key
  (``seed=[0,1,2]``), their members trained as one stack where their shapes agree;
- ``selection``: ``train.keep_best`` and ``train.early_stop`` on ``data.validation``'s rows;
- ``sweep``: ``reparam sweep`` (``reparam.train.sweep.sweep`` in Python), a search on Optuna;
- ``tracking``: ``train.log``, the TensorBoard, MLflow and W&B trackers on the trainer's hook;
- ``command``: ``reparam train`` and ``reparam sweep``.
"""

from __future__ import annotations

from ..errors import Diverged, Interrupted
from .ensemble import resume_any as resume
from .ensemble import train_many
from .loop import Hook, Trainer
from .run import train

__all__ = ["Diverged", "Hook", "Interrupted", "Trainer", "resume", "train", "train_many"]
