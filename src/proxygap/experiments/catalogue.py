"""Imports every experiment module so each registers itself with the runner."""

from proxygap.experiments import overoptimization, probe  # noqa: F401
