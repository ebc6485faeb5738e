"""Moved to `heimdex.cloud.service` (the stage service). This name keeps `python -m heimdex.worker`
and `from heimdex.worker import serve` working for one release; use the new module."""

import warnings

from heimdex.cloud.service import EXIT_CONFIG, create_stage_app, main, preload, serve, verify_task_token

__all__ = ["EXIT_CONFIG", "create_stage_app", "main", "preload", "serve", "verify_task_token"]

warnings.warn("heimdex.worker is deprecated; use heimdex.cloud.service", DeprecationWarning, stacklevel=2)

if __name__ == "__main__":
    main()
