"""Moved to `heimdex.vectorstore`; `heimdex.index.orgindex` keeps `python -m heimdex.index.orgindex`
working for one release."""
