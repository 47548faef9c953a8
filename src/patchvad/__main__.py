"""``python -m patchvad`` (also what ``torchrun -m patchvad`` runs)."""

import sys

from patchvad.cli import main

sys.exit(main())
