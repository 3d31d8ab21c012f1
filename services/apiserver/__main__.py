"""kubep4-apiserver: flags / KUBEP4_* env -> Settings -> serve."""
from __future__ import annotations

import argparse
import asyncio
import sys

from kubep4 import config, serving, telemetry
from kubep4.config import flag
from services.apiserver import auth
from services.apiserver.server import SERVICE_NAME, Settings, create_server, shutdown


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kubep4-apiserver", description="KubeP4 public gRPC API")
    flag(p, "--listen", "KUBEP4_LISTEN", config.DEFAULT_API, help="gRPC listen address")
    config.etcd_flags(p)
    flag(p, "--admission", "KUBEP4_ADMISSION", config.DEFAULT_ADMISSION, help="admission service address")
    config.secret_flag(p, "--token", "KUBEP4_TOKEN",
                       help="a bearer token for user admin, group system:masters (none: no such token)")
    flag(p, "--token-auth-file", "KUBEP4_TOKEN_AUTH_FILE", "",
         help='identities: token,user,uid,"group1,group2" lines (kube-apiserver\'s shape)')
    flag(p, "--authorization-policy-file", "KUBEP4_AUTHORIZATION_POLICY_FILE", "",
         help="role bindings per namespace and cluster-wide (YAML; none: an authenticated caller may do everything)")
    flag(p, "--tls-cert", "KUBEP4_TLS_CERT", "", help="serve TLS with this certificate (PEM)")
    flag(p, "--tls-key", "KUBEP4_TLS_KEY", "", help="the certificate's key (PEM)")
    flag(p, "--client-ca", "KUBEP4_CLIENT_CA", "",
         help="require client certificates signed by this CA (PEM); CN is the user, O the groups")
    flag(p, "--tls-ca", "KUBEP4_TLS_CA", "",
         help="the CA of admission and the node agents' read services (PEM): the apiserver calls "
              "them over TLS with its --tls-cert (none: plaintext)")
    flag(p, "--etcd-quota-bytes", "KUBEP4_ETCD_QUOTA_BYTES", Settings.etcd_quota_bytes, type=int,
         help="etcd's --quota-backend-bytes (its default: 2 GiB)")
    flag(p, "--storage-guard", "KUBEP4_STORAGE_GUARD", Settings.storage_guard, type=float,
         help="refuse creates and updates above this fraction of etcd's quota (0: never)")
    flag(p, "--log-level", "KUBEP4_LOG_LEVEL", "INFO")
    args = p.parse_args(argv)
    config.setup_logging(args.log_level)
    try:
        etcd = config.etcd_settings(args)
    except ValueError as e:
        p.error(str(e))
    settings = Settings(listen=args.listen, etcd=",".join(etcd.endpoints), etcd_tls=etcd.tls(),
                        admission=args.admission, tls_ca=args.tls_ca,
                        token=config.read_secret(args, "--token"),
                        etcd_quota_bytes=args.etcd_quota_bytes, storage_guard=args.storage_guard,
                        token_auth_file=args.token_auth_file,
                        authorization_policy_file=args.authorization_policy_file,
                        tls_cert=args.tls_cert, tls_key=args.tls_key, client_ca=args.client_ca)
    try:
        auth.from_settings(settings, SERVICE_NAME, warn=False)  # every file read and checked before anything starts
    except ValueError as e:  # TLSFileError, TokenFileError, PolicyError too
        print(f"kubep4-apiserver: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)

    async def run(stop: asyncio.Event) -> None:
        tel = telemetry.setup("kubep4-apiserver")
        server, port, store, channel = await create_server(settings, tel)
        print(f"kubep4-apiserver listening on {settings.listen.rpartition(':')[0]}:{port}", flush=True)
        await stop.wait()
        await shutdown(server, store, channel)
        tel.shutdown()

    serving.run(run)


if __name__ == "__main__":
    main()
