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

class RolloutRequest(_message.Message):
    __slots__ = ("namespace", "name", "to_revision")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    to_revision: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., to_revision: _Optional[int] = ...) -> None: ...

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

class RevisionList(_message.Message):
    __slots__ = ("items", "resource_version", "continue_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Revision]
    resource_version: int
    continue_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[_resources_pb2.Revision, _Mapping]]] = ..., resource_version: _Optional[int] = ..., continue_token: _Optional[str] = ...) -> None: ...

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

class ReadDeploymentRequest(_message.Message):
    __slots__ = ("namespace", "name", "kind", "object_name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    kind: str
    object_name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., object_name: _Optional[str] = ...) -> None: ...

class DeviceValues(_message.Message):
    __slots__ = ("counters", "meters", "registers", "table_entries", "action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions", "cookie")
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    REGISTERS_FIELD_NUMBER: _ClassVar[int]
    TABLE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    MULTICAST_GROUPS_FIELD_NUMBER: _ClassVar[int]
    CLONE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    counters: _containers.RepeatedCompositeFieldContainer[_resources_pb2.CounterEntry]
    meters: _containers.RepeatedCompositeFieldContainer[_resources_pb2.MeterEntry]
    registers: _containers.RepeatedCompositeFieldContainer[_resources_pb2.RegisterEntry]
    table_entries: _containers.RepeatedCompositeFieldContainer[_resources_pb2.TableEntry]
    action_profile_members: _containers.RepeatedCompositeFieldContainer[_resources_pb2.ProfileMember]
    action_profile_groups: _containers.RepeatedCompositeFieldContainer[_resources_pb2.ProfileGroup]
    multicast_groups: _containers.RepeatedCompositeFieldContainer[_resources_pb2.MulticastGroup]
    clone_sessions: _containers.RepeatedCompositeFieldContainer[_resources_pb2.CloneSession]
    cookie: int
    def __init__(self, counters: _Optional[_Iterable[_Union[_resources_pb2.CounterEntry, _Mapping]]] = ..., meters: _Optional[_Iterable[_Union[_resources_pb2.MeterEntry, _Mapping]]] = ..., registers: _Optional[_Iterable[_Union[_resources_pb2.RegisterEntry, _Mapping]]] = ..., table_entries: _Optional[_Iterable[_Union[_resources_pb2.TableEntry, _Mapping]]] = ..., action_profile_members: _Optional[_Iterable[_Union[_resources_pb2.ProfileMember, _Mapping]]] = ..., action_profile_groups: _Optional[_Iterable[_Union[_resources_pb2.ProfileGroup, _Mapping]]] = ..., multicast_groups: _Optional[_Iterable[_Union[_resources_pb2.MulticastGroup, _Mapping]]] = ..., clone_sessions: _Optional[_Iterable[_Union[_resources_pb2.CloneSession, _Mapping]]] = ..., cookie: _Optional[int] = ...) -> None: ...

class ReplicaValues(_message.Message):
    __slots__ = ("replica", "node", "device", "values", "error", "reason")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    replica: int
    node: str
    device: str
    values: DeviceValues
    error: str
    reason: str
    def __init__(self, replica: _Optional[int] = ..., node: _Optional[str] = ..., device: _Optional[str] = ..., values: _Optional[_Union[DeviceValues, _Mapping]] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReadDeploymentResponse(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaValues]
    def __init__(self, replicas: _Optional[_Iterable[_Union[ReplicaValues, _Mapping]]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "uid", "groups", "authenticated_by")
    USER_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_BY_FIELD_NUMBER: _ClassVar[int]
    user: str
    uid: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    authenticated_by: str
    def __init__(self, user: _Optional[str] = ..., uid: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., authenticated_by: _Optional[str] = ...) -> None: ...

class CanIRequest(_message.Message):
    __slots__ = ("verb", "kind", "namespace")
    VERB_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    verb: str
    kind: str
    namespace: str
    def __init__(self, verb: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class CanIResponse(_message.Message):
    __slots__ = ("allowed", "reason")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
