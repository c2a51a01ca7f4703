"""``python -m blockzoo.data fetch fashion-mnist`` = ``blockzoo data fetch fashion-mnist`` (see
:mod:`blockzoo.data.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
