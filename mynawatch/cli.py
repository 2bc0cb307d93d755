"""The `mynawatch` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from mynawatch.settings import Settings, SettingsError, load_settings

TEMPLATE = Path(__file__).parent / "templates" / "mynawatch.toml"


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _settings(args) -> Settings:
    path = Path(args.config) if args.config else Path("mynawatch.toml")
    if not path.exists() and not args.config:
        raise UserError("no mynawatch.toml here: run `mynawatch init` first, or pass --config PATH")
    return load_settings(path)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def cmd_init(args) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise UserError(f"{path} already exists (use --force to overwrite)")
    path.write_text(TEMPLATE.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {path}: edit the sources and [smtp], then `mynawatch collect` or `mynawatch run`")
    return 0


def cmd_collect(args) -> int:
    from collector.fetch import make_client
    from collector.jobs import collect_round
    from store.db import make_sessions

    settings = _settings(args)
    if not settings.sources:
        raise UserError("no [[sources]] in the settings file: nothing to collect")
    sessions = make_sessions(settings.database_url)
    with make_client(settings.fetch) as client:
        outcomes = collect_round(sessions, list(settings.sources), client, settings.fetch, now=_now())
    failed = 0
    for o in outcomes:
        detail = f"{o.new_items} new" if o.outcome != "failed" else o.error
        print(f"{o.source:30} {o.outcome:13} {detail}")
        failed += o.outcome == "failed"
    print(f"{len(outcomes) - failed} of {len(outcomes)} sources answered")
    return 0 if failed < len(outcomes) else 1


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)
    if done >= total:
        print(file=sys.stderr)


def cmd_classify(args) -> int:
    from classifier.jobs import tag_items, tag_trends
    from mynawatch.models import current_model
    from store.db import make_sessions

    settings = _settings(args)
    sessions = make_sessions(settings.database_url)
    model = current_model(sessions)
    n = tag_items(sessions, model, now=_now(), everything=args.all, progress=_progress if sys.stderr.isatty() else None)
    t = tag_trends(sessions, model)
    print(f"tagged {n} items and {t} trend terms with model {model.version}")
    return 0


def cmd_report(args) -> int:
    from mynawatch.models import current_model
    from reports.jobs import write_daily_report
    from store.db import make_sessions

    settings = _settings(args)
    try:
        day = date.fromisoformat(args.date) if args.date else (_now() + timedelta(hours=9)).date() - timedelta(days=1)
    except ValueError:
        raise UserError(f"--date {args.date!r}: expected YYYY-MM-DD") from None
    sessions = make_sessions(settings.database_url)
    model = current_model(sessions)
    out = Path(args.out) if args.out else settings.report_dir
    try:
        paths = write_daily_report(sessions, model_version=model.version, day=day, out_dir=out,
                                   smtp=settings.smtp, send=args.send, now=_now())
    except OSError as exc:
        raise UserError(f"could not write or send the report: {exc}") from exc
    for kind, path in paths.items():
        print(f"{kind:6} {path}")
    return 0


def cmd_run(args) -> int:
    from mynawatch.scheduler import run_forever

    run_forever(_settings(args))
    return 0


def cmd_demo(args) -> int:
    from mynawatch.demo import describe, run_demo

    started = time.monotonic()
    result = run_demo(Path(args.out), days=args.days)
    print(describe(result))
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def cmd_tag(args) -> int:
    from classifier.jobs import tag_lines

    model = _model_for(args)
    if args.path == "-":
        tagged, refused = tag_lines(model, sys.stdin, sys.stdout)
    else:
        try:
            with open(args.path, encoding="utf-8") as fh:
                tagged, refused = tag_lines(model, fh, sys.stdout)
        except FileNotFoundError:
            raise UserError(f"{args.path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{args.path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if refused:
        print(f"{refused} line(s) refused: see the \"error\" objects in the output", file=sys.stderr)
        return 1
    return 0


def _model_for(args):
    """The current model; with a settings file, its store's human corrections are part of training."""
    from mynawatch.models import current_model
    from store.db import make_sessions

    path = Path(args.config) if args.config else Path("mynawatch.toml")
    sessions = make_sessions(load_settings(path).database_url) if path.exists() else None
    return current_model(sessions, force=getattr(args, "force", False))


def _test_split():
    from classifier.corpus import load_corpus

    return [e for e in load_corpus() if e.split == "test"]


def cmd_classifier_train(args) -> int:
    started = time.monotonic()
    model = _model_for(args)
    print(f"model {model.version}: {model.info.get('examples', '?')} examples, seed {model.info.get('seed')}, "
          f"ready in {time.monotonic() - started:.1f} s")
    return 0


def cmd_classifier_evaluate(args) -> int:
    from classifier.corpus import CorpusError, read_examples
    from classifier.evaluate import evaluate, pin_floors, read_floors, render_evaluation

    model = _model_for(args)
    try:
        gold = read_examples(Path(args.gold)) if args.gold else _test_split()
    except (CorpusError, FileNotFoundError, UnicodeDecodeError) as exc:
        raise UserError(str(exc)) from None
    ev = evaluate(gold, model.predict([(e.title, e.text) for e in gold]))
    floors = read_floors()
    print(f"model {model.version} on {'the test split' if not args.gold else args.gold}")
    print(render_evaluation(ev, floors=None if args.gold else floors), end="")
    if args.pin:
        if args.gold:
            raise UserError("--pin only applies to the test split")
        print("pinned floors:", pin_floors(ev))
        return 0
    below = [k for k, v in ev.headline.items() if not args.gold and k in floors and v < floors[k]]
    return 1 if below else 0


