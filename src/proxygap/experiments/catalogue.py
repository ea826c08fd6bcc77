"""Imports every experiment module so each registers itself with the runner."""

from proxygap.experiments import kl_prior, loopholes, overoptimization, probe, tampering  # noqa: F401
