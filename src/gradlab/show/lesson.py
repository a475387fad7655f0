"""The lines the course's loops print while they train, printed by a callback, so the LightningModule
stays the lesson's loop and a run prints what the learner's script printed.

- "feedforward" (lesson 13): `Epoch [1/20], Step [5/15], Loss: 0.4123`
- "cnn" (lesson 14): the feed-forward lines, and `Finished Training` when training ends
- "dataloader" (lesson 09): first the Dataset's first sample and `142 36` (samples, steps an epoch), then
  `Epoch: 1/2, Step 5/36| Inputs torch.Size([4, 13]) | Labels torch.Size([4])`
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as L
from torch import Tensor

from gradlab.show.report import say


class LessonLines(L.Callback):
    """Every `every_n_steps` steps of an epoch, the line of the lesson `style` names."""

    def __init__(self, every_n_steps: int = 100,
                 style: Literal["feedforward", "cnn", "dataloader"] = "feedforward"):
        self.every_n_steps = every_n_steps
        self.style = style

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dataset = getattr(trainer.train_dataloader, "dataset", None)  # a DataLoader's (data.loader=dataloader)
        if self.style == "dataloader" and dataset is not None and trainer.current_epoch == 0:
            features, labels = dataset[0]
            say(features, labels)
            say(len(dataset), trainer.num_training_batches)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step = batch_idx + 1
        if step % self.every_n_steps:
            return
        epoch, epochs, steps = trainer.current_epoch + 1, trainer.max_epochs, trainer.num_training_batches
        if self.style == "dataloader":
            inputs, labels = batch
            say(f"Epoch: {epoch}/{epochs}, Step {step}/{steps}| Inputs {inputs.shape} | Labels {labels.shape}")
        else:
            loss: Tensor = outputs["loss"] if isinstance(outputs, dict) else outputs
            say(f"Epoch [{epoch}/{epochs}], Step [{step}/{steps}], Loss: {loss.item():.4f}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.style == "cnn":
            say("Finished Training")
