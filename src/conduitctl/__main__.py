"""`python -m conduitctl` runs the CLI (the daemon is started this way in the background)."""

import sys

from conduitctl.entry import main

sys.exit(main())
