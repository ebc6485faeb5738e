"""What a stage function receives: the asset, settings, blob stores and the process's models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from heimdex.adapters.blobs import DerivedStore, SourceStore, read_json, write_json
from heimdex.config import Settings
from heimdex.domain import AssetRef
from heimdex.index.db import Database
from heimdex.models import Models


@dataclass
class StageContext:
    ref: AssetRef
    settings: Settings
    derived: DerivedStore
    sources: SourceStore
    models: Models
    db: Database

    def output_key(self, stage: str) -> str:
        return self.ref.derived_key(f"{stage}.json")

    def read_output(self, stage: str) -> Any:
        return read_json(self.derived, self.output_key(stage))

    def write_output(self, stage: str, doc: dict[str, Any]) -> None:
        write_json(self.derived, self.output_key(stage), doc)
