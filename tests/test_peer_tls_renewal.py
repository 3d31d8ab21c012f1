"""The apiserver presents a renewed client certificate to admission (a RenewingChannel), with no
restart of the apiserver: admission restarted trusting only the renewed certificate's CA still
answers its reviews."""
from __future__ import annotations

import shutil

from kubep4 import tls
from kubep4.client import AsyncClient
from kubep4.etcd_server import free_port
from services.admission.server import create_server as create_admission
from services.admission.validation import Policy
from services.apiserver.server import Settings, create_server, shutdown

from .conftest import example_objects


async def test_the_apiserver_reaches_admission_with_its_renewed_certificate(etcd, tmp_path):
    ca_s, ca1, ca2 = (tls.make_ca(str(tmp_path / n), common_name=f"kubep4-{n}") for n in ("admission", "one", "two"))
    adm = tls.issue(ca_s, "admission", str(tmp_path / "admission"), "kubep4-admission")
    first = tls.issue(ca1, "apiserver", str(tmp_path / "one"), "kubep4-apiserver")
    renewed = tls.issue(ca2, "apiserver", str(tmp_path / "two"), "kubep4-apiserver")
    cert, key, trusted = (str(tmp_path / n) for n in ("apiserver.pem", "apiserver-key.pem", "admission-trusts.pem"))
    for src, dst in ((first.cert, cert), (first.key, key), (ca1.cert, trusted)):
        shutil.copyfile(src, dst)
    both = tmp_path / "both.pem"  # what the test's client trusts of the apiserver's own certificate
    both.write_bytes(open(ca1.cert, "rb").read() + open(ca2.cert, "rb").read())
    port = free_port("127.0.0.1")
    policy = Policy(namespaces=frozenset({"default"}))

    async def admission():
        server, _ = await create_admission(f"127.0.0.1:{port}", policy, None, tls.server_credentials(
            adm.cert, adm.key, trusted), frozenset({"kubep4-apiserver"}))
        return server
    adm_server = await admission()
    api, api_port, store, channel = await create_server(Settings(
        "127.0.0.1:0", etcd.endpoint, f"127.0.0.1:{port}", tls_cert=cert, tls_key=key, tls_ca=ca_s.cert))
    try:
        pipeline, _ = example_objects()
        async with AsyncClient(f"127.0.0.1:{api_port}", ca=str(both), server_name="localhost") as c:
            await c.create(pipeline)  # reviewed by admission with the first certificate

            shutil.copyfile(renewed.key, key)  # the renewal: key, then certificate
            shutil.copyfile(renewed.cert, cert)
            await adm_server.stop(0)
            shutil.copyfile(ca2.cert, trusted)  # admission, restarted, knows only the new CA
            adm_server = await admission()

            pipeline.metadata.name = "after-renewal"
            assert (await c.create(pipeline)).metadata.name == "after-renewal"
    finally:
        await shutdown(api, store, channel, grace=0)
        await adm_server.stop(0)
