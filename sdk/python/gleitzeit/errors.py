"""Errors of Gleitzeit as Python exceptions.

Every error on the wire is an object ``{"code", "message", "hint"?, "retryable", "details"?}``
(``docs/protocol.md`` §9). :class:`GleitzeitError` carries the same fields; ``str(err)``
reads ``GZnnnn: message (hint: ...)``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

__all__ = ["GleitzeitError"]


class GleitzeitError(Exception):
    """An error with a Gleitzeit code (``GZnnnn``)."""

    def __init__(
        self,
        code: str,
        message: str,
        hint: Optional[str] = None,
        retryable: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.hint = hint
        self.retryable = bool(retryable)
        self.details = details

    @classmethod
    def from_wire(cls, error: Any) -> "GleitzeitError":
        """Builds the exception from an error object as it came over the wire.

        Anything that is not an object with a ``code`` is wrapped as GZ8001 (a bug somewhere).
        """
        if isinstance(error, GleitzeitError):
            return error
        if isinstance(error, Mapping) and isinstance(error.get("code"), str):
            return cls(
                error["code"],
                str(error.get("message", "")),
                hint=error.get("hint"),
                retryable=bool(error.get("retryable", False)),
                details=error.get("details"),
            )
        return cls("GZ8001", "malformed error object: %r" % (error,))

    def to_wire(self) -> Dict[str, Any]:
        """The error object as sent on the wire (``hint`` and ``details`` only when set)."""
        out: Dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.hint:
            out["hint"] = self.hint
        if self.details is not None:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        text = "%s: %s" % (self.code, self.message)
        if self.hint:
            text += " (hint: %s)" % self.hint
        return text

    def __repr__(self) -> str:
        return "GleitzeitError(%r, %r, hint=%r, retryable=%r)" % (
            self.code,
            self.message,
            self.hint,
            self.retryable,
        )

    def __reduce__(self):  # keep the fields when pickled (e.g. across processes)
        return (self.__class__, (self.code, self.message, self.hint, self.retryable, self.details))
