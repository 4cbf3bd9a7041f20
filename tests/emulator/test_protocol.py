"""Envelope, Content-Type, authorization and API-version rules (contract §1), on controller and workers."""

from __future__ import annotations

import httpx

from tests.emulator.api import Api, unique_db

ENVELOPE = {"success", "error", "error_ext", "warning"}
# BaseModule.cc:147-170: AuthError carries the module's context() — the controller's task name
NO_KEYS = (
    "failed to pass authorization requirements, ex: HTTP-PROCESSOR none of the authorization keys 'auth_key'"
    " or 'admin_auth_key' was found in the request. Please, provide one."
)


def test_meta_version_controller_and_workers(qserv):
    answer = httpx.get(qserv.controller_url + "/meta/version").json()
    assert answer["kind"] == "replication-controller"
    assert answer["version"] == 55 and answer["success"] == 1 and answer["error"] == ""
    assert answer["error_ext"] == {} and answer["warning"] == ""
    assert {"id", "instance_id", "database_schema_version"} <= answer.keys()
    for name, url in qserv.worker_urls.items():
        w = httpx.get(url + "/meta/version").json()
        assert (w["kind"], w["id"], w["version"], w["success"]) == ("replication-worker-ingest", name, 55, 1)


def test_missing_version_is_a_warning(qserv):
    api = Api(qserv)
    answer = api.get("/ingest/database", version=None)
    assert answer["success"] == 1
    assert answer["warning"] == "No version number was provided in the request."
    assert api.get("/ingest/database")["warning"] == ""


def test_version_outside_window_is_refused_with_the_window(qserv):
    api = Api(qserv)
    answer = api.get(
        "/ingest/trans", version=16
    )  # qserv-ingest's pinned version, below GET /ingest/trans's 37
    assert answer["success"] == 0
    assert (
        answer["error"] == "The requested version 16 of the API is not in the range supported by the service."
    )
    assert answer["error_ext"] == {"min_version": 37, "max_version": 55}
    assert ENVELOPE <= answer.keys()
    answer = api.post(
        "/ingest/database",
        {
            "database": unique_db("v"),
            "num_stripes": 85,
            "num_sub_stripes": 12,
            "overlap": 0.01,
            "version": 56,
        },
    )
    assert answer["error_ext"] == {"min_version": 12, "max_version": 55}
    answer = api.post("/ingest/chunks", {"database": "x", "chunks": [1], "version": 53})
    assert answer["error_ext"] == {"min_version": 54, "max_version": 55}


def test_version_in_body_wins_over_query(qserv):
    api = Api(qserv)
    answer = api.post(
        "/ingest/chunks", {"database": "nosuchdb", "chunks": [1], "version": 55}, params={"version": 12}
    )
    assert "not in the range" not in answer["error"]


def test_non_numeric_version(qserv):
    answer = Api(qserv).get("/ingest/database", params={"version": "abc"}, version=None)
    assert answer["success"] == 0
    assert answer["error"] == "The optional parameter version is not a number."
    assert answer["error_ext"] == {"min_version": 12, "max_version": 55}


def test_body_read_only_with_exact_content_type(qserv):
    body = f'{{"auth_key": "{qserv.auth_key}", "database": "x", "version": 55}}'
    resp = httpx.post(
        qserv.controller_url + "/ingest/trans",
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status_code == 200
    assert resp.json()["error"] == NO_KEYS


def test_non_object_body(qserv):
    resp = httpx.post(
        qserv.controller_url + "/ingest/trans", content="[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert resp.json()["error"] == (
        "invalid parameters of the request, ex: invalid format of the request body."
        " A simple JSON object was expected"
    )


def test_auth_rules(qserv):
    api = Api(qserv)
    assert api.post("/ingest/trans", {"database": "x"}, auth=False)["error"] == NO_KEYS
    answer = api.post("/ingest/trans", {"database": "x", "auth_key": "wrong"})
    assert answer["error"] == (
        "failed to pass authorization requirements, ex: HTTP-PROCESSOR authorization key 'auth_key' in the"
        " request doesn't match the one in server configuration"
    )
    answer = api.post(
        "/ingest/trans", {"database": "x", "admin_auth_key": "wrong", "auth_key": qserv.auth_key}
    )
    assert answer["error"] == (
        "failed to pass authorization requirements, ex: HTTP-PROCESSOR administrator's authorization key"
        " 'admin_auth_key' in the request doesn't match the one in server configuration"
    )
    # the admin key is accepted where the plain key is required
    db = unique_db("auth")
    answer = api.post(
        "/ingest/database",
        {
            "database": db,
            "num_stripes": 85,
            "num_sub_stripes": 12,
            "overlap": 0.01,
            "admin_auth_key": qserv.admin_auth_key,
        },
    )
    assert answer["success"] == 1
    # worker services apply the same rule
    answer = api.post("/ingest/file", {"transaction_id": 1}, auth=False, worker="worker-1")
    assert answer["error"] == NO_KEYS.replace("HTTP-PROCESSOR", "INGEST-HTTP-SVC")  # IngestHttpSvcMod.cc:60
    # an empty key must still be present when the configured key is empty: GETs need none
    assert api.get(f"/ingest/table/{db}")["success"] == 1


def test_unknown_path_is_http_404(qserv):
    assert httpx.get(qserv.controller_url + "/ingest/nothing").status_code == 404


def test_errors_are_http_200_with_envelope(qserv):
    answer = Api(qserv).get("/ingest/table/nosuchdb")
    assert answer == {
        "success": 0,
        "error": "operation failed due to: CONFIG  _databaseInfo no such database 'nosuchdb'.",
        "error_ext": {},
        "warning": "",
    }


def test_replication_config_lists_registered_workers(qserv):
    config = Api(qserv).get("/replication/config")["config"]
    workers = {w["name"]: w for w in config["workers"]}
    assert set(workers) == set(qserv.worker_urls)
    for name, url in qserv.worker_urls.items():
        w = workers[name]
        assert url == f"http://{w['http-loader-host']['addr']}:{w['http-loader-port']}"
        assert w["is-enabled"] == 1 and w["is-read-only"] == 0
    assert config["general"]["worker"]["loader-max-warnings"] == 64


def test_json_numbers_are_strict_form_fields_are_not(qserv):
    api = Api(qserv)
    answer = api.post("/ingest/chunk", {"database": "x", "chunk": "7480"})
    assert (
        answer["error"]
        == "operation failed due to: [json.exception.type_error.302] type must be number, but is string"
    )
    db = unique_db("strict")
    assert (
        api.post(
            "/ingest/database", {"database": db, "num_stripes": "85", "num_sub_stripes": 12, "overlap": 0.1}
        )["success"]
        == 0
    )
    # the version may be a numeric string, in the body as in the query
    assert (
        api.post(
            "/ingest/database",
            {"database": db, "num_stripes": 85, "num_sub_stripes": 12, "overlap": 0.1, "version": "55"},
        )["success"]
        == 1
    )
