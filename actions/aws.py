"""Turn botocore failures into the typed errors of actions.errors, each with a sentence to act on."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from actions.errors import (AccessDenied, AwsError, EdgeConsoleError, NameConflict, NotFound,
                            QuotaExceeded, Throttled)

ACCESS = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
          "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
          "SignatureDoesNotMatch", "InvalidAccessKeyId", "UnauthorizedException", "Forbidden", "403"}
THROTTLE = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
            "SlowDown", "ProvisionedThroughputExceededException", "RequestThrottled"}
QUOTA = {"LimitExceeded", "LimitExceededException", "ServiceQuotaExceededException", "InstanceLimitExceeded",
         "VcpuLimitExceeded", "TooManyBuckets", "ResourceLimitExceeded", "MaxSpotInstanceCountExceeded",
         "AddressLimitExceeded"}
CONFLICT = {"EntityAlreadyExists", "BucketAlreadyExists", "ResourceAlreadyExistsException",
            "ConflictException", "ResourceInUseException", "InvalidGroup.Duplicate", "ResourceInUse",
            "DuplicateRequest"}
MISSING = {"NoSuchEntity", "NoSuchBucket", "NoSuchKey", "ResourceNotFoundException", "ResourceNotFound",
           "NotFound", "404", "InvalidInstanceID.NotFound", "ParameterNotFound", "InvalidAMIID.NotFound",
           "InvalidInstanceId", "InvocationDoesNotExist", "NoSuchTagSet"}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, doing: str) -> EdgeConsoleError:
    """Map an exception raised while `doing` something (e.g. "create the bucket x") to a typed error.

    Args:
        exc: a botocore ClientError, a botocore credentials/connection error, or an EdgeConsoleError
            (returned unchanged).
        doing: what was being done, as a verb phrase, used in the message.

    Returns:
        The typed error to raise; its `str()` is one sentence that says what to do.
    """
    if isinstance(exc, EdgeConsoleError):
        return exc
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return AccessDenied(f"Could not {doing}: no AWS credentials found; run `aws configure` or pass --profile.")
    if isinstance(exc, bx.EndpointConnectionError):
        return AwsError(f"Could not {doing}: the endpoint cannot be reached ({exc.kwargs.get('endpoint_url')}); "
                        "check the network, the region, or that the sandbox is running.")
    code = error_code(exc)
    detail = getattr(exc, "response", {}).get("Error", {}).get("Message", "") if code else str(exc)
    detail = " ".join(str(detail).split())[:300]
    if code in ACCESS:
        return AccessDenied(f"Could not {doing}: access denied ({code}: {detail}); grant that permission "
                            "to your identity, or use credentials that have it.")
    if code in THROTTLE:
        return Throttled(f"Could not {doing}: AWS is throttling requests ({code}) even after retries; "
                         "wait a minute and run it again.")
    if code in QUOTA:
        return QuotaExceeded(f"Could not {doing}: a quota is reached ({code}: {detail}); remove unused "
                             "resources or request a higher quota in Service Quotas.")
    if code in CONFLICT:
        return NameConflict(f"Could not {doing}: the name is taken ({code}: {detail}); choose another "
                            "name or remove the existing resource.")
    if code in MISSING or code.endswith(".NotFound") or code.startswith("NoSuch"):
        return NotFound(f"Could not {doing}: it does not exist ({code}: {detail}); create it first "
                        "(edge-console setup apply) or check the name and region.")
    if code:
        return AwsError(f"Could not {doing}: {code}: {detail}")
    return AwsError(f"Could not {doing}: {type(exc).__name__}: {detail}")


@contextmanager
def aws_call(doing: str) -> Iterator[None]:
    """Context manager: any botocore failure inside becomes the typed error for `doing`."""
    try:
        yield
    except EdgeConsoleError:
        raise
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.parsers import ResponseParserError

        # An unparsable answer (e.g. an HTML 500 page) is not a BotoCoreError, but is AWS's failure too.
        if isinstance(exc, (ClientError, BotoCoreError, ResponseParserError)):
            raise translate(exc, doing) from None
        raise


def pages(client: Any, operation: str, doing: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of a paginated call through botocore's paginator; failures become typed errors.

    Args:
        client: a boto3 client.
        operation: the paginated operation, e.g. "list_core_devices".
        doing: what is being done, as a verb phrase, for the error message.
        **params: the operation's parameters.
    """
    with aws_call(doing):
        yield from client.get_paginator(operation).paginate(**params)
