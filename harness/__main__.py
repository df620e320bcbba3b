"""`python -m harness` runs the `emergence` command (also under `accelerate launch -m harness`)."""
import sys

from harness.cli.main import main

sys.exit(main())
