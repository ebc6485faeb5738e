"""What a stage function receives: the asset, settings, blob stores, the process's models and, for a
segmented stage, which time segment of the media it works on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from heimdex.config import Settings
from heimdex.core.graph import FIRST, STAGES, task_key
from heimdex.core.storage import DerivedStore, SourceStore, read_json, write_json
from heimdex.domain import AssetRef
from heimdex.models import Models
from heimdex.vectorstore.db import Database


@dataclass
class StageContext:
    ref: AssetRef
    settings: Settings
    derived: DerivedStore
    sources: SourceStore
    models: Models
    db: Database | None  # None in segment worker processes, which never touch the database
    part: int | None = None  # the time segment of a segmented stage's task

    def output_key(self, stage: str, part: int | None = None) -> str:
        return self.ref.derived_key(f"{task_key(stage, part)}.json")

    def _part_of(self, stage: str) -> int | None:
        return self.part if STAGES[stage].segmented else None

    def read_output(self, stage: str) -> Any:
        """A stage's output; for a segmented stage, the part of this task's segment."""
        return read_json(self.derived, self.output_key(stage, self._part_of(stage)))

    def write_output(self, stage: str, doc: dict[str, Any]) -> None:
        write_json(self.derived, self.output_key(stage, self._part_of(stage)), doc)

    def read_parts(self, stage: str) -> list[Any]:
        """Every part of a segmented stage's output, in time order (one for unsegmented media)."""
        if len(self.segments) == 1:
            return [read_json(self.derived, self.output_key(stage))]
        return [read_json(self.derived, self.output_key(stage, i)) for i in range(len(self.segments))]

    @cached_property
    def segments(self) -> list[tuple[float, float]]:
        """The segment plan the first stage wrote: [(start, end), ...] covering the media."""
        probe = read_json(self.derived, self.output_key(FIRST))
        return [(float(a), float(b)) for a, b in probe.get("segments") or [(0.0, probe["duration"])]]

    @property
    def segment(self) -> tuple[float, float] | None:
        """This task's segment, or None when the stage runs over the whole media."""
        return None if self.part is None else self.segments[self.part]

    @property
    def last_segment(self) -> bool:
        """Whether this task reaches the end of the media (the last segment, or the whole media)."""
        return self.part is None or self.part == len(self.segments) - 1
