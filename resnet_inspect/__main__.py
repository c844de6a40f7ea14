"""``python -m resnet_inspect``."""
from .cli import main

main()
