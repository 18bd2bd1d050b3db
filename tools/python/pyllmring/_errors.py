"""Exceptions: openai-python's names and hierarchy, LiteLLM's three extras,
and llmring's stable codes on every one (``.code``: "rate_limited",
"timeout", ...), each made from a request's real outcome."""

from __future__ import annotations

import json

__all__ = [
    "OpenAIError", "LLMRingError", "APIError", "APIConnectionError", "APITimeoutError",
    "APIResponseValidationError", "APIStatusError", "BadRequestError",
    "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError",
    "UnprocessableEntityError", "RateLimitError", "InternalServerError",
    "ContextWindowExceededError", "InsufficientQuotaError", "ServiceUnavailableError",
    "ClientClosedError",
]


class OpenAIError(Exception):
    """The root, as in openai-python."""


LLMRingError = OpenAIError


class APIError(OpenAIError):
    """A request that failed. ``code`` is llmring's stable name of the
    outcome (lr_error_name), ``message`` the engine's explanation, ``body``
    the parsed error body when the server sent JSON (else its text or
    None)."""

    status_code: int | None = None

    def __init__(self, message, *, code=None, body=None, status_code=None, request_id=None,
                 attempts=0, provider=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.body = body
        if status_code is not None or not hasattr(type(self), "status_code"):
            self.status_code = status_code
        self.request_id = request_id
        self.attempts = attempts
        self.provider = provider
        self.retry_after = retry_after
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            err = {}
        # openai-python's fields, read from the provider's error object.
        self.type = err.get("type")
        self.param = err.get("param")
        self.provider_code = err.get("code")

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls, message, state):
    e = cls.__new__(cls)
    Exception.__init__(e, message)
    e.__dict__.update(state)
    return e


class APIConnectionError(APIError):
    """No usable response: connect failure, reset, TLS, malformed reply."""


class APITimeoutError(APIConnectionError):
    """A deadline passed (connect, idle or total)."""


class APIResponseValidationError(APIError):
    """The response arrived but could not be read (too large, not the
    protocol)."""


class APIStatusError(APIError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    pass


class ContextWindowExceededError(BadRequestError):
    """The prompt and max_tokens do not fit the model (LiteLLM's name)."""


class InsufficientQuotaError(RateLimitError):
    """The account's quota is spent: retrying will not help."""


class ServiceUnavailableError(InternalServerError):
    """503, or Anthropic's 529 overloaded (LiteLLM's name)."""


class ClientClosedError(APIError):
    """The request was cancelled because its client was closed."""


_BY_STATUS = {400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
              404: NotFoundError, 409: ConflictError, 422: UnprocessableEntityError,
              429: RateLimitError}

# lr_error_name -> class, where the code alone decides.
_BY_CODE = {
    "invalid_input": BadRequestError,
    "duplicate_custom_id": BadRequestError,
    "auth_error": AuthenticationError,
    "permission_denied": PermissionDeniedError,
    "not_found": NotFoundError,
    "context_length_exceeded": ContextWindowExceededError,
    "rate_limited": RateLimitError,
    "insufficient_quota": InsufficientQuotaError,
    "overloaded": ServiceUnavailableError,
    "server_error": InternalServerError,
    "connect_error": APIConnectionError,
    "connection_reset": APIConnectionError,
    "timeout": APITimeoutError,
    "protocol_error": APIConnectionError,
    "response_too_large": APIResponseValidationError,
    "tls_untrusted": APIConnectionError,
    "tls_name_mismatch": APIConnectionError,
    "tls_expired": APIConnectionError,
    "tls_handshake": APIConnectionError,
}


def _error_body(h):
    text = h.body
    if text is None:
        return None
    if h.body_is_json:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def error_class(code, status):
    """The exception class for an outcome: the code first, then the status."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        if cls is BadRequestError and status in (409, 422):
            return _BY_STATUS[status]  # providers call these invalid requests too
        return cls
    if status:
        if status >= 500:
            return InternalServerError
        return _BY_STATUS.get(status, APIStatusError)
    return APIError


def from_handle(h, closed=False):
    """The exception for a failed handle (its result read once here)."""
    code = h.error_name
    status = h.http_status or None
    cls = ClientClosedError if closed and code == "cancelled" else error_class(code, status)
    message = h.error_message or code
    if status and str(status) not in message:
        message = f"Error code: {status} - {message}"
    return cls(message, code=code, body=_error_body(h), status_code=status,
               request_id=h.request_id, attempts=h.attempts, provider=h.provider,
               retry_after=h.retry_after)
