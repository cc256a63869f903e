"""``kvmfx batch --report``: one HTML page of cross-host views of a batch.

What a responder looks at first in a fleet: per-host counts (processes, failures), which
processes run on many hosts and which on one only, and argv / environment values seen once in
the whole fleet (rare is worth a look). Built from the batch's parts (psaux, pslist, envars
rows, whichever were run); plots with plotly, its JavaScript inlined so that the page is one
file that opens without a network. Imports jinja2 and plotly only when called.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

#: rows listed in each "seen once" table at most (the rest are counted)
MAX_LISTED = 200

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>kvmfx batch report: {{ hosts|length }} hosts</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 90em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; } code { word-break: break-all; }
.failed { color: #b00; } .note { color: #666; }
</style>
<script>
window.kvmfxErrors = [];
window.addEventListener("error", function (e) { window.kvmfxErrors.push(String(e.message)); });
</script>
{{ plotly_js|safe }}
</head><body>
<h1>kvmfx batch report</h1>
<p>{{ dumps|length }} dumps from {{ hosts|length }} hosts; commands: {{ commands|join(", ") }};
kvmfx {{ version }}; {{ totals.ok }} ok, {{ totals.partial }} partial,
{{ totals.failed }} failed.</p>

<h2>Per host</h2>
<div id="plot-hosts" class="plot"></div>
<table><tr><th>host</th><th>dumps</th><th>kernel</th><th>processes</th>
<th>seen on this host only</th><th>status</th></tr>
{% for h in hosts %}<tr><td>{{ h.host }}</td><td class="n">{{ h.dumps }}</td>
<td>{{ h.kernels|join(", ") }}</td><td class="n">{{ h.processes }}</td>
<td class="n">{{ h.unique }}</td>
<td{% if h.failed %} class="failed"{% endif %}>{{ h.status }}</td></tr>
{% endfor %}</table>

{% if failures %}<h2>Dumps that failed</h2>
<table><tr><th>dump</th><th>error</th></tr>
{% for f in failures %}<tr><td><code>{{ f.path }}</code></td><td>{{ f.error }}</td></tr>
{% endfor %}</table>{% endif %}

<h2>Processes across the fleet</h2>
<p class="note">A process is its name (comm) and argv[0]; how many hosts run it.</p>
<div id="plot-spread" class="plot"></div>
<h3>Seen on one host only ({{ one_host|length }})</h3>
<table><tr><th>process</th><th>host</th><th>pids</th></tr>
{% for p in one_host[:max_listed] %}<tr><td><code>{{ p.name }}</code></td><td>{{ p.host }}</td>
<td>{{ p.pids|join(", ") }}</td></tr>
{% endfor %}</table>
<h3>Seen on many hosts</h3>
<table><tr><th>process</th><th>hosts</th></tr>
{% for p in many_hosts[:max_listed] %}<tr><td><code>{{ p.name }}</code></td>
<td class="n">{{ p.hosts }}</td></tr>{% endfor %}</table>

<h2>Values seen once in the fleet</h2>
<p class="note">Arguments and environment strings that occur in one process of one host
only (of {{ rare_total }}; at most {{ max_listed }} listed each).</p>
<div id="plot-rare" class="plot"></div>
<h3>argv ({{ rare_argv|length }})</h3>
<table><tr><th>value</th><th>host</th><th>pid</th><th>process</th></tr>
{% for r in rare_argv[:max_listed] %}<tr><td><code>{{ r.value }}</code></td>
<td>{{ r.host }}</td><td class="n">{{ r.pid }}</td><td>{{ r.comm }}</td></tr>
{% endfor %}</table>
<h3>environment ({{ rare_env|length }})</h3>
<table><tr><th>value</th><th>host</th><th>pid</th><th>process</th></tr>
{% for r in rare_env[:max_listed] %}<tr><td><code>{{ r.value }}</code></td>
<td>{{ r.host }}</td><td class="n">{{ r.pid }}</td><td>{{ r.comm }}</td></tr>
{% endfor %}</table>

<div id="kvmfx-status">loading</div>
<script>
(function () {
  var figures = {{ figures|safe }};
  var done = [];
  for (var id in figures) {
    done.push(Plotly.newPlot(id, figures[id].data, figures[id].layout,
                             {displaylogo: false, responsive: true}));
  }
  Promise.all(done).then(function () {
    document.getElementById("kvmfx-status").textContent =
      window.kvmfxErrors.length ? "errors: " + window.kvmfxErrors.join("; ") : "rendered";
  }, function (e) {
    document.getElementById("kvmfx-status").textContent = "errors: " + e;
  });
})();
</script>
</body></html>
"""


def _proc_name(row: dict[str, Any]) -> str:
    comm = row.get("comm") or "?"
    argv = row.get("argv") or []
    first = argv[0] if argv else ""
    return f"{comm} [{first}]" if first and first.rsplit("/", 1)[-1] != comm else comm


