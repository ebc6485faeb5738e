"""Cloud Run entry point of the shots stage: one task per request, from Cloud Tasks."""

import os

from heimdex.worker import serve

if __name__ == "__main__":
    serve("shots", host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
