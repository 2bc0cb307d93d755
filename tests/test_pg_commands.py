"""The commands on PostgreSQL print what they print on SQLite: the sample feeds served over loopback,
collected, classified, reported, exported, searched, labeled and silenced on each engine."""

from __future__ import annotations

from datetime import datetime, timezone

from mynawatch.cli import main
from mynawatch.demo import sample_feeds, sample_sources
from mynawatch.feedserver import FeedServer

NOW = datetime(2024, 10, 16, 0, 0, tzinfo=timezone.utc)


def _toml(url: str, base_url: str, reports) -> str:
    lines = [f'[store]\nurl = "{url}"\n', f'[reports]\ndir = "{reports}"\n',
             "[fetch]\nhost_interval_seconds = 0\nper_host_connections = 16\n", "[collect]\narticle_pages = false\n"]
    for s in sample_sources(base_url):
        lines.append(f'[[sources]]\nname = "{s.name}"\nurl = "{s.url}"\nkind = "{s.kind}"\n'
                     + (f'publisher = "{s.publisher}"\n' if s.publisher else ""))
    return "\n".join(lines)


def _run(args: list[str], capsys) -> str:
    code = main(args)
    out = capsys.readouterr()
    assert code == 0, (args, out.err)
    assert "Traceback" not in out.err
    return out.out


def _session(url: str, folder, server, capsys) -> dict[str, str]:
    folder.mkdir()
    config = folder / "mynawatch.toml"
    config.write_text(_toml(url, server.base_url, folder / "reports"), encoding="utf-8")
    c = ["--config", str(config)]
    out = {}
    _run(c + ["collect"], capsys)
    _run(c + ["classify"], capsys)
    _run(c + ["report", "--date", "2024-10-01"], capsys)
    out["report"] = (folder / "reports" / "report-2024-10-01.txt").read_text(encoding="utf-8")
    out["export"] = _run(c + ["spikes", "export", "--since", "2024-09-16", "--until", "2024-10-15"], capsys)
    out["search"] = _run(c + ["search", "障害", "--limit", "50", "--format", "json"], capsys)
    out["sql"] = _run(c + ["sql", "SELECT day, service, items, stories FROM daily_service_counts ORDER BY 1, 2",
                           "--format", "csv"], capsys)
    item = out["sql"] and _run(c + ["sql", "SELECT min(item_id) FROM items_labeled WHERE relevant = "
                                    + ("1" if url.startswith("sqlite") else "true"), "--format", "csv"], capsys)
    first = item.splitlines()[1]
    _run(c + ["label", first, "--irrelevant"], capsys)
    out["after label"] = _run(c + ["sql", f"SELECT labeled_by, cause FROM items_labeled WHERE item_id = {first}",
                                   "--format", "csv"], capsys)
    _run(c + ["alerts", "check"], capsys)
    _run(c + ["alerts", "list", "--format", "json"], capsys)
    _run(c + ["silence", "add", "portal", "--for", "2h", "--comment", "試験"], capsys)
    assert "試験" in _run(c + ["silence", "list"], capsys)
    out["sources"] = "\n".join(line.split()[0] for line in _run(c + ["sources"], capsys).splitlines() if line.strip())
    _run(c + ["db", "check"], capsys)
    return out


def test_the_commands_print_the_same_on_both_engines(tmp_path, pg_url, model, capsys):
    with FeedServer(sample_feeds(), now=NOW) as server:
        lite = _session(f"sqlite:///{tmp_path / 'lite' / 'store.sqlite'}", tmp_path / "lite", server, capsys)
        postgres = _session(pg_url, tmp_path / "pg", server, capsys)
    assert "障害" in lite["search"] and lite["export"].count("\n") > 1 and lite["sql"].count("\n") > 3
    for key in lite:
        assert postgres[key] == lite[key], key
