import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectMeta(_message.Message):
    __slots__ = ("name", "namespace", "uid", "labels", "annotations", "generation", "resource_version", "creation_timestamp", "deletion_timestamp", "trace_context")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DELETION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    uid: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    generation: int
    resource_version: int
    creation_timestamp: _timestamp_pb2.Timestamp
    deletion_timestamp: _timestamp_pb2.Timestamp
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., uid: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., generation: _Optional[int] = ..., resource_version: _Optional[int] = ..., creation_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deletion_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("type", "status", "reason", "message", "last_transition_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class P4Source(_message.Message):
    __slots__ = ("program", "backend", "arch", "target", "options")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    program: str
    backend: str
    arch: str
    target: str
    options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, program: _Optional[str] = ..., backend: _Optional[str] = ..., arch: _Optional[str] = ..., target: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...

class Artifacts(_message.Message):
    __slots__ = ("p4info", "device_config")
    P4INFO_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    p4info: bytes
    device_config: bytes
    def __init__(self, p4info: _Optional[bytes] = ..., device_config: _Optional[bytes] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("digest", "size", "chunks")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    chunks: int
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class PipelineSpec(_message.Message):
    __slots__ = ("source", "artifacts", "arch", "target", "p4info_ref", "device_config_ref")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    P4INFO_REF_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CONFIG_REF_FIELD_NUMBER: _ClassVar[int]
    source: P4Source
    artifacts: Artifacts
    arch: str
    target: str
    p4info_ref: ArtifactRef
    device_config_ref: ArtifactRef
    def __init__(self, source: _Optional[_Union[P4Source, _Mapping]] = ..., artifacts: _Optional[_Union[Artifacts, _Mapping]] = ..., arch: _Optional[str] = ..., target: _Optional[str] = ..., p4info_ref: _Optional[_Union[ArtifactRef, _Mapping]] = ..., device_config_ref: _Optional[_Union[ArtifactRef, _Mapping]] = ...) -> None: ...

class PipelineStatus(_message.Message):
    __slots__ = ("digest", "phase", "conditions", "observed_generation", "compile")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    COMPILE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    phase: str
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    observed_generation: int
    compile: CompileStatus
    def __init__(self, digest: _Optional[str] = ..., phase: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., observed_generation: _Optional[int] = ..., compile: _Optional[_Union[CompileStatus, _Mapping]] = ...) -> None: ...

class Diagnostic(_message.Message):
    __slots__ = ("severity", "file", "line", "kind", "message")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    severity: str
    file: str
    line: int
    kind: str
    message: str
    def __init__(self, severity: _Optional[str] = ..., file: _Optional[str] = ..., line: _Optional[int] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CompilePhase(_message.Message):
    __slots__ = ("name", "seconds", "peak_rss_kb")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_KB_FIELD_NUMBER: _ClassVar[int]
    name: str
    seconds: float
    peak_rss_kb: int
    def __init__(self, name: _Optional[str] = ..., seconds: _Optional[float] = ..., peak_rss_kb: _Optional[int] = ...) -> None: ...

class CompileStatus(_message.Message):
    __slots__ = ("backend", "compiler", "version", "seconds", "diagnostics", "phases", "builder", "finished", "device_config_unavailable")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    COMPILER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    BUILDER_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CONFIG_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    backend: str
    compiler: str
    version: str
    seconds: float
    diagnostics: _containers.RepeatedCompositeFieldContainer[Diagnostic]
    phases: _containers.RepeatedCompositeFieldContainer[CompilePhase]
    builder: str
    finished: _timestamp_pb2.Timestamp
    device_config_unavailable: str
    def __init__(self, backend: _Optional[str] = ..., compiler: _Optional[str] = ..., version: _Optional[str] = ..., seconds: _Optional[float] = ..., diagnostics: _Optional[_Iterable[_Union[Diagnostic, _Mapping]]] = ..., phases: _Optional[_Iterable[_Union[CompilePhase, _Mapping]]] = ..., builder: _Optional[str] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_config_unavailable: _Optional[str] = ...) -> None: ...

class Pipeline(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMeta
    spec: PipelineSpec
    status: PipelineStatus
    def __init__(self, metadata: _Optional[_Union[ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[PipelineSpec, _Mapping]] = ..., status: _Optional[_Union[PipelineStatus, _Mapping]] = ...) -> None: ...

class FieldMatch(_message.Message):
    __slots__ = ("field", "exact", "lpm", "ternary", "range", "optional")
    class Exact(_message.Message):
        __slots__ = ("value",)
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: str
        def __init__(self, value: _Optional[str] = ...) -> None: ...
    class Lpm(_message.Message):
        __slots__ = ("value", "prefix_len")
        VALUE_FIELD_NUMBER: _ClassVar[int]
        PREFIX_LEN_FIELD_NUMBER: _ClassVar[int]
        value: str
        prefix_len: int
        def __init__(self, value: _Optional[str] = ..., prefix_len: _Optional[int] = ...) -> None: ...
    class Ternary(_message.Message):
        __slots__ = ("value", "mask")
        VALUE_FIELD_NUMBER: _ClassVar[int]
        MASK_FIELD_NUMBER: _ClassVar[int]
        value: str
        mask: str
        def __init__(self, value: _Optional[str] = ..., mask: _Optional[str] = ...) -> None: ...
    class Range(_message.Message):
        __slots__ = ("low", "high")
        LOW_FIELD_NUMBER: _ClassVar[int]
        HIGH_FIELD_NUMBER: _ClassVar[int]
        low: str
        high: str
        def __init__(self, low: _Optional[str] = ..., high: _Optional[str] = ...) -> None: ...
    class Optional(_message.Message):
        __slots__ = ("value",)
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: str
        def __init__(self, value: _Optional[str] = ...) -> None: ...
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    LPM_FIELD_NUMBER: _ClassVar[int]
    TERNARY_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    field: str
    exact: FieldMatch.Exact
    lpm: FieldMatch.Lpm
    ternary: FieldMatch.Ternary
    range: FieldMatch.Range
    optional: FieldMatch.Optional
    def __init__(self, field: _Optional[str] = ..., exact: _Optional[_Union[FieldMatch.Exact, _Mapping]] = ..., lpm: _Optional[_Union[FieldMatch.Lpm, _Mapping]] = ..., ternary: _Optional[_Union[FieldMatch.Ternary, _Mapping]] = ..., range: _Optional[_Union[FieldMatch.Range, _Mapping]] = ..., optional: _Optional[_Union[FieldMatch.Optional, _Mapping]] = ...) -> None: ...

class ActionParam(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class TableEntry(_message.Message):
    __slots__ = ("table", "match", "action", "params", "priority", "is_default_action", "member_id", "group_id", "action_set", "meter_config", "counter_data", "member", "group")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_ACTION_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_SET_FIELD_NUMBER: _ClassVar[int]
    METER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    COUNTER_DATA_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    table: str
    match: _containers.RepeatedCompositeFieldContainer[FieldMatch]
    action: str
    params: _containers.RepeatedCompositeFieldContainer[ActionParam]
    priority: int
    is_default_action: bool
    member_id: int
    group_id: int
    action_set: _containers.RepeatedCompositeFieldContainer[ProfileAction]
    meter_config: MeterConfig
    counter_data: CounterData
    member: str
    group: str
    def __init__(self, table: _Optional[str] = ..., match: _Optional[_Iterable[_Union[FieldMatch, _Mapping]]] = ..., action: _Optional[str] = ..., params: _Optional[_Iterable[_Union[ActionParam, _Mapping]]] = ..., priority: _Optional[int] = ..., is_default_action: _Optional[bool] = ..., member_id: _Optional[int] = ..., group_id: _Optional[int] = ..., action_set: _Optional[_Iterable[_Union[ProfileAction, _Mapping]]] = ..., meter_config: _Optional[_Union[MeterConfig, _Mapping]] = ..., counter_data: _Optional[_Union[CounterData, _Mapping]] = ..., member: _Optional[str] = ..., group: _Optional[str] = ...) -> None: ...

class ProfileAction(_message.Message):
    __slots__ = ("action", "params", "weight")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    action: str
    params: _containers.RepeatedCompositeFieldContainer[ActionParam]
    weight: int
    def __init__(self, action: _Optional[str] = ..., params: _Optional[_Iterable[_Union[ActionParam, _Mapping]]] = ..., weight: _Optional[int] = ...) -> None: ...

class ProfileMember(_message.Message):
    __slots__ = ("action_profile", "member_id", "action", "params", "name")
    ACTION_PROFILE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    action_profile: str
    member_id: int
    action: str
    params: _containers.RepeatedCompositeFieldContainer[ActionParam]
    name: str
    def __init__(self, action_profile: _Optional[str] = ..., member_id: _Optional[int] = ..., action: _Optional[str] = ..., params: _Optional[_Iterable[_Union[ActionParam, _Mapping]]] = ..., name: _Optional[str] = ...) -> None: ...

class ProfileGroup(_message.Message):
    __slots__ = ("action_profile", "group_id", "members", "max_size", "name")
    class Member(_message.Message):
        __slots__ = ("member_id", "weight", "member")
        MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
        WEIGHT_FIELD_NUMBER: _ClassVar[int]
        MEMBER_FIELD_NUMBER: _ClassVar[int]
        member_id: int
        weight: int
        member: str
        def __init__(self, member_id: _Optional[int] = ..., weight: _Optional[int] = ..., member: _Optional[str] = ...) -> None: ...
    ACTION_PROFILE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    action_profile: str
    group_id: int
    members: _containers.RepeatedCompositeFieldContainer[ProfileGroup.Member]
    max_size: int
    name: str
    def __init__(self, action_profile: _Optional[str] = ..., group_id: _Optional[int] = ..., members: _Optional[_Iterable[_Union[ProfileGroup.Member, _Mapping]]] = ..., max_size: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class PacketReplica(_message.Message):
    __slots__ = ("egress_port", "instance")
    EGRESS_PORT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    egress_port: int
    instance: int
    def __init__(self, egress_port: _Optional[int] = ..., instance: _Optional[int] = ...) -> None: ...

class MulticastGroup(_message.Message):
    __slots__ = ("group_id", "replicas")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    replicas: _containers.RepeatedCompositeFieldContainer[PacketReplica]
    def __init__(self, group_id: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[PacketReplica, _Mapping]]] = ...) -> None: ...

class CloneSession(_message.Message):
    __slots__ = ("session_id", "replicas", "class_of_service", "packet_length_bytes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CLASS_OF_SERVICE_FIELD_NUMBER: _ClassVar[int]
    PACKET_LENGTH_BYTES_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    replicas: _containers.RepeatedCompositeFieldContainer[PacketReplica]
    class_of_service: int
    packet_length_bytes: int
    def __init__(self, session_id: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[PacketReplica, _Mapping]]] = ..., class_of_service: _Optional[int] = ..., packet_length_bytes: _Optional[int] = ...) -> None: ...

class MeterConfig(_message.Message):
    __slots__ = ("cir", "cburst", "pir", "pburst")
    CIR_FIELD_NUMBER: _ClassVar[int]
    CBURST_FIELD_NUMBER: _ClassVar[int]
    PIR_FIELD_NUMBER: _ClassVar[int]
    PBURST_FIELD_NUMBER: _ClassVar[int]
    cir: int
    cburst: int
    pir: int
    pburst: int
    def __init__(self, cir: _Optional[int] = ..., cburst: _Optional[int] = ..., pir: _Optional[int] = ..., pburst: _Optional[int] = ...) -> None: ...

class CounterData(_message.Message):
    __slots__ = ("byte_count", "packet_count")
    BYTE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PACKET_COUNT_FIELD_NUMBER: _ClassVar[int]
    byte_count: int
    packet_count: int
    def __init__(self, byte_count: _Optional[int] = ..., packet_count: _Optional[int] = ...) -> None: ...

class MeterEntry(_message.Message):
    __slots__ = ("meter", "index", "config")
    METER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    meter: str
    index: int
    config: MeterConfig
    def __init__(self, meter: _Optional[str] = ..., index: _Optional[int] = ..., config: _Optional[_Union[MeterConfig, _Mapping]] = ...) -> None: ...

class CounterEntry(_message.Message):
    __slots__ = ("counter", "index", "data")
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    counter: str
    index: int
    data: CounterData
    def __init__(self, counter: _Optional[str] = ..., index: _Optional[int] = ..., data: _Optional[_Union[CounterData, _Mapping]] = ...) -> None: ...

class RegisterEntry(_message.Message):
    __slots__ = ("register", "index", "value")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    register: str
    index: int
    value: str
    def __init__(self, register: _Optional[str] = ..., index: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...

class ValueSetEntry(_message.Message):
    __slots__ = ("value_set", "members")
    class Member(_message.Message):
        __slots__ = ("match",)
        MATCH_FIELD_NUMBER: _ClassVar[int]
        match: _containers.RepeatedCompositeFieldContainer[FieldMatch]
        def __init__(self, match: _Optional[_Iterable[_Union[FieldMatch, _Mapping]]] = ...) -> None: ...
    VALUE_SET_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    value_set: str
    members: _containers.RepeatedCompositeFieldContainer[ValueSetEntry.Member]
    def __init__(self, value_set: _Optional[str] = ..., members: _Optional[_Iterable[_Union[ValueSetEntry.Member, _Mapping]]] = ...) -> None: ...

class LabelSelectorRequirement(_message.Message):
    __slots__ = ("key", "operator", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class LabelSelector(_message.Message):
    __slots__ = ("match_labels", "match_expressions")
    class MatchLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MATCH_LABELS_FIELD_NUMBER: _ClassVar[int]
    MATCH_EXPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    match_labels: _containers.ScalarMap[str, str]
    match_expressions: _containers.RepeatedCompositeFieldContainer[LabelSelectorRequirement]
    def __init__(self, match_labels: _Optional[_Mapping[str, str]] = ..., match_expressions: _Optional[_Iterable[_Union[LabelSelectorRequirement, _Mapping]]] = ...) -> None: ...

class UpdateStrategy(_message.Message):
    __slots__ = ("type", "max_unavailable", "pipeline_upgrade", "fallback", "steps", "progress_deadline_seconds", "auto_rollback", "max_surge")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_UPGRADE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUTO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    MAX_SURGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    max_unavailable: int
    pipeline_upgrade: str
    fallback: str
    steps: _containers.RepeatedCompositeFieldContainer[CanaryStep]
    progress_deadline_seconds: int
    auto_rollback: bool
    max_surge: int
    def __init__(self, type: _Optional[str] = ..., max_unavailable: _Optional[int] = ..., pipeline_upgrade: _Optional[str] = ..., fallback: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[CanaryStep, _Mapping]]] = ..., progress_deadline_seconds: _Optional[int] = ..., auto_rollback: _Optional[bool] = ..., max_surge: _Optional[int] = ...) -> None: ...

class CanaryStep(_message.Message):
    __slots__ = ("replicas", "percent", "pause", "wait_ready_seconds")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    WAIT_READY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    percent: int
    pause: bool
    wait_ready_seconds: int
    def __init__(self, replicas: _Optional[int] = ..., percent: _Optional[int] = ..., pause: _Optional[bool] = ..., wait_ready_seconds: _Optional[int] = ...) -> None: ...

class DeploymentSpec(_message.Message):
    __slots__ = ("pipeline", "replicas", "selector", "target", "arch", "table_entries", "strategy", "action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions", "meter_entries", "counter_entries", "register_entries", "value_set_entries", "revision_history_limit")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    TABLE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    MULTICAST_GROUPS_FIELD_NUMBER: _ClassVar[int]
    CLONE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    METER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COUNTER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VALUE_SET_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    replicas: int
    selector: LabelSelector
    target: str
    arch: str
    table_entries: _containers.RepeatedCompositeFieldContainer[TableEntry]
    strategy: UpdateStrategy
    action_profile_members: _containers.RepeatedCompositeFieldContainer[ProfileMember]
    action_profile_groups: _containers.RepeatedCompositeFieldContainer[ProfileGroup]
    multicast_groups: _containers.RepeatedCompositeFieldContainer[MulticastGroup]
    clone_sessions: _containers.RepeatedCompositeFieldContainer[CloneSession]
    meter_entries: _containers.RepeatedCompositeFieldContainer[MeterEntry]
    counter_entries: _containers.RepeatedCompositeFieldContainer[CounterEntry]
    register_entries: _containers.RepeatedCompositeFieldContainer[RegisterEntry]
    value_set_entries: _containers.RepeatedCompositeFieldContainer[ValueSetEntry]
    revision_history_limit: int
    def __init__(self, pipeline: _Optional[str] = ..., replicas: _Optional[int] = ..., selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., target: _Optional[str] = ..., arch: _Optional[str] = ..., table_entries: _Optional[_Iterable[_Union[TableEntry, _Mapping]]] = ..., strategy: _Optional[_Union[UpdateStrategy, _Mapping]] = ..., action_profile_members: _Optional[_Iterable[_Union[ProfileMember, _Mapping]]] = ..., action_profile_groups: _Optional[_Iterable[_Union[ProfileGroup, _Mapping]]] = ..., multicast_groups: _Optional[_Iterable[_Union[MulticastGroup, _Mapping]]] = ..., clone_sessions: _Optional[_Iterable[_Union[CloneSession, _Mapping]]] = ..., meter_entries: _Optional[_Iterable[_Union[MeterEntry, _Mapping]]] = ..., counter_entries: _Optional[_Iterable[_Union[CounterEntry, _Mapping]]] = ..., register_entries: _Optional[_Iterable[_Union[RegisterEntry, _Mapping]]] = ..., value_set_entries: _Optional[_Iterable[_Union[ValueSetEntry, _Mapping]]] = ..., revision_history_limit: _Optional[int] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("replica", "node", "device", "phase", "message", "reason", "revision", "surge")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SURGE_FIELD_NUMBER: _ClassVar[int]
    replica: int
    node: str
    device: str
    phase: str
    message: str
    reason: str
    revision: str
    surge: bool
    def __init__(self, replica: _Optional[int] = ..., node: _Optional[str] = ..., device: _Optional[str] = ..., phase: _Optional[str] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., revision: _Optional[str] = ..., surge: _Optional[bool] = ...) -> None: ...

class DeploymentStatus(_message.Message):
    __slots__ = ("phase", "conditions", "observed_generation", "ready_replicas", "replicas", "pipeline_digest", "current_revision", "target_revision", "updated_replicas", "canary_step", "progress_time", "step_ready_time", "rollback_generation", "rolled_back_from")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    READY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    TARGET_REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CANARY_STEP_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_READY_TIME_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_GENERATION_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FROM_FIELD_NUMBER: _ClassVar[int]
    phase: str
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    observed_generation: int
    ready_replicas: int
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    pipeline_digest: str
    current_revision: str
    target_revision: str
    updated_replicas: int
    canary_step: int
    progress_time: _timestamp_pb2.Timestamp
    step_ready_time: _timestamp_pb2.Timestamp
    rollback_generation: int
    rolled_back_from: str
    def __init__(self, phase: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., observed_generation: _Optional[int] = ..., ready_replicas: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., pipeline_digest: _Optional[str] = ..., current_revision: _Optional[str] = ..., target_revision: _Optional[str] = ..., updated_replicas: _Optional[int] = ..., canary_step: _Optional[int] = ..., progress_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step_ready_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rollback_generation: _Optional[int] = ..., rolled_back_from: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMeta
    spec: DeploymentSpec
    status: DeploymentStatus
    def __init__(self, metadata: _Optional[_Union[ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., status: _Optional[_Union[DeploymentStatus, _Mapping]] = ...) -> None: ...

class RevisionSpec(_message.Message):
    __slots__ = ("deployment", "revision", "pipeline", "pipeline_digest", "deployment_generation", "table_entries", "action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions", "meter_entries", "counter_entries", "register_entries", "value_set_entries", "hash", "change_cause")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    TABLE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    MULTICAST_GROUPS_FIELD_NUMBER: _ClassVar[int]
    CLONE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    METER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COUNTER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VALUE_SET_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    CHANGE_CAUSE_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    revision: int
    pipeline: str
    pipeline_digest: str
    deployment_generation: int
    table_entries: _containers.RepeatedCompositeFieldContainer[TableEntry]
    action_profile_members: _containers.RepeatedCompositeFieldContainer[ProfileMember]
    action_profile_groups: _containers.RepeatedCompositeFieldContainer[ProfileGroup]
    multicast_groups: _containers.RepeatedCompositeFieldContainer[MulticastGroup]
    clone_sessions: _containers.RepeatedCompositeFieldContainer[CloneSession]
    meter_entries: _containers.RepeatedCompositeFieldContainer[MeterEntry]
    counter_entries: _containers.RepeatedCompositeFieldContainer[CounterEntry]
    register_entries: _containers.RepeatedCompositeFieldContainer[RegisterEntry]
    value_set_entries: _containers.RepeatedCompositeFieldContainer[ValueSetEntry]
    hash: str
    change_cause: str
    def __init__(self, deployment: _Optional[str] = ..., revision: _Optional[int] = ..., pipeline: _Optional[str] = ..., pipeline_digest: _Optional[str] = ..., deployment_generation: _Optional[int] = ..., table_entries: _Optional[_Iterable[_Union[TableEntry, _Mapping]]] = ..., action_profile_members: _Optional[_Iterable[_Union[ProfileMember, _Mapping]]] = ..., action_profile_groups: _Optional[_Iterable[_Union[ProfileGroup, _Mapping]]] = ..., multicast_groups: _Optional[_Iterable[_Union[MulticastGroup, _Mapping]]] = ..., clone_sessions: _Optional[_Iterable[_Union[CloneSession, _Mapping]]] = ..., meter_entries: _Optional[_Iterable[_Union[MeterEntry, _Mapping]]] = ..., counter_entries: _Optional[_Iterable[_Union[CounterEntry, _Mapping]]] = ..., register_entries: _Optional[_Iterable[_Union[RegisterEntry, _Mapping]]] = ..., value_set_entries: _Optional[_Iterable[_Union[ValueSetEntry, _Mapping]]] = ..., hash: _Optional[str] = ..., change_cause: _Optional[str] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMeta
    spec: RevisionSpec
    def __init__(self, metadata: _Optional[_Union[ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[RevisionSpec, _Mapping]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "p4rt_address", "device_id", "target", "arch", "pipeline_slots", "labels", "upgrade", "tls", "role", "launch")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    P4RT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    UPGRADE_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    p4rt_address: str
    device_id: int
    target: str
    arch: str
    pipeline_slots: int
    labels: _containers.ScalarMap[str, str]
    upgrade: str
    tls: DeviceTLS
    role: str
    launch: DeviceLaunch
    def __init__(self, name: _Optional[str] = ..., p4rt_address: _Optional[str] = ..., device_id: _Optional[int] = ..., target: _Optional[str] = ..., arch: _Optional[str] = ..., pipeline_slots: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., upgrade: _Optional[str] = ..., tls: _Optional[_Union[DeviceTLS, _Mapping]] = ..., role: _Optional[str] = ..., launch: _Optional[_Union[DeviceLaunch, _Mapping]] = ...) -> None: ...

class DeviceLaunch(_message.Message):
    __slots__ = ("kind", "binary", "interfaces", "thrift_port", "controller_port", "args", "server_cert", "server_key")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    THRIFT_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_PORT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    SERVER_CERT_FIELD_NUMBER: _ClassVar[int]
    SERVER_KEY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    binary: str
    interfaces: _containers.RepeatedScalarFieldContainer[str]
    thrift_port: int
    controller_port: int
    args: _containers.RepeatedScalarFieldContainer[str]
    server_cert: str
    server_key: str
    def __init__(self, kind: _Optional[str] = ..., binary: _Optional[str] = ..., interfaces: _Optional[_Iterable[str]] = ..., thrift_port: _Optional[int] = ..., controller_port: _Optional[int] = ..., args: _Optional[_Iterable[str]] = ..., server_cert: _Optional[str] = ..., server_key: _Optional[str] = ...) -> None: ...

class DeviceTLS(_message.Message):
    __slots__ = ("ca_file", "cert_file", "key_file", "server_name")
    CA_FILE_FIELD_NUMBER: _ClassVar[int]
    CERT_FILE_FIELD_NUMBER: _ClassVar[int]
    KEY_FILE_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAME_FIELD_NUMBER: _ClassVar[int]
    ca_file: str
    cert_file: str
    key_file: str
    server_name: str
    def __init__(self, ca_file: _Optional[str] = ..., cert_file: _Optional[str] = ..., key_file: _Optional[str] = ..., server_name: _Optional[str] = ...) -> None: ...

class DeviceStatus(_message.Message):
    __slots__ = ("name", "phase", "cookie", "used_slots", "message", "last_verified")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    USED_SLOTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    name: str
    phase: str
    cookie: str
    used_slots: int
    message: str
    last_verified: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., phase: _Optional[str] = ..., cookie: _Optional[str] = ..., used_slots: _Optional[int] = ..., message: _Optional[str] = ..., last_verified: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("address", "devices", "kubernetes_node", "read_address")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_NODE_FIELD_NUMBER: _ClassVar[int]
    READ_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    kubernetes_node: str
    read_address: str
    def __init__(self, address: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., kubernetes_node: _Optional[str] = ..., read_address: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("phase", "conditions", "last_heartbeat", "devices")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    phase: str
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    last_heartbeat: _timestamp_pb2.Timestamp
    devices: _containers.RepeatedCompositeFieldContainer[DeviceStatus]
    def __init__(self, phase: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., devices: _Optional[_Iterable[_Union[DeviceStatus, _Mapping]]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus
    def __init__(self, metadata: _Optional[_Union[ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ...) -> None: ...

class PlacementSpec(_message.Message):
    __slots__ = ("deployment", "namespace", "replica", "node", "device", "pipeline", "pipeline_digest", "deployment_generation", "table_entries", "action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions", "meter_entries", "counter_entries", "register_entries", "value_set_entries", "pipeline_upgrade", "fallback")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    TABLE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ACTION_PROFILE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    MULTICAST_GROUPS_FIELD_NUMBER: _ClassVar[int]
    CLONE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    METER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COUNTER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VALUE_SET_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_UPGRADE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    namespace: str
    replica: int
    node: str
    device: str
    pipeline: str
    pipeline_digest: str
    deployment_generation: int
    table_entries: _containers.RepeatedCompositeFieldContainer[TableEntry]
    action_profile_members: _containers.RepeatedCompositeFieldContainer[ProfileMember]
    action_profile_groups: _containers.RepeatedCompositeFieldContainer[ProfileGroup]
    multicast_groups: _containers.RepeatedCompositeFieldContainer[MulticastGroup]
    clone_sessions: _containers.RepeatedCompositeFieldContainer[CloneSession]
    meter_entries: _containers.RepeatedCompositeFieldContainer[MeterEntry]
    counter_entries: _containers.RepeatedCompositeFieldContainer[CounterEntry]
    register_entries: _containers.RepeatedCompositeFieldContainer[RegisterEntry]
    value_set_entries: _containers.RepeatedCompositeFieldContainer[ValueSetEntry]
    pipeline_upgrade: str
    fallback: str
    def __init__(self, deployment: _Optional[str] = ..., namespace: _Optional[str] = ..., replica: _Optional[int] = ..., node: _Optional[str] = ..., device: _Optional[str] = ..., pipeline: _Optional[str] = ..., pipeline_digest: _Optional[str] = ..., deployment_generation: _Optional[int] = ..., table_entries: _Optional[_Iterable[_Union[TableEntry, _Mapping]]] = ..., action_profile_members: _Optional[_Iterable[_Union[ProfileMember, _Mapping]]] = ..., action_profile_groups: _Optional[_Iterable[_Union[ProfileGroup, _Mapping]]] = ..., multicast_groups: _Optional[_Iterable[_Union[MulticastGroup, _Mapping]]] = ..., clone_sessions: _Optional[_Iterable[_Union[CloneSession, _Mapping]]] = ..., meter_entries: _Optional[_Iterable[_Union[MeterEntry, _Mapping]]] = ..., counter_entries: _Optional[_Iterable[_Union[CounterEntry, _Mapping]]] = ..., register_entries: _Optional[_Iterable[_Union[RegisterEntry, _Mapping]]] = ..., value_set_entries: _Optional[_Iterable[_Union[ValueSetEntry, _Mapping]]] = ..., pipeline_upgrade: _Optional[str] = ..., fallback: _Optional[str] = ...) -> None: ...

class PlacementStatus(_message.Message):
    __slots__ = ("phase", "message", "cookie", "observed_generation", "last_transition_time", "reason", "disruptive")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DISRUPTIVE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    message: str
    cookie: int
    observed_generation: int
    last_transition_time: _timestamp_pb2.Timestamp
    reason: str
    disruptive: bool
    def __init__(self, phase: _Optional[str] = ..., message: _Optional[str] = ..., cookie: _Optional[int] = ..., observed_generation: _Optional[int] = ..., last_transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., disruptive: _Optional[bool] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: ObjectMeta
    spec: PlacementSpec
    status: PlacementStatus
    def __init__(self, metadata: _Optional[_Union[ObjectMeta, _Mapping]] = ..., spec: _Optional[_Union[PlacementSpec, _Mapping]] = ..., status: _Optional[_Union[PlacementStatus, _Mapping]] = ...) -> None: ...
