"""``python -m deploy``: the on-robot runner (:func:`deploy.cli.main`)."""

import sys

from deploy.cli import main

sys.exit(main())
