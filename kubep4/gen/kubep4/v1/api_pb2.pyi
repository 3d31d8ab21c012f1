from kubep4.gen.kubep4.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    ADDED: _ClassVar[EventType]
    MODIFIED: _ClassVar[EventType]
    DELETED: _ClassVar[EventType]
    SYNCED: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
ADDED: EventType
MODIFIED: EventType
DELETED: EventType
SYNCED: EventType

class CreatePipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: _resources_pb2.Pipeline
    def __init__(self, pipeline: _Optional[_Union[_resources_pb2.Pipeline, _Mapping]] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: _resources_pb2.Deployment
    def __init__(self, deployment: _Optional[_Union[_resources_pb2.Deployment, _Mapping]] = ...) -> None: ...

class UpdateDeploymentRequest(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: _resources_pb2.Deployment
    def __init__(self, deployment: _Optional[_Union[_resources_pb2.Deployment, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("namespace", "label_selector", "limit", "continue_token")
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    label_selector: _containers.ScalarMap[str, str]
    limit: int
    continue_token: str
    def __init__(self, namespace: _Optional[str] = ..., label_selector: _Optional[_Mapping[str, str]] = ..., limit: _Optional[int] = ..., continue_token: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("namespace", "name", "resource_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    resource_version: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., resource_version: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("namespace", "name", "resource_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    resource_version: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., resource_version: _Optional[int] = ...) -> None: ...

class PipelineList(_message.Message):
    __slots__ = ("items", "resource_version", "continue_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Pipeline]
    resource_version: int
    continue_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[_resources_pb2.Pipeline, _Mapping]]] = ..., resource_version: _Optional[int] = ..., continue_token: _Optional[str] = ...) -> None: ...

class DeploymentList(_message.Message):
    __slots__ = ("items", "resource_version", "continue_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Deployment]
    resource_version: int
    continue_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[_resources_pb2.Deployment, _Mapping]]] = ..., resource_version: _Optional[int] = ..., continue_token: _Optional[str] = ...) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("items", "resource_version", "continue_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Node]
    resource_version: int
    continue_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[_resources_pb2.Node, _Mapping]]] = ..., resource_version: _Optional[int] = ..., continue_token: _Optional[str] = ...) -> None: ...

class PipelineEvent(_message.Message):
    __slots__ = ("type", "object", "resource_version")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    object: _resources_pb2.Pipeline
    resource_version: int
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., object: _Optional[_Union[_resources_pb2.Pipeline, _Mapping]] = ..., resource_version: _Optional[int] = ...) -> None: ...

class DeploymentEvent(_message.Message):
    __slots__ = ("type", "object", "resource_version")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    object: _resources_pb2.Deployment
    resource_version: int
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., object: _Optional[_Union[_resources_pb2.Deployment, _Mapping]] = ..., resource_version: _Optional[int] = ...) -> None: ...
