"""`python -m bot` is `redfix-bot`."""

import sys

from bot.cli import main

sys.exit(main())
