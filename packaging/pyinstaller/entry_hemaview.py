"""Frozen entry point of the viewer (`hemaview`)."""

import multiprocessing
import sys

from viewer.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
