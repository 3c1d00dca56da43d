"""Where the server finds a model family's code: `models.<family>.<module>:<name>` strings, and only those.

config.pbtxt names a handler class and the environment may name an admission check this way. The code is imported
from this installed package, never from the model repository, so a repository cannot bring code with it.
"""
from importlib import import_module

from .errors import RepositoryError

ALLOWED_PREFIX = "models."


def resolve(path: str, what: str):
    """The object `path` names; a RepositoryError saying what was expected for anything else."""
    module_name, _, name = path.partition(":")
    if not module_name.startswith(ALLOWED_PREFIX) or not name:
        raise RepositoryError(f"{what} {path!r}: expected '{ALLOWED_PREFIX}<family>.<module>:<name>'")
    try:
        return getattr(import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise RepositoryError(f"{what} {path!r} cannot be imported: {e}") from None
