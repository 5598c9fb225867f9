"""Frozen entry point of batch inference (`hemaview-infer`)."""

import multiprocessing
import sys

from inference.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
