"""Errors a user can cause and fix: the CLI prints their message in one line and exits with code 2."""


def first_line(error: BaseException) -> str:
    """The first line of a library's error (export and ONNX Runtime errors run to pages), else its type's name."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class UserError(ValueError):
    """Bad input from the user: a model name, a depth, a file, an argument."""


class DataError(UserError):
    """A dataset, archive, image or cache that cannot be used as given."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or does not match the model."""
