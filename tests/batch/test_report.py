"""The report's fleet views (kvmfx/report.py) on a batch state built by hand."""

from __future__ import annotations

import json

from kvmfx.batch import BatchState
from kvmfx.report import fleet_views, write_report


def _state(tmp_path):
    state = BatchState(tmp_path)
    hosts = {"web01": (["/usr/sbin/sshd", "-D"], ["PATH=/usr/bin", "LANG=C"]),
             "web02": (["/usr/sbin/sshd", "-D"], ["PATH=/usr/bin", "SECRET=x"]),
             "db01": (["/usr/sbin/sshd", "-D"], ["PATH=/usr/bin", "LANG=C"])}
    (tmp_path / "parts").mkdir()
    for i, (host, (argv, envv)) in enumerate(hosts.items()):
        key = f"k{i}"
        procs = [{"pid": 1, "comm": "init", "argv": ["/sbin/init"]},
                 {"pid": 50, "comm": "sshd", "argv": argv}]
        if host == "db01":
            procs.append({"pid": 77, "comm": "nc", "argv": ["nc", "-l", "4444"]})
        rows = {"psaux": procs, "envars": [{"pid": 50, "comm": "sshd", "envv": envv}]}
        (tmp_path / "parts" / f"{key}.json").write_text(json.dumps(
            {"identity": {"path": f"/d/{host}", "host": host}, "rows": rows}))
        state.dumps[f"/d/{host}"] = {"path": f"/d/{host}", "host": host, "status": "ok",
                                     "key": key, "kernel_release": "6.1.0-57-amd64"}
    state.dumps["/d/bad"] = {"path": "/d/bad", "host": None, "status": "failed",
                             "error": "kvmfx: /d/bad: unrecognised dump format", "key": "kx"}
    return state


def test_processes_on_one_host_and_values_seen_once(tmp_path):
    views = fleet_views(_state(tmp_path))
    assert [(p["name"], p["host"], p["pids"]) for p in views["one_host"]] == \
        [("nc", "db01", [77])]
    # a process is its comm, with argv[0] when that names another program
    assert {p["name"]: p["hosts"] for p in views["many_hosts"]} == {"init": 3, "sshd": 3}
    assert [(r["value"], r["host"]) for r in views["rare_env"]] == [("SECRET=x", "web02")]
    assert {r["value"] for r in views["rare_argv"]} == {"-l", "4444"}
    by_host = {h["host"]: h for h in views["hosts"]}
    assert by_host["db01"]["processes"] == 3 and by_host["db01"]["unique"] == 1
    assert by_host["/d/bad"]["failed"] == 1
    assert views["failures"] == [{"path": "/d/bad",
                                  "error": "kvmfx: /d/bad: unrecognised dump format"}]


def test_the_page_is_one_file_with_escaped_values(tmp_path):
    state = _state(tmp_path)
    part = tmp_path / "parts" / "k0.json"
    data = json.loads(part.read_text())
    data["rows"]["envars"][0]["envv"].append("X=<script>alert(1)</script>")
    part.write_text(json.dumps(data))
    page = write_report(state, tmp_path / "report.html").read_text()
    assert "X=&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert 'src="http' not in page and "<link" not in page  # nothing fetched from a network
