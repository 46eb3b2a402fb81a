"""Rich gRPC statuses: google.rpc.Status with ErrorInfo and, for validation failures,
BadRequest field violations (https://google.aip.dev/193)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from texture_connect.domain.errors import ERROR_DOMAIN, ServiceError


def rich_status(error: ServiceError) -> grpc.Status:
    code = getattr(code_pb2, error.code.value)
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(
        reason=error.reason.name, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=error.message, details=details)
    )
