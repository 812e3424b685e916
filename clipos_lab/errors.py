"""Errors about models and weights, shared by the backbone and the shipped-asset checks."""


class BackboneError(RuntimeError):
    """A model that cannot be loaded or used, with what was tried and what to do."""


class WeightsNotFoundError(BackboneError, FileNotFoundError):
    """No weights could be found from any of the sources that were tried."""
