from kubep4.gen.kubep4.v1 import api_pb2 as _api_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadDeviceRequest(_message.Message):
    __slots__ = ("device", "kind", "object_name")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    device: str
    kind: str
    object_name: str
    def __init__(self, device: _Optional[str] = ..., kind: _Optional[str] = ..., object_name: _Optional[str] = ...) -> None: ...

class ReadDeviceResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _api_pb2.DeviceValues
    def __init__(self, values: _Optional[_Union[_api_pb2.DeviceValues, _Mapping]] = ...) -> None: ...
