"""The Store presents a client certificate renewed in place from its next call on, with no restart
of the process: against a real etcd with --client-cert-auth that, restarted, trusts only the
renewed certificate's CA."""
from __future__ import annotations

import shutil

import pytest

from kubep4 import store as st
from kubep4 import tls
from kubep4.etcd_server import EtcdServer, EtcdTLS


def bundle(path, *cas: tls.CA) -> str:
    with open(path, "wb") as out:
        for ca in cas:
            with open(ca.cert, "rb") as f:
                out.write(f.read())
    return str(path)


async def test_a_renewed_client_certificate_is_presented_without_a_restart(tmp_path):
    ca_s, ca1, ca2 = (tls.make_ca(str(tmp_path / n), common_name=f"kubep4-{n}") for n in ("server", "one", "two"))
    server = tls.issue(ca_s, "etcd", str(tmp_path / "server"), "etcd")
    first = tls.issue(ca1, "client", str(tmp_path / "one"), "kubep4-apiserver", server=False)
    renewed = tls.issue(ca2, "client", str(tmp_path / "two"), "kubep4-apiserver", server=False)
    cert, key = str(tmp_path / "client.pem"), str(tmp_path / "client-key.pem")
    shutil.copyfile(first.cert, cert)
    shutil.copyfile(first.key, key)
    trusted = tmp_path / "trusted.pem"  # etcd's own certificate's CA, and the clients'
    etcd = EtcdServer(data_dir=str(tmp_path / "etcd"), tls=EtcdTLS(server.cert, server.key,
                                                                   bundle(trusted, ca_s, ca1))).start()
    try:
        async with st.Store(etcd.endpoint, tls=tls.ClientTLS(ca_s.cert, cert, key)) as store:
            await store.put_raw("/renewal/a", b"1")

            shutil.copyfile(renewed.key, key)  # the renewal lands: key, then certificate
            shutil.copyfile(renewed.cert, cert)
            etcd.stop()  # etcd now trusts only the new CA, and every connection is new
            bundle(trusted, ca_s, ca2)
            etcd.start()

            await store.put_raw("/renewal/b", b"2")
            assert (await store.get_raw("/renewal/a"))[0] == b"1"

        async with st.Store(etcd.endpoint, tls=tls.ClientTLS(ca_s.cert, first.cert, first.key)) as old:
            with pytest.raises(st.StoreError):  # the control: the first certificate is refused now
                await old.put_raw("/renewal/c", b"3")
    finally:
        etcd.cleanup()
