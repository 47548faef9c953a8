"""Tests of patchvad.metrics and patchvad.predictions (a package, so basenames stay unique)."""
