"""Imports every experiment module so each registers itself with the runner."""

from proxygap.experiments import overoptimization, probe  # noqa: F401
from proxygap.experiments import loopholes  # noqa: F401
from proxygap.experiments import tampering  # noqa: F401
from proxygap.experiments import kl_prior  # noqa: F401
