"""``python -m aiocontainer``: the same as the ``aiocontainer`` command."""

import sys

from aiocontainer.cli import main

sys.exit(main())
