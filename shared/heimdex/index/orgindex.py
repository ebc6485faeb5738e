"""Moved to `heimdex.vectorstore.orgindex`. This name keeps `python -m heimdex.index.orgindex`
working for one release; use `python -m heimdex.vectorstore.orgindex`."""

import warnings

from heimdex.vectorstore.orgindex import main

__all__ = ["main"]

warnings.warn(
    "heimdex.index.orgindex is deprecated; use heimdex.vectorstore.orgindex", DeprecationWarning, stacklevel=2
)

if __name__ == "__main__":
    main()
