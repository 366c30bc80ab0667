"""``liponet info``: versions, devices and registered names."""

from __future__ import annotations

import argparse
import platform

import torch

HELP = "print the environment (versions, devices) and the registered models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print one ``key: value`` line per fact."""
    import deel.torchlip

    from .. import __version__
    from ..models import available_models
    from ..train import available_datasets

    facts = {
        "liponet": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "deel-torchlip": deel.torchlip.__version__,
        "cuda available": str(torch.cuda.is_available()),
        "devices": ", ".join(
            ["cpu"] + [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        ),
        "threads": str(torch.get_num_threads()),
        "models": ", ".join(available_models()),
        "datasets (liponet train)": ", ".join(available_datasets()),
    }
    for key, value in facts.items():
        print(f"{key}: {value}")
    return 0
