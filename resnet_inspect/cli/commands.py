"""Import every command module so that each registers itself on the app."""
from . import diff, explain, graph, listing, report, summary, tree  # noqa: F401
from . import memory, snapshot  # noqa: F401
