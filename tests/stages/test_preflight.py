"""Preflight's checks one by one, without a Qserv (the end-to-end cases, against the stand-in and servers
that are not Qserv, are in tests/faults/test_bad_input_corpus.py)."""

from __future__ import annotations

import shutil

import pytest

from qdask.qserv.czar import Czar
from qdask.stages.preflight import PreflightError, check_czar, check_staging


def test_staging_is_created_written_and_left_clean(tmp_path):
    line = check_staging(tmp_path / "a" / "staging", 1 << 20)
    assert line.startswith(f"staging {tmp_path / 'a' / 'staging'}: writable") and "1.00 MiB needed" in line
    assert list((tmp_path / "a" / "staging").iterdir()) == []  # the probe file is gone


def test_staging_without_room_for_the_estimate_is_refused_naming_it(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(
        PreflightError, match=rf"staging directory {tmp_path} has .* free, but .* needs about"
    ):
        check_staging(tmp_path, free * 4)


def test_staging_that_is_a_file_is_refused_naming_it(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(PreflightError, match=rf"staging directory {tmp_path / 'f'} cannot be written"):
        check_staging(tmp_path / "f", 0)


def test_a_czar_dsn_naming_another_database_is_refused_before_connecting():
    czar = Czar("mysql://qsmaster@127.0.0.1:1/other")  # port 1: a connection would fail differently
    with pytest.raises(PreflightError, match=r"names database 'other', but this config loads 'mine'.*/mine"):
        check_czar(czar, "mine")


def test_an_unreachable_czar_is_refused_naming_its_dsn():
    czar = Czar("mysql://qsmaster@127.0.0.1:1", connect_timeout=2)
    with pytest.raises(PreflightError, match=r"the czar at mysql://qsmaster@127.0.0.1:1 does not accept"):
        check_czar(czar, "mine")
