"""``python -m sunspec`` runs ``sunspec-recv``."""

import sys

from .cli import recv_main

sys.exit(recv_main())
