from kubep4.gen.kubep4.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_UNSPECIFIED: _ClassVar[Operation]
    CREATE: _ClassVar[Operation]
    UPDATE: _ClassVar[Operation]
    DELETE: _ClassVar[Operation]
OPERATION_UNSPECIFIED: Operation
CREATE: Operation
UPDATE: Operation
DELETE: Operation

class AdmissionReview(_message.Message):
    __slots__ = ("operation", "pipeline", "deployment", "referenced_pipeline", "usage", "old_deployment")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCED_PIPELINE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    OLD_DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    operation: Operation
    pipeline: _resources_pb2.Pipeline
    deployment: _resources_pb2.Deployment
    referenced_pipeline: _resources_pb2.Pipeline
    usage: NamespaceUsage
    old_deployment: _resources_pb2.Deployment
    def __init__(self, operation: _Optional[_Union[Operation, str]] = ..., pipeline: _Optional[_Union[_resources_pb2.Pipeline, _Mapping]] = ..., deployment: _Optional[_Union[_resources_pb2.Deployment, _Mapping]] = ..., referenced_pipeline: _Optional[_Union[_resources_pb2.Pipeline, _Mapping]] = ..., usage: _Optional[_Union[NamespaceUsage, _Mapping]] = ..., old_deployment: _Optional[_Union[_resources_pb2.Deployment, _Mapping]] = ...) -> None: ...

class NamespaceUsage(_message.Message):
    __slots__ = ("pipelines", "deployments", "artifact_bytes", "table_entries")
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_BYTES_FIELD_NUMBER: _ClassVar[int]
    TABLE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    pipelines: int
    deployments: int
    artifact_bytes: int
    table_entries: int
    def __init__(self, pipelines: _Optional[int] = ..., deployments: _Optional[int] = ..., artifact_bytes: _Optional[int] = ..., table_entries: _Optional[int] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AdmissionResponse(_message.Message):
    __slots__ = ("allowed", "violations", "pipeline", "deployment", "quota_counted", "usage_needed")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    QUOTA_COUNTED_FIELD_NUMBER: _ClassVar[int]
    USAGE_NEEDED_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    pipeline: _resources_pb2.Pipeline
    deployment: _resources_pb2.Deployment
    quota_counted: bool
    usage_needed: bool
    def __init__(self, allowed: _Optional[bool] = ..., violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., pipeline: _Optional[_Union[_resources_pb2.Pipeline, _Mapping]] = ..., deployment: _Optional[_Union[_resources_pb2.Deployment, _Mapping]] = ..., quota_counted: _Optional[bool] = ..., usage_needed: _Optional[bool] = ...) -> None: ...
