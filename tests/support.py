"""Helpers for reading what a client of the API sees."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class RichError:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    fields: dict[str, str]  # JSON field path -> description


def rich_error(error: grpc.aio.AioRpcError) -> RichError:
    """Decodes google.rpc.Status from the trailers; fails if ErrorInfo is missing."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {error.code()}: {error.details()}"
    info = None
    fields: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields = {v.field: v.description for v in bad_request.field_violations}
    assert info is not None, "every error must carry google.rpc.ErrorInfo"
    return RichError(
        error.code(), status.message, info.reason, info.domain, dict(info.metadata), fields
    )
