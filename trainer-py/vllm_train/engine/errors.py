"""Refusals of the engine worker, each carrying the gRPC status it is answered with.

The engine's logic raises these; only the gRPC edge (:mod:`vllm_train.engine.service`) turns them into statuses, so
the logic stays free of gRPC and a test can assert the precise refusal with plain ``pytest.raises``. The status names
are those of ``grpc.StatusCode``; the message is written for the person who has to act on it.
"""

from __future__ import annotations


class EngineError(Exception):
    """A request the engine refuses. ``status`` names the ``grpc.StatusCode`` it is answered with."""

    status = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(EngineError):
    """The request itself is malformed or asks for something no engine supports (bad name, DoRA adapter...)."""

    status = "INVALID_ARGUMENT"


class NotFound(EngineError):
    """What the request names does not exist: an adapter that is not loaded, a directory or file that is missing."""

    status = "NOT_FOUND"


class AlreadyExists(EngineError):
    """The adapter name is loaded, being loaded, or was used for other content: names are versions, never reused."""

    status = "ALREADY_EXISTS"


class FailedPrecondition(EngineError):
    """Well-formed, but not possible in this engine's state or configuration (digest mismatch, other base model,
    rank above the engine's maximum, adapter slots full, adapter still loading or being unloaded)."""

    status = "FAILED_PRECONDITION"


class PermissionDenied(EngineError):
    """The adapter URI points outside the engine's adapter root (also through ``..`` or a symlink)."""

    status = "PERMISSION_DENIED"


class Unavailable(EngineError):
    """The engine cannot serve right now (model still loading, shutting down); retrying later may succeed."""

    status = "UNAVAILABLE"