def cmd_classifier_explain(args) -> int:
    import json

    from classifier.model import explain

    model = _model_for(args)
    out = explain(model, args.title, args.text or "")
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    lab = out["label"]
    print(f"relevant: {lab['relevant']} (p={lab['scores']['relevant']['p']:.3f})")
    print(f"services: {', '.join(lab['services']) or '-'}   top: {lab['scores']['services']}")
    print(f"cause: {lab['cause']} ({lab['scores']['cause']['confidence']:.3f})   "
          f"sentiment: {lab['sentiment']} ({lab['scores']['sentiment']['confidence']:.3f})")
    if lab["scores"]["low_confidence"]:
        print(f"below the confidence floor: {', '.join(lab['scores']['low_confidence'])}")
    print(f"rules fired: {', '.join(out['rules']) or '-'}")
    print(f"tokens: {' '.join(out['tokens'])}")
    for axis, pairs in out["drivers"].items():
        print(f"{axis}: " + ", ".join(f"{name} {value:+.2f}" for name, value in pairs))
    return 0


def cmd_label(args) -> int:
    from classifier.jobs import human_label
    from mynawatch.models import current_model
    from store.db import make_sessions

    settings = _settings(args)
    sessions = make_sessions(settings.database_url)
    try:
        label = human_label(sessions, current_model(sessions), args.item, relevant=args.relevant,
                            services=args.service, cause=args.cause, sentiment=args.sentiment, now=_now())
    except KeyError:
        raise UserError(f"no item {args.item} in the store") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"item {args.item}: {label.as_json() | {'scores': 'human'}} (used by reports now, in training at the next train)")
    return 0


def cmd_sources(args) -> int:
    from sqlalchemy import select

    from store.db import make_sessions
    from store.tables import Source

    settings = _settings(args)
    sessions = make_sessions(settings.database_url)
    with sessions.begin() as session:
        rows = session.scalars(select(Source).order_by(Source.name)).all()
        print(f"{'source':28} {'status':24} {'last success (UTC)':20} {'failures':>8} {'newest item (UTC)':20}")
        for s in rows:
            fmt = (lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "-")
            print(f"{s.name:28} {s.status[:24]:24} {fmt(s.last_success_at):20} {s.failure_score:8.1f} "
                  f"{fmt(s.last_new_item_at):20}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mynawatch", description="Monitor of Japan's My Number (マイナ) systems "
                                     "in news and social feeds: collect, classify, report, alert.")
    parser.add_argument("--config", help="settings file (default: ./mynawatch.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a commented mynawatch.toml with real Japanese sources")
    p.add_argument("--path", default="mynawatch.toml", help="where to write it (default: ./mynawatch.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("collect", help="fetch every source once and store new items")
    p.add_argument("--once", action="store_true", help="one round, then exit (the default; `run` keeps going)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("classify", help="tag stored items the current model has not tagged yet")
    p.add_argument("--all", action="store_true", help="re-tag every item (after a model change)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("report", help="write the daily report (HTML, text, chart, digest .eml)")
    p.add_argument("--date", help="the day, YYYY-MM-DD in Asia/Tokyo (default: yesterday)")
    p.add_argument("--out", help="folder (default: [reports] dir of the settings)")
    p.add_argument("--send", action="store_true", help="also send the digest by email (once per day and recipient)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="run the scheduler: collect, classify, alert and report on schedule")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the whole pipeline on the bundled sample month, offline")
    p.add_argument("--out", default="demo-output", help="output folder, replaced if it exists (default: demo-output)")
    p.add_argument("--days", type=int, default=30, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("tag", help="tag a JSONL batch: {id,title,text} per line in, labels per line out")
    p.add_argument("path", help="a JSONL file, or - for standard input")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("classifier", help="train, evaluate or explain the classifier")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = csub.add_parser("train", help="train (or load the cached) model: corpus + the store's human labels")
    c.add_argument("--force", action="store_true", help="retrain even when a cached model matches")
    c.set_defaults(func=cmd_classifier_train)
    c = csub.add_parser("evaluate", help="per-axis precision, recall, F1, confusion and calibration")
    c.add_argument("--gold", help="a JSONL file with gold labels in the taxonomy format (default: the test split)")
    c.add_argument("--pin", action="store_true", help="re-pin the CI quality floors to the current figures")
    c.set_defaults(func=cmd_classifier_evaluate)
    c = csub.add_parser("explain", help="the labels of one text, their probabilities and what drove them")
    c.add_argument("title", help="the headline (or the whole text)")
    c.add_argument("text", nargs="?", default="", help="the body, optional")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_classifier_explain)

    p = sub.add_parser("label", help="correct an item's labels by hand (wins over the model in reports)")
    p.add_argument("item", type=int, help="the item id (items.id)")
    rel = p.add_mutually_exclusive_group()
    rel.add_argument("--relevant", dest="relevant", action="store_true", default=None, help="it is about the systems")
    rel.add_argument("--irrelevant", dest="relevant", action="store_false", help="it is not")
    p.add_argument("--service", action="append", help="a service code (repeat for several); replaces the services")
    p.add_argument("--cause", help="a cause code")
    p.add_argument("--sentiment", help="a sentiment code")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("sources", help="list each source's health")
    p.set_defaults(func=cmd_sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UserError, SettingsError) as exc:
        print(f"mynawatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mynawatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
