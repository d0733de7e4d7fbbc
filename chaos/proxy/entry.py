"""A toxic as configured on a proxy: the API-visible record plus its behaviour."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from progressbench.chaos.proxy.toxics import Toxic, ToxicKind
from progressbench.chaos.proxy.types import Direction


@dataclass(eq=False)
class ToxicEntry:
    """One named toxic on one proxy (identity-hashed: one object per toxic).

    ``stream`` is kept exactly as the client sent it (Toxiproxy does), and
    ``direction`` is its parsed value. ``toxic`` holds the attributes and is
    replaced, never mutated, on update; ``generation`` counts updates.
    """

    name: str
    type: str
    stream: str
    direction: Direction
    toxicity: float
    toxic: Toxic
    kind: ToxicKind
    generation: int = 0

    def applies_to(self, direction: Direction) -> bool:
        """Whether this toxic has a stage in the link of ``direction``."""
        return self.kind.both_directions or self.direction is direction

    def attributes(self) -> dict[str, int]:
        values: dict[str, int] = {
            f.name: getattr(self.toxic, f.name)
            for f in dataclasses.fields(self.toxic)  # type: ignore[arg-type]
        }
        return values
