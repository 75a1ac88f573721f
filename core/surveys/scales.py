"""A question's scale ("1-5", "0-10", "yes/no") and the weight of each of its scores."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from posventa.core.errors import ValidationError

MIN_WEIGHT = -100
MAX_WEIGHT = 100
YES_NO = "yes/no"
#: A numeric scale has at most 11 points: that is what fits as buttons in a chat.
MAX_POINTS = 11
_RANGE = re.compile(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$")


@dataclass(frozen=True, slots=True)
class Scale:
    """The scores a question accepts, in order. Scores are strings ("4", "yes")."""

    spec: str
    scores: tuple[str, ...]
    low: int | None = None
    high: int | None = None

    @property
    def numeric(self) -> bool:
        return self.low is not None

    @classmethod
    def parse(cls, spec: Any, *, field: str = "scale") -> Scale:
        if not isinstance(spec, str) or not spec.strip():
            raise ValidationError('scale is required: "1-5", "0-10" or "yes/no"', field=field)
        text = spec.strip().lower()
        if text in (YES_NO, "yes-no", "yesno"):
            return cls(YES_NO, ("yes", "no"))
        m = _RANGE.match(text)
        if not m:
            raise ValidationError(f'scale {spec!r} is not understood: use "1-5", "0-10" (any range within 0-10) '
                                  'or "yes/no"', field=field)
        low, high = int(m[1]), int(m[2])
        if not (0 <= low < high <= 10) or high - low + 1 > MAX_POINTS:
            raise ValidationError(f"scale {spec!r} must go from a lower to a higher number within 0-10", field=field)
        return cls(f"{low}-{high}", tuple(str(n) for n in range(low, high + 1)), low, high)

    def validate_weights(self, weights: Any, *, field: str = "weights") -> dict[str, int]:
        """Every score needs a weight in -100..100. Accepts a mapping score → weight or
        a list in scale order; returns the mapping with canonical string keys."""
        if isinstance(weights, Sequence) and not isinstance(weights, str | bytes):
            if len(weights) != len(self.scores):
                raise ValidationError(f"weights lists {len(weights)} values but scale {self.spec} has "
                                      f"{len(self.scores)} scores ({', '.join(self.scores)})", field=field)
            weights = dict(zip(self.scores, weights, strict=True))
        if not isinstance(weights, Mapping):
            raise ValidationError("weights must map each score to a weight, e.g. {\"1\": -100, ..., \"5\": 100}",
                                  field=field)
        given = {str(k).strip().lower(): v for k, v in weights.items()}
        extra = [k for k in given if k not in self.scores]
        if extra:
            raise ValidationError(f"score {extra[0]!r} is not on the {self.spec} scale ({', '.join(self.scores)})",
                                  field=field)
        out: dict[str, int] = {}
        for score in self.scores:
            if score not in given:
                raise ValidationError(f"the weight for score {score} is missing: every score of the {self.spec} "
                                      f"scale needs a weight from {MIN_WEIGHT} to {MAX_WEIGHT}", field=field)
            w = given[score]
            if isinstance(w, float) and w.is_integer():
                w = int(w)
            if isinstance(w, bool) or not isinstance(w, int):
                raise ValidationError(f"the weight for score {score} must be a whole number, got {w!r}", field=field)
            if not MIN_WEIGHT <= w <= MAX_WEIGHT:
                raise ValidationError(f"the weight for score {score} is {w}; weights go from {MIN_WEIGHT} to "
                                      f"{MAX_WEIGHT}", field=field)
            out[score] = w
        return out
