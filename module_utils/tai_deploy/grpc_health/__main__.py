# Copyright: tai-deploy contributors
"""``python -m tai_deploy.grpc_health``: the command line (cli.py)."""

import sys

from .cli import main

sys.exit(main())
