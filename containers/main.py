"""Cloud Run entry point of the probe stage: one task per request, from Cloud Tasks."""

import os

from heimdex.worker import serve

if __name__ == "__main__":
    serve("probe", host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
