"""Errors for bad input: they name the file, the row and the field, and say what was expected.

Every loader and validator in fleetwise raises :class:`InputError` (or a subclass) for input it cannot
use, so that the CLI, the dashboard and batch jobs can show one clear line instead of a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that fleetwise cannot use, located as precisely as the format allows.

    Args:
        message: what is wrong, in the user's terms.
        path: the file (or other source) the input came from.
        row: 1-based data row (header excluded) where the problem is, when known.
        field: the column or key at fault, when known.
        expected: what a valid value looks like.

    >>> str(InputError("negative token count", path="t.csv", row=3, field="input_tokens",
    ...                expected="an integer >= 0"))
    't.csv: row 3: field input_tokens: negative token count (expected an integer >= 0)'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.row = row
        self.field = field
        self.expected = expected
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(str(self.path))
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field {self.field}")
        text = self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return ": ".join([*parts, text])
