"""`python -m agentgate …` runs the CLI."""

import sys

from agentgate.cli import main

sys.exit(main())
