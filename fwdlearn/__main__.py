"""``python -m fwdlearn`` runs the ``fwdlearn`` command."""

import sys

from .cli import main

sys.exit(main())
