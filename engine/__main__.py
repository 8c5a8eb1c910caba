"""``python -m engine``: the same as the ``tl-engine`` command."""

import sys

from engine.app.cli import main

sys.exit(main())
