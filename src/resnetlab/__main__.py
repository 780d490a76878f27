"""``python -m resnetlab``: the same command line as ``resnetlab``."""

from resnetlab.cli import main

raise SystemExit(main())
