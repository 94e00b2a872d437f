"""A tiny BERT and its data for the Transformers callback tests (imported when they run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers

from let_core.integrations.transformers import LetTrainerCallback

__all__ = ["LetTrainerCallback", "Pairs", "torch", "train"]


class Pairs(torch.utils.data.Dataset):  # type: ignore[misc]
    """Label 1 when token 7 occurs: learnable, fixed by a seed."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 20, (n, 8), generator=generator)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long),
                "labels": self.labels[i]}


def train(tmp_path: Path, callbacks: list[Any]) -> tuple[Any, Any]:
    transformers.set_seed(0)
    config = transformers.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
        report_to="none", use_cpu=True, seed=0, data_seed=0, disable_tqdm=True, learning_rate=1e-3)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Pairs(32, 1), eval_dataset=Pairs(16, 2),
                                   callbacks=callbacks)
    trainer.train()
    return trainer, model
