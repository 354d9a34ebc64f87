"""Row-level problems: a rejected row carries a message key and parameters, never a bare string."""

from __future__ import annotations


class RowError(Exception):
    """One row cannot be used. `key` is a catalog key (`data.reject.<reason>`), `params` fill it in."""

    __slots__ = ("key", "params", "reason")

    def __init__(self, reason: str, **params):
        super().__init__(reason)
        self.reason = reason
        self.key = "data.reject." + reason
        self.params = params

    def __repr__(self) -> str:
        return f"RowError({self.reason!r}, {self.params!r})"

    def __reduce__(self):  # pickled with its parameters (the default would keep only the reason)
        return _row_error, (self.reason, self.params)


def _row_error(reason: str, params: dict) -> RowError:
    return RowError(reason, **params)