def fleet_views(state: Any) -> dict[str, Any]:
    """The numbers of the page, from a batch's state (kvmfx.batch.BatchState)."""
    hosts: dict[str, dict[str, Any]] = {}
    spread: dict[str, set[str]] = defaultdict(set)
    pids_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    values: dict[str, Counter[str]] = {"argv": Counter(), "envv": Counter()}
    where: dict[tuple[str, str], dict[str, Any]] = {}
    failures = []
    for entry in state.dumps.values():
        host = entry.get("host") or entry["path"]
        h = hosts.setdefault(host, {"host": host, "dumps": 0, "kernels": set(),
                                    "processes": 0, "unique": 0, "failed": 0, "partial": 0})
        h["dumps"] += 1
        if entry.get("kernel_release"):
            h["kernels"].add(entry["kernel_release"])
        if entry["status"] == "failed":
            h["failed"] += 1
            failures.append({"path": entry["path"], "error": entry.get("error")})
        h["partial"] += entry["status"] == "partial"
    for entry, part in state.parts():
        host = entry.get("host") or entry["path"]
        rows = part["rows"]
        procs = rows.get("psaux") or rows.get("pslist") or []
        hosts[host]["processes"] += len(procs)
        for row in procs:
            name = _proc_name(row)
            spread[name].add(host)
            pids_of[(name, host)].append(row.get("pid"))
        comms = {r.get("pid"): r.get("comm") for r in procs}
        for kind, command in (("argv", "psaux"), ("envv", "envars")):
            for row in rows.get(command) or []:
                # argv[0] names the program (the spread views show it): the rest are values
                vector = (row.get(kind) or [])[1 if kind == "argv" else 0:]
                for value in set(vector):
                    values[kind][value] += 1
                    where[(kind, value)] = {"value": value, "host": host, "pid": row.get("pid"),
                                            "comm": row.get("comm") or comms.get(row.get("pid"))}
    one_host: list[dict[str, Any]] = []
    many: list[dict[str, Any]] = []
    for name, seen_on in spread.items():
        if len(seen_on) > 1:
            many.append({"name": name, "hosts": len(seen_on)})
            continue
        host = next(iter(seen_on))
        one_host.append({"name": name, "host": host,
                         "pids": sorted({p for p in pids_of[(name, host)] if p is not None})})
        hosts[host]["unique"] += 1
    one_host.sort(key=lambda p: (p["host"], p["name"]))
    many.sort(key=lambda p: (-p["hosts"], p["name"]))
    rare = {kind: sorted((where[(kind, v)] for v, n in counter.items() if n == 1),
                         key=lambda r: (r["host"], r["pid"] or 0, r["value"]))
            for kind, counter in values.items()}
    for h in hosts.values():
        h["kernels"] = sorted(h["kernels"])
        h["status"] = (f"{h['failed']} failed" if h["failed"] else "") + \
            (f" {h['partial']} partial" if h["partial"] else "") or "ok"
    return {"hosts": sorted(hosts.values(), key=lambda h: h["host"]), "spread": spread,
            "one_host": one_host, "many_hosts": many, "rare_argv": rare["argv"],
            "rare_env": rare["envv"], "failures": failures,
            "rare_total": sum(len(c) for c in values.values())}


def _figures(views: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    hosts = views["hosts"]
    per_host = go.Figure([
        go.Bar(name="processes", x=[h["host"] for h in hosts], y=[h["processes"] for h in hosts]),
        go.Bar(name="on this host only", x=[h["host"] for h in hosts],
               y=[h["unique"] for h in hosts])])
    per_host.update_layout(barmode="group", title="Processes per host", height=380)
    spread_counts = Counter(len(hs) for hs in views["spread"].values())
    xs = sorted(spread_counts)
    spread = go.Figure([go.Bar(x=xs, y=[spread_counts[x] for x in xs])])
    spread.update_layout(title="How many hosts run each process", height=340,
                         xaxis_title="hosts running it", yaxis_title="processes",
                         xaxis={"type": "category"})
    rare_hosts = [h["host"] for h in hosts]
    rare = go.Figure([
        go.Bar(name=name, x=rare_hosts,
               y=[sum(1 for r in views[key] if r["host"] == h) for h in rare_hosts])
        for name, key in (("argv", "rare_argv"), ("environment", "rare_env"))])
    rare.update_layout(barmode="stack", title="Values seen once in the fleet, per host",
                       height=340)
    return {"plot-hosts": json.loads(per_host.to_json()),
            "plot-spread": json.loads(spread.to_json()),
            "plot-rare": json.loads(rare.to_json())}


def write_report(state: Any, path: str | Path) -> Path:
    """Write the report page of a batch to ``path`` (one self-contained HTML file)."""
    import jinja2
    from plotly.offline import get_plotlyjs

    views = fleet_views(state)
    env = jinja2.Environment(autoescape=True)
    figures = json.dumps(_figures(views)).replace("</", "<\\/")
    page = env.from_string(_PAGE).render(
        **views, dumps=list(state.dumps.values()), commands=state.meta.get("commands", []),
        version=html.escape(str(state.meta.get("kvmfx_version", ""))),
        totals=_totals(state),
        plotly_js=f"<script>{get_plotlyjs()}</script>", figures=figures,
        max_listed=MAX_LISTED)
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def _totals(state: Any) -> dict[str, int]:
    statuses = Counter(e["status"] for e in state.dumps.values())
    return {s: statuses.get(s, 0) for s in ("ok", "partial", "failed")}
