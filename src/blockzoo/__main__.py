"""``python -m blockzoo ...`` = the ``blockzoo`` command (see :mod:`blockzoo.cli`)."""

import sys

from blockzoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
