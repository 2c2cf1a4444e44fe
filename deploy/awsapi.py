"""The one place AWS is called: clients, retries, dry-run, clear errors.

* Clients are created lazily, so ``--dry-run`` never creates one and needs no
  credentials. In dry-run every call is printed (``service.Operation`` with
  its key parameters, redacted by the service model's ``sensitive`` flag and
  by name, blobs shown as sizes) and answered by the caller's stand-in.
* Throttling and transient errors are retried by botocore's *standard* retry
  mode (exponential backoff with jitter, at most ``max_attempts`` tries); when
  it gives up, the error is reported clearly (``up`` resumes from the state).
* IAM is eventually consistent: a role created a moment ago may not be
  assumable yet. Only the calls that say so (``retry_on``) get a short extra
  retry here, for exactly the error that means "not yet".
* Missing or rejected credentials become a :class:`DeployError` with a hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    WaiterError,
)
from botocore.model import Shape

from .errors import DeployError
from .validation import operation_model

LOG = logging.getLogger(__name__)
# Calls whose request or response carries key material or secret values:
# botocore's own DEBUG logging (request params, response bodies) is muted
# around them, whatever logging the caller configured.
QUIET_OPERATIONS = frozenset(
    {
        ("secretsmanager", "CreateSecret"),
        ("secretsmanager", "PutSecretValue"),
        ("secretsmanager", "GetSecretValue"),
        ("iot", "CreateKeysAndCertificate"),
    }
)
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "moto", "werkzeug")

# The longest wait between two tries of a call IAM is not ready for.
MAX_CONSISTENCY_DELAY = 10.0

# Module-level so tests can replace them.
_sleep = time.sleep
_monotonic = time.monotonic

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
# Greengrass V1 answers an unknown group id with IdNotFoundException.
NOT_FOUND_CODES = (
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NotFoundException",
    "IdNotFoundException",
)
REDACTED_NAMES = frozenset(
    {"SecretString", "SecretBinary", "ZipFile", "PrivateKey", "certificatePem", "keyPair"}
)
NO_CREDENTIALS_HINT = (
    "configure credentials (aws configure, AWS_PROFILE / --profile, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), or add --dry-run to see the calls without AWS"
)


@contextlib.contextmanager
def quiet_sdk_logging(active: bool = True):
    """Raise the SDK loggers to WARNING for the duration (no request/response bodies)."""
    if not active:
        yield
        return
    saved = {}
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _redact(value: Any, shape: Optional[Shape], name: str = "") -> Any:
    if name in REDACTED_NAMES or (shape is not None and shape.metadata.get("sensitive")):
        if isinstance(value, (bytes, bytearray)):
            return "<{} bytes, sha256 {}>".format(
                len(value), hashlib.sha256(value).hexdigest()[:12]
            )
        return "<redacted>"
    if isinstance(value, (bytes, bytearray)):
        return "<{} bytes>".format(len(value))
    if isinstance(value, Mapping):
        members = getattr(shape, "members", {}) if shape is not None else {}
        if shape is not None and shape.type_name == "map":
            return {k: _redact(v, shape.value) for k, v in value.items()}
        return {k: _redact(v, members.get(k), k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        member = getattr(shape, "member", None)
        return [_redact(v, member) for v in value]
    return value


def describe_call(service: str, operation: str, params: Mapping[str, Any], width: int = 160) -> str:
    """``service.Operation key=value ...`` with secrets and key material redacted."""
    try:
        shape = operation_model(service, operation).input_shape
    except Exception:  # an unknown operation still gets printed, redacted by name
        shape = None
    shown = _redact(dict(params), shape)
    parts = []
    for key, value in shown.items():
        if isinstance(value, str):
            text = " ".join(value.split())  # policy documents arrive pretty-printed
        else:
            text = json.dumps(value, sort_keys=True, default=str)
        if len(text) > width:
            text = text[: width - 3] + "..."
        parts.append("{}={}".format(key, text))
    return "{}.{}{}".format(service, operation, (" " + " ".join(parts)) if parts else "")


Dry = Any  # a stand-in response, or a callable(params) -> response

_LOADER: Any = None


def _shared_loader() -> Any:
    """One botocore model loader per process: service models are parsed once.

    Credentials are not shared: every Api resolves its own.
    """
    global _LOADER
    if _LOADER is None:
        from botocore.loaders import create_loader

        _LOADER = create_loader()
    return _LOADER


class Api:
    """AWS calls for one region, with retries and dry-run."""

    def __init__(
        self,
        region: str,
        *,
        profile: Optional[str] = None,
        dry_run: bool = False,
        out: Callable[[str], None] = print,
        verbose: bool = False,
        session: Any = None,
        clients: Optional[Mapping[str, Any]] = None,
        max_attempts: int = 5,
        consistency_attempts: int = 6,
        base_delay: float = 1.0,
    ) -> None:
        self.region = region
        self.profile = profile
        self.dry_run = dry_run
        self.out = out
        self.verbose = verbose
        self._session = session
        self._clients: Dict[str, Any] = dict(clients or {})
        self.max_attempts = max_attempts  # botocore's total attempts, throttling included
        self.consistency_attempts = consistency_attempts  # for retry_on errors only
        self.base_delay = base_delay
        self.calls: list = []  # (service, operation) made or, in dry-run, printed

    # -- plumbing ---------------------------------------------------------------

    def client(self, service: str) -> Any:
        if self.dry_run:
            raise AssertionError("dry-run must not create AWS clients")
        if service not in self._clients:
            if self._session is None:
                import boto3
                import botocore.session

                try:
                    core = botocore.session.Session(profile=self.profile)
                    core.register_component("data_loader", _shared_loader())
                    self._session = boto3.Session(botocore_session=core)
                except Exception as exc:  # ProfileNotFound and friends
                    raise DeployError("cannot open AWS profile {!r}: {}".format(self.profile, exc))
            self._clients[service] = self._session.client(
                service,
                region_name=self.region,
                config=Config(
                    retries={"mode": "standard", "total_max_attempts": self.max_attempts}
                ),
            )
        return self._clients[service]

    @staticmethod
    def sleep(seconds: float) -> None:
        _sleep(seconds)

    @staticmethod
    def now() -> float:
        return _monotonic()

    def _invoke(
        self,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        retry_on: Iterable[Tuple[str, str]] = (),
    ) -> Dict[str, Any]:
        method = getattr(self.client(service), xform(operation))
        not_yet = tuple(retry_on)
        attempt = 0
        while True:
            attempt += 1
            try:
                with quiet_sdk_logging((service, operation) in QUIET_OPERATIONS):
                    return method(**params)
            except (NoCredentialsError, PartialCredentialsError) as exc:
                raise DeployError(
                    "no usable AWS credentials for {}.{}: {}".format(service, operation, exc),
                    hint=NO_CREDENTIALS_HINT,
                )
            except NoRegionError:
                raise DeployError("no AWS region", hint="pass --region or set AWS_DEFAULT_REGION")
            except EndpointConnectionError as exc:  # botocore has retried it already
                raise DeployError(
                    "cannot reach AWS for {}.{}: {}".format(service, operation, exc),
                    hint="check the network and --region",
                )
            except ClientError as exc:
                code = error_code(exc)
                if code in CREDENTIAL_CODES:
                    raise DeployError(
                        "AWS rejected the credentials for {}.{}: {} {}".format(
                            service, operation, code, error_message(exc)
                        ),
                        hint=NO_CREDENTIALS_HINT,
                    )
                if code in THROTTLE_CODES:  # botocore's standard mode gave up
                    tries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
                    raise DeployError(
                        "AWS kept throttling {}.{} ({}: {}) after {} attempts".format(
                            service, operation, code, error_message(exc), tries
                        ),
                        hint="wait a minute and re-run; up resumes from the state file",
                    )
                eventually = any(
                    code == c and fragment in error_message(exc) for c, fragment in not_yet
                )
                if not eventually or attempt >= self.consistency_attempts:
                    raise
            delay = min(self.base_delay * (2 ** (attempt - 1)), MAX_CONSISTENCY_DELAY)
            if self.verbose:
                self.out(
                    "  {}.{}: not ready yet, retrying in {:g}s".format(service, operation, delay)
                )
            self.sleep(delay)

    # -- the API the deployers use ---------------------------------------------

    def call(
        self,
        service: str,
        operation: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        dry: Dry = None,
        retry_on: Iterable[Tuple[str, str]] = (),
    ) -> Dict[str, Any]:
        params = dict(params or {})
        self.calls.append((service, operation))
        LOG.debug(
            "%s%s", "[dry-run] " if self.dry_run else "", describe_call(service, operation, params)
        )
        if self.dry_run:
            self.out("  [dry-run] " + describe_call(service, operation, params))
            result = dry(params) if callable(dry) else dry
            return result if result is not None else {}
        if self.verbose:
            self.out("  " + describe_call(service, operation, params))
        return self._invoke(service, operation, params, retry_on)

    def find(
        self,
        service: str,
        operation: str,
        params: Optional[Mapping[str, Any]] = None,
        *,
        dry: Dry = None,
        missing: Iterable[str] = NOT_FOUND_CODES,
    ) -> Optional[Dict[str, Any]]:
        """A read that answers ``None`` when the resource does not exist.

        In dry-run the stand-in decides (``None``: assume it does not exist).
        """
        params = dict(params or {})
        if self.dry_run:
            self.calls.append((service, operation))
            LOG.debug("[dry-run] %s", describe_call(service, operation, params))
            self.out("  [dry-run] " + describe_call(service, operation, params))
            return dry(params) if callable(dry) else dry
        try:
            return self.call(service, operation, params)
        except ClientError as exc:
            if error_code(exc) in tuple(missing):
                return None
            raise

    def wait(self, service: str, waiter: str, params: Mapping[str, Any], delay: int = 2) -> None:
        self.calls.append((service, "wait:" + waiter))
        if self.dry_run:
            shown = " ".join("{}={}".format(k, v) for k, v in params.items())
            self.out("  [dry-run] wait {}.{} {}".format(service, waiter, shown))
            return
        try:
            self.client(service).get_waiter(waiter).wait(
                WaiterConfig={"Delay": delay, "MaxAttempts": 60}, **params
            )
        except WaiterError as exc:
            raise DeployError("{} did not become ready: {}".format(params, exc))


def xform(operation: str) -> str:
    """``CreateKeysAndCertificate`` -> ``create_keys_and_certificate`` (botocore's rule)."""
    from botocore import xform_name

    return xform_name(operation)
