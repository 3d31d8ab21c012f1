"""The etcd flags (--etcd, --etcd-ca, --etcd-cert, --etcd-key; env KUBEP4_ETCD*) into Store
arguments, and the Store's endpoint parsing."""
from __future__ import annotations

import argparse

import pytest

from kubep4 import config, tls
from kubep4 import store as st


def _parse(argv: list[str], environ: dict[str, str] | None = None) -> config.EtcdSettings:
    p = argparse.ArgumentParser()
    config.etcd_flags(p, environ=environ or {})
    return config.etcd_settings(p.parse_args(argv))


def test_default_is_one_plaintext_member():
    s = _parse([])
    assert s.store_args() == {"endpoints": [config.DEFAULT_ETCD], "tls": None}
    assert str(s) == config.DEFAULT_ETCD


def test_members_and_tls_from_flags_or_environment():
    s = _parse(["--etcd", "10.0.0.1:2379, 10.0.0.2:2379,", "--etcd-ca", "ca.pem",
                "--etcd-cert", "c.pem", "--etcd-key", "k.pem"])
    assert s.store_args() == {"endpoints": ["10.0.0.1:2379", "10.0.0.2:2379"],
                              "tls": tls.ClientTLS("ca.pem", "c.pem", "k.pem")}
    env = {"KUBEP4_ETCD": "https://e1:2379,https://e2:2379", "KUBEP4_ETCD_CA": "ca.pem",
           "KUBEP4_ETCD_CERT": "c.pem", "KUBEP4_ETCD_KEY": "k.pem"}
    assert _parse([], env) == config.EtcdSettings(("https://e1:2379", "https://e2:2379"), "ca.pem", "c.pem", "k.pem")
    assert _parse(["--etcd", "https://e3:2379"], env).endpoints == ("https://e3:2379",)  # the flag wins


@pytest.mark.parametrize("argv, match", [
    (["--etcd", " , "], "no endpoint"),
    (["--etcd-cert", "c.pem"], "go together"),
    (["--etcd", "https://e1:2379"], "needs --etcd-ca"),
    (["--etcd", "http://e1:2379", "--etcd-ca", "ca.pem"], "http endpoint"),
])
def test_flags_that_do_not_go_together(argv, match):
    with pytest.raises(ValueError, match=match):
        _parse(argv)


def test_store_endpoints():
    assert st.parse_endpoints("127.0.0.1:2379") == ["127.0.0.1:2379"]
    assert st.parse_endpoints("a:1,b:2, c") == ["a:1", "b:2", "c:2379"]
    assert st.parse_endpoints(["a:1", "b:2,c:3"]) == ["a:1", "b:2", "c:3"]
    assert st.parse_endpoints("https://a:1/", tls.ClientTLS("ca.pem")) == ["a:1"]
    with pytest.raises(ValueError, match="https needs"):
        st.parse_endpoints("https://a:1")
    with pytest.raises(ValueError, match="port"):
        st.parse_endpoints("a:b")
    with pytest.raises(ValueError, match="no etcd endpoint"):
        st.parse_endpoints("")


def test_a_missing_certificate_is_named_when_the_store_is_made(tmp_path):
    ca = tls.make_ca(str(tmp_path))
    with pytest.raises(tls.TLSFileError, match="gone-key.pem does not exist"):
        st.Store("127.0.0.1:2379", tls=tls.ClientTLS(ca.cert, ca.cert, str(tmp_path / "gone-key.pem")))


async def test_one_endpoint_fails_at_once_as_before():
    """An unreachable single etcd is Unavailable on the first call, never tried again."""
    from kubep4.etcd_server import free_port
    async with st.Store(f"127.0.0.1:{free_port()}", timeout=1) as s:
        assert s.endpoint == s.endpoints[0]
        with pytest.raises(st.Unavailable):
            await s.get_raw("/kubep4/x")
        assert s.endpoint == s.endpoints[0]
