"""ServiceNow's answers: the error envelope, the common errors, and log-safe paths."""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple

# (status, JSON payload or None, extra headers)
Response = Tuple[int, Optional[Dict[str, Any]], Dict[str, str]]

_SECRET_PARAM_RE = re.compile(
    r"(?i)((?:^|[?&;])[^=&;]*(?:pass|secret|token|auth|api_?key|session)[^=&;]*=)[^&;]*"
)


def error_envelope(message: str, detail: Optional[str]) -> Dict[str, Any]:
    """ServiceNow's error body."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def not_found() -> Response:
    return (
        404,
        error_envelope(
            "No Record found",
            "Records matching query not found. Check query parameter or offset parameter",
        ),
        {},
    )


def unauthenticated() -> Response:
    return (
        401,
        error_envelope("User Not Authenticated", "Required to provide Auth information"),
        {"WWW-Authenticate": 'Basic realm="Service-now"'},
    )


def method_not_supported(method: str) -> Response:
    return (
        405,
        error_envelope("Method not Supported", f"{method} method not supported for API"),
        {},
    )


def bad_request(message: str, detail: Optional[str] = None) -> Response:
    return 400, error_envelope(message, detail), {}


def redact_path(path: str) -> str:
    """``path`` with the values of secret-looking query parameters replaced by ``***``."""
    return _SECRET_PARAM_RE.sub(r"\1***", path)
