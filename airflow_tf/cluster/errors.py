"""The one exception type bad user input raises, so callers can tell it from bugs."""


class SpecError(ValueError):
    """A training setting is invalid. The message names the field and what is allowed."""
