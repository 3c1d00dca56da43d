"""Errors that carry their protocol status, so each adapter maps them the same way.

A client's mistake is an `InferenceError` subclass and becomes a 4xx / matching gRPC code with the
message as is. Anything else reaching an adapter is our fault: a 500 / INTERNAL with a short message,
never a traceback (the traceback goes to the server log).
"""
import grpc


class InferenceError(Exception):
    """Base class: `http_status` and `grpc_code` say how each protocol reports it."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(InferenceError):
    """The request is malformed or does not match the model's signature (400 / INVALID_ARGUMENT)."""


class ModelNotFound(InferenceError):
    """No such model, or no such version of it is served (404 / NOT_FOUND)."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class ModelNotReady(InferenceError):
    """The model exists but cannot take requests now (503 / UNAVAILABLE); retrying later may work."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE


class Overloaded(InferenceError):
    """The model's queue is full (503 / RESOURCE_EXHAUSTED); the client should back off and retry."""

    http_status = 503
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(InferenceError):
    """Authentication is on and the request carries no valid token (401 / UNAUTHENTICATED)."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class NotOffered(InferenceError):
    """A call of an extension this server does not offer (400 / UNIMPLEMENTED)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class RepositoryError(Exception):
    """The model repository on disk is invalid: raised at load time, names the file and the field."""
