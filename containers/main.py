"""Cloud Run entry point of every stage image: the stage it was built for ($STAGE),
one task per request, from Cloud Tasks. A model baked in at build time is named in model.env."""

import os
from pathlib import Path

from heimdex.cloud.service import serve

if __name__ == "__main__":
    baked = Path(__file__).with_name("model.env")
    if baked.is_file():  # MODEL_ENV=/models/<stage>, unless the service sets that variable itself
        name, _, value = baked.read_text().strip().partition("=")
        os.environ.setdefault(name, value)
    serve(os.environ["STAGE"], host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
