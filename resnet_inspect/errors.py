"""Errors that mean "the user asked for something that cannot work" (CLI exit code 2)."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input: an unknown name, a malformed size, an input too small for the network...

    The message is one paragraph meant for the user; the CLI prints it and exits with code 2.
    """
