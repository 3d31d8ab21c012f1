"""KubeP4 shared package: generated protos, etcd store, telemetry, settings, client SDK and CLI."""
__version__ = "0.1.0"
