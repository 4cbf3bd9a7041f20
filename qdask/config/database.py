"""The target Qserv database: its name, sky partitioning, director-index mode and default character set."""

from __future__ import annotations

import math

from pydantic import Field, field_validator, model_validator

from qdask.config.base import ConfigModel
from qdask.config.names import MAX_DB_NAME, QueryableName, check_charset, check_length

__all__ = ["DatabaseConfig", "Partitioning", "check_overlap"]


class Partitioning(ConfigModel):
    """Qserv's sky layout: stripes, sub-stripes per stripe, and overlap radius in degrees."""

    num_stripes: int = Field(gt=0, le=32767, description="stripes; <= 32767 keeps chunk ids in int32")
    num_sub_stripes: int = Field(gt=0, le=32767, description="sub-stripes per stripe")
    overlap: float = Field(ge=0, le=10)

    @property
    def sub_stripe_height(self) -> float:
        """Height of one sub-stripe in degrees; the overlap may not exceed it (Qserv's rule)."""
        return 180.0 / (self.num_stripes * self.num_sub_stripes)

    @model_validator(mode="after")
    def _overlap_fits(self) -> Partitioning:
        check_overlap(self.overlap, self)
        return self


def check_overlap(overlap: float, layout: Partitioning) -> None:
    """Qserv copies overlap rows only into neighbouring sub-chunks, so overlap ≤ the sub-stripe height."""
    if not math.isfinite(overlap) or overlap < 0 or overlap > 10:
        raise ValueError(f"overlap must be between 0 and 10 degrees, got {overlap}")
    h = layout.sub_stripe_height
    if overlap > h:
        raise ValueError(
            f"overlap {overlap} exceeds the sub-stripe height 180/({layout.num_stripes}*"
            f"{layout.num_sub_stripes}) = {h:.6g} degrees; Qserv requires overlap <= sub-stripe height"
        )


class DatabaseConfig(ConfigModel):
    """The target Qserv database: its name, layout, director-index mode and default character set."""

    name: QueryableName
    partitioning: Partitioning
    auto_build_director_index: bool = True
    charset_name: str = "latin1"
    collation_name: str = "latin1_general_ci"

    @field_validator("name")
    @classmethod
    def _name_length(cls, v: str) -> str:
        return check_length(
            v, MAX_DB_NAME, "database name", "Qserv's '<db>_EmptyChunks' table must fit in 64"
        )

    @model_validator(mode="after")
    def _charset(self) -> DatabaseConfig:
        check_charset(self.charset_name, self.collation_name)
        return self
