"""Serve the API of whichever heimdex package is first on PYTHONPATH (this checkout or the baseline)
on waitress, for bench_load. Run as a script: `python bench/serve_api.py HOME SECRET THREADS POOL`;
prints the port, then serves until terminated. Uses only what both trees have."""

import sys

import waitress

from heimdex import logs
from heimdex.api.app import create_app
from heimdex.config import Settings
from heimdex.embedded.engine import Engine

if __name__ == "__main__":
    home, secret, threads, pool = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    logs.setup("WARNING")
    engine = Engine(Settings(home=home, database_url=None, jwt_secret=secret, db_pool_size=pool))
    server = waitress.create_server(create_app(engine), host="127.0.0.1", port=0, threads=threads)
    print(server.effective_port, flush=True)
    try:
        server.run()
    finally:
        engine.close()
