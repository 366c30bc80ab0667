"""Trainer, checkpoints and distributed training."""

__all__: list[str] = []
