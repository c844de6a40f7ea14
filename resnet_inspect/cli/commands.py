"""Import every command module so that each registers itself on the app."""
from . import listing, summary  # noqa: F401
