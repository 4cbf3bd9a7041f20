"""`qdask.dsn`: MySQL DSNs parsed by SQLAlchemy's URL parser, rendered so any URL parser reads them back."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from pydantic import SecretStr

from qdask.config import ConfigError, config_from_dict
from qdask.dsn import DSN, DSNError, parse_dsn
from qdask.qserv.czar import Czar

# Passwords with every character a URL gives a meaning to.
PASSWORDS = ["pa/ss", "a:b", "h#sh", "q?x=1", "per%41cent", "sp ace", "at@sign", "ünï", "all/:#?@%"]


def test_the_parts_of_a_dsn():
    d = parse_dsn("mysql://qsmaster:s3cr3t@czar.example.org:4040/dp02")
    assert (d.user, d.password.get_secret_value(), d.host, d.port, d.database) == (
        "qsmaster",
        "s3cr3t",
        "czar.example.org",
        4040,
        "dp02",
    )
    bare = parse_dsn("mariadb://u@[::1]")
    assert (bare.user, bare.password, bare.host, bare.port, bare.database) == ("u", None, "::1", None, None)
    assert parse_dsn("mysql+pymysql://%75ser@h/").user == "user"  # percent-encoded user, empty database


def test_a_slash_in_the_password_is_read_as_typed():
    """urlsplit ends the host part at the first '/', so 'pa/ss' used to lose everything after the slash."""
    d = parse_dsn("mysql://qsmaster:pa/ss@127.0.0.1:4040/qcase01")
    assert d.password.get_secret_value() == "pa/ss"
    assert (d.host, d.port, d.database) == ("127.0.0.1", 4040, "qcase01")


@pytest.mark.parametrize("password", PASSWORDS)
def test_rendered_urls_read_back_the_same_with_any_url_parser(password):
    typed = parse_dsn(f"mysql://qs%20master:{_encode(password)}@czar:4040/db")
    assert typed.password.get_secret_value() == password
    assert typed == DSN("czar", 4040, "qs master", SecretStr(password), "db")
    url = typed.url(reveal=True)
    back = parse_dsn(url)
    assert (back.user, back.password.get_secret_value(), back.host, back.port, back.database) == (
        "qs master",
        password,
        "czar",
        4040,
        "db",
    )
    parts = urlsplit(url)  # what a urllib-based reader (e.g. qdask.qserv.czar) sees
    assert (unquote(parts.username), unquote(parts.password), parts.hostname, parts.port) == (
        "qs master",
        password,
        "czar",
        4040,
    )
    shown = typed.url()
    assert shown == "mysql://qs master:***@czar:4040/db" and str(typed) == shown
    assert password not in repr(typed)


def _encode(password: str) -> str:
    """`password` as typed in a DSN: only '@' and '%' need encoding."""
    return password.replace("%", "%25").replace("@", "%40")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("postgres://u:pw-1@h/db", "got scheme 'postgres'"),
        ("mysql://u:pw-1@/db", "host is missing"),
        ("mysql://u:pw-1@h:port/db", "port of the DSN is not a number"),
        ("mysql://u:pw-1@h:70000/db", "port of the DSN is not a number"),
        ("mysql://u:pw-1@h:0/db", "port of the DSN is not a number"),
        ("mysql://u:pw-1@h/db?ssl=1", "no query string"),
        ("mysql://u:pw-1@x@h/db", "write an '@' in the password as %40"),
        ("not a url pw-1", "expected mysql://"),
    ],
)
def test_bad_dsns_are_refused_without_quoting_the_password(text, words):
    with pytest.raises(DSNError) as info:
        parse_dsn(text)
    assert words in str(info.value)
    assert "pw-1" not in str(info.value)


def test_the_config_reads_the_czar_dsn_with_the_same_parser(tmp_path, one_table_config):
    def _config(czar: str) -> dict:
        return one_table_config(qserv={"controller": "http://127.0.0.1:25081", "czar": czar})

    cfg = config_from_dict(
        _config("mysql://qsmaster:pa/ss%40x@127.0.0.1/qcase01"), tmp_path, check_paths=False
    )
    czar = cfg.qserv.czar
    assert (czar.user, czar.password.get_secret_value(), czar.port, czar.database) == (
        "qsmaster",
        "pa/ss@x",
        4040,  # the czar's port when the DSN gives none
        "qcase01",
    )
    assert czar.url() == "mysql://qsmaster:***@127.0.0.1:4040/qcase01"
    assert Czar(czar.url(reveal=True)).dsn.password.get_secret_value() == "pa/ss@x"
    with pytest.raises(ConfigError) as info:
        config_from_dict(_config("mysql://@127.0.0.1/qcase01"), tmp_path, check_paths=False)
    assert "user and host are required" in dict(info.value.problems)["qserv.czar"]


def test_verify_connects_to_the_czar_with_a_slash_in_the_password(mariadb, tmp_path, one_table_config):
    """The path verify takes (config → CzarDSN.url(reveal=True) → Czar) logs in with a '/' password."""
    password = "s/l:a#s?h@%"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'dsn_slash'@'%'")
        cur.execute("CREATE USER 'dsn_slash'@'%%' IDENTIFIED BY %s", (password,))
    conn.close()
    dsn = f"mysql://dsn_slash:{_encode(password)}@127.0.0.1:{mariadb.port}"
    qserv = {"controller": "http://127.0.0.1:25081", "czar": dsn}
    cfg = config_from_dict(one_table_config(qserv=qserv), tmp_path, check_paths=False)
    with Czar(cfg.qserv.czar.url(reveal=True)).query("SELECT CURRENT_USER()") as rows:
        assert [r[0] for r in rows] == ["dsn_slash@%"]
