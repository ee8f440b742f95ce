#!/usr/bin/env python3
"""``tools/kube/lab``'s entry point: the command line of the ``kubelab`` package beside
this file (``tools/kube/kubelab/``, where the Python API lives too)."""

import sys

from kubelab.cli import main  # this file's directory is sys.path[0]

if __name__ == "__main__":
    sys.exit(main())
