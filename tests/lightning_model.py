"""A tiny Lightning model for the callback tests (a module of its own: ddp_spawn's ranks import it)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from let_core.integrations.lightning import LetLightningCallback

__all__ = ["LetLightningCallback", "Tiny", "fit", "loaders", "torch"]


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(x), y), sync_dist=True)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loaders() -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(data, batch_size=16)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:32], y[:32]), batch_size=16)
    return train, val


def fit(callbacks: list[Any], devices: int = 1, strategy: str = "auto") -> tuple[Tiny, Any]:
    pl.seed_everything(0, verbose=False)
    model = Tiny()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=devices, strategy=strategy,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, deterministic=True, callbacks=callbacks)
    train, val = loaders()
    trainer.fit(model, train, val)
    return model, trainer
