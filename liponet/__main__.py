"""``python -m liponet``: the same as the ``liponet`` command."""

import sys

from .cli import main

sys.exit(main())
