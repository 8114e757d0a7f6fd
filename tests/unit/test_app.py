"""The demo app (roles/app/files/hadeploy_app.py) served in-process on loopback."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "hadeploy_app", REPO / "roles" / "app" / "files" / "hadeploy_app.py")
assert _spec and _spec.loader
app = importlib.util.module_from_spec(_spec)
sys.modules["hadeploy_app"] = app  # dataclasses look their module up there
_spec.loader.exec_module(app)


@pytest.fixture
def server(tmp_path: Path):
    cfg = app.Config(region="east", host="h1", version="9.9", data_dir=tmp_path / "data",
                     port=0, bind="127.0.0.1")
    srv = app.make_server(cfg)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", cfg
    srv.shutdown()
    srv.server_close()


def call(url: str, body: object | None = None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_root_reports_region_and_host(server):
    url, _ = server
    assert call(url + "/") == (200, {"region": "east", "host": "h1", "version": "9.9"})


def test_post_is_on_disk_before_the_answer(server):
    url, cfg = server
    status, body = call(url + "/items", {"id": "order-1", "qty": 3})
    assert status == 201 and body["id"] == "order-1"
    on_disk = json.loads((cfg.data_dir / "items" / "order-1.json").read_text())
    assert on_disk == {"id": "order-1", "qty": 3}
    status, body = call(url + "/items/order-1")
    assert status == 200 and body["qty"] == 3 and body["served_by"] == "h1"


def test_post_without_id_gets_one_and_same_id_is_idempotent(server):
    url, cfg = server
    status, body = call(url + "/items", {"x": 1})
    assert status == 201 and len(body["id"]) == 32
    assert call(url + "/items", {"id": "a", "v": 1})[0] == 201
    again = call(url + "/items", {"id": "a", "v": 2})  # a retry: the first write stands
    assert again[0] == 200 and again[1]["existing"] is True
    assert len(list((cfg.data_dir / "items").glob("a.json"))) == 1
    assert call(url + "/items/a")[1]["v"] == 1
    status, summary = call(url + "/items")
    assert status == 200 and summary["count"] == 2 and len(summary["digest"]) == 32


@pytest.mark.parametrize("raw,code", [(b"{nope", 400), (b"[1,2]", 400),
                                      (b'{"id": "../etc/passwd"}', 400)])
def test_bad_posts(server, raw, code):
    url, _ = server
    assert call(url + "/items", raw=raw)[0] == code


def test_unknown_item_and_path(server):
    url, _ = server
    assert call(url + "/items/missing")[0] == 404
    assert call(url + "/items/..%2fetc")[0] == 404


def test_healthz_503_when_storage_is_not_writable(server):
    url, cfg = server
    assert call(url + "/healthz")[0] == 200
    shutil.rmtree(cfg.data_dir)  # as root, chmod cannot make a directory unwritable
    status, body = call(url + "/healthz")
    assert status == 503 and body["status"] == "unhealthy"
    assert call(url + "/items", {"id": "b"})[0] == 503


def test_items_on_shared_storage_move_into_a_database_once(server, tmp_path, capsys):
    """Upgrading a deployment built before its database tier: every item file is exported
    once, imported idempotently, the files stay, and the marker stops a second export."""
    base, cfg = server
    for n in range(3):
        assert call(f"{base}/items", {"id": f"old-{n}", "v": n})[0] == 201
    (cfg.data_dir / "items" / "junk.json").write_text("{not json")
    (cfg.data_dir / "items" / "bad id!.json").write_text("{}")
    env_file = tmp_path / "app.env"
    env_file.write_text(f"# managed\nHADEPLOY_REGION=east\nHADEPLOY_DATA_DIR={cfg.data_dir}\n")
    capsys.readouterr()  # the server's access log

    assert app.main(["--env-file", str(env_file), "export-files"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["old-0", "old-1", "old-2"]
    assert all(json.loads(line)["region"] == "east" for line in lines)
    assert "junk.json" in err and "bad id!.json" in err

    target = app.ItemStore(tmp_path / "db")  # same put() contract as the database store
    target.ensure_dir()
    assert target.put("old-1", {"id": "old-1", "v": "kept"}) is True
    assert app.import_items(target, [*lines, ""]) == {"imported": 2, "existing": 1}
    assert target.get("old-0") == {"id": "old-0", "v": 0}
    assert target.get("old-1") == {"id": "old-1", "v": "kept"}  # never overwritten
    assert app.import_items(target, lines) == {"imported": 0, "existing": 3}

    assert app.main(["--env-file", str(env_file), "mark-imported", '{"imported": 2}']) == 0
    assert app.main(["--env-file", str(env_file), "export-files"]) == 0
    assert capsys.readouterr().out == ""
    assert (cfg.data_dir / "items" / "old-0.json").exists()  # the files are kept


def test_one_shot_commands_refuse_bad_usage(tmp_path, capsys):
    env_file = tmp_path / "app.env"
    env_file.write_text(f"HADEPLOY_DATA_DIR={tmp_path}\n")
    assert app.main(["--env-file", str(env_file), "import-items"]) == 2  # no database
    assert "no database" in capsys.readouterr().err
    assert app.main(["--env-file", str(env_file), "frobnicate"]) == 2
    assert "usage:" in capsys.readouterr().err
    assert app.main(["--env-file", str(env_file), "export-files"]) == 0  # no items dir


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_read_only_storage_is_a_healthy_replica_that_refuses_writes(server):
    """On aws a secondary region's shared storage is an EFS replication destination:
    read-only until a failover promotes it. Such a region is ready to serve (health 200,
    saying so), reads work, writes are refused; a storage that is gone stays unhealthy."""
    url, cfg = server
    assert call(url + "/items", {"id": "before"})[0] == 201
    items = cfg.data_dir / "items"
    subprocess.run(["mount", "--bind", str(items), str(items)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(items)], check=True)
        status, body = call(url + "/healthz")
        assert status == 200 and body["storage"].startswith("read-only"), body
        assert call(url + "/items/before")[0] == 200
        assert call(url + "/items", {"id": "after"})[0] == 503
    finally:
        subprocess.run(["umount", str(items)], check=True)
    status, body = call(url + "/healthz")
    assert status == 200 and body["storage"] == "writable"
