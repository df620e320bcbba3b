"""`python -m harness` runs the `emergence` command (also under `accelerate launch -m harness`)."""
import sys

from harness.cli import main

sys.exit(main())
