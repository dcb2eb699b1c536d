"""Training callbacks of cellseg's own."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class ValidateOnStop(Callback):
    """Stop through ``trainer.should_stop`` at ``max_steps`` so a last validation runs.

    Lightning validates when a run is stopped early (``should_stop``) but not when it hits
    ``max_steps`` in the middle of an epoch; this makes the last steps count for
    ``best.ckpt`` and guarantees that even a very short run leaves one.
    """

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
