"""Errors a user can cause and fix: the CLI prints their message in one line and exits with code 2."""


class UserError(ValueError):
    """Bad input from the user: a model name, a depth, a file, an argument."""


class DataError(UserError):
    """A dataset, archive, image or cache that cannot be used as given."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or does not match the model."""
