"""liponet: Lipschitz neural operators with certified Lipschitz constants and error bounds.

The library never reads config files, prints, or exits; see :mod:`liponet.cli` for the command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
