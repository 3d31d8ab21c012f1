"""kubep4-admission: flags / KUBEP4_* env -> Policy -> serve."""
from __future__ import annotations

import argparse
import asyncio
import logging

from kubep4 import config, serving, telemetry
from kubep4.config import flag
from services.admission.server import create_server
from services.admission.validation import Policy

log = logging.getLogger("kubep4.admission")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubep4-admission", description="KubeP4 admission service")
    flag(p, "--listen", "KUBEP4_LISTEN", config.DEFAULT_ADMISSION, help="gRPC listen address")
    flag(p, "--namespaces", "KUBEP4_NAMESPACES", "default", help="comma-separated known namespaces")
    flag(p, "--max-replicas", "KUBEP4_MAX_REPLICAS", 64, type=int, help="largest replica count")
    flag(p, "--max-device-config-bytes", "KUBEP4_MAX_DEVICE_CONFIG_BYTES", 64 << 20, type=int,
         help="largest device config accepted")
    flag(p, "--max-bitwidth", "KUBEP4_MAX_BITWIDTH", Policy.max_bitwidth, type=int,
         help="widest match field or action param a P4Info may declare")
    flag(p, "--max-p4info-bytes", "KUBEP4_MAX_P4INFO_BYTES", Policy.max_p4info_bytes, type=int,
         help="largest P4Info accepted")
    flag(p, "--max-p4info-depth", "KUBEP4_MAX_P4INFO_DEPTH", Policy.max_p4info_depth, type=int,
         help="deepest message nesting of a text P4Info")
    flag(p, "--max-review-seconds", "KUBEP4_MAX_REVIEW_SECONDS", Policy.max_review_seconds, type=float,
         help="time a review may spend checking table entries")
    flag(p, "--quota-name", "KUBEP4_QUOTA_NAME", Policy.quota_name,
         help="the quota's name in 'exceeded quota' errors")
    for field, what in (("max_pipelines", "Pipelines per namespace"), ("max_deployments", "Deployments per namespace"),
                        ("max_artifact_bytes", "P4Info and device config bytes of a namespace's Pipelines"),
                        ("max_table_entries", "table entries per Deployment")):
        flag(p, "--" + field.replace("_", "-"), "KUBEP4_" + field.upper(), getattr(Policy, field), type=int,
             help=f"quota: {what} (0: no limit)")
    config.tls_flags(p)
    flag(p, "--allowed-clients", "KUBEP4_ALLOWED_CLIENTS", "kubep4-apiserver",
         help="with --tls-ca: the client certificate CNs served (comma-separated); anyone else is refused")
    flag(p, "--log-level", "KUBEP4_LOG_LEVEL", "INFO")
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)
    try:
        tls = config.tls_settings(args)
        credentials = tls.server_credentials()
    except ValueError as e:
        p.error(str(e))
    allowed = frozenset(c.strip() for c in args.allowed_clients.split(",") if c.strip())
    if not tls.ca:
        log.warning("admission serves %s: any caller that reaches it is answered (give --tls-cert, --tls-key "
                    "and --tls-ca to serve only %s)", "TLS without client certificates" if tls.enabled
                    else "plaintext", ", ".join(sorted(allowed)))
    policy = Policy(namespaces=frozenset(n.strip() for n in args.namespaces.split(",") if n.strip()),
                    max_replicas=args.max_replicas, max_device_config_bytes=args.max_device_config_bytes,
                    max_bitwidth=args.max_bitwidth, max_p4info_bytes=args.max_p4info_bytes,
                    max_p4info_depth=args.max_p4info_depth, max_review_seconds=args.max_review_seconds,
                    quota_name=args.quota_name, max_pipelines=args.max_pipelines,
                    max_deployments=args.max_deployments, max_artifact_bytes=args.max_artifact_bytes,
                    max_table_entries=args.max_table_entries)

    async def run(stop: asyncio.Event) -> None:
        tel = telemetry.setup("kubep4-admission")
        server, port = await create_server(args.listen, policy, tel, credentials,
                                           allowed if tls.ca else None)
        host = args.listen.rpartition(":")[0]
        print(f"kubep4-admission listening on {host}:{port}", flush=True)
        await stop.wait()
        await server.stop(2)
        tel.shutdown()

    serving.run(run)


if __name__ == "__main__":
    main()
