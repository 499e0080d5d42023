"""The ``xwatch`` command: run, check, backtest, sentiment, train, labels."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from xwatch import __version__, logs
from xwatch.errors import ConfigError, Problem

if TYPE_CHECKING:
    from xwatch.sentiment import Scorer
    from xwatch.settings import Settings

DESCRIPTION = """\
xwatch watches what people post about your brands on X, learns each brand's
normal volume and negative share, and alerts the PR team when a crisis starts,
with the numbers, the posts behind it and the response playbook.

Start with the bundled demo (a week of a fictional brand, with one crisis):
    xwatch run
Validate your own setup:
    xwatch check -c config.yaml
"""

EPILOG = """\
Run 'xwatch COMMAND --help' for the options of a command.

Logs go to stderr, one event per line: logfmt ('text', the default) or JSON
('--log-format json', or XWATCH_LOG_FORMAT=json in production); the level comes from
--log-level or XWATCH_LOG_LEVEL (default: info).
"""


def add_log_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--log-level`` and ``--log-format``, before or after the command.

    After the command their default is "absent" (``SUPPRESS``), so that they never
    undo the same option given before it.
    """
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.lower,
        choices=logs.LEVELS,
        help=f"how much to log on stderr (default: ${logs.LEVEL_ENV}, else info)",
    )
    parser.add_argument(
        "--log-format",
        default=default,
        type=str.lower,
        choices=[*logs.FORMATS, "logfmt"],
        help=f"log lines as logfmt (text) or JSON objects (default: ${logs.FORMAT_ENV}, else text)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xwatch",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xwatch {__version__}")
    add_log_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_help = (
        "the config file (YAML); default: the embedded demo config, with rules/ "
        "and playbooks/ taken from the current folder"
    )

    run = commands.add_parser(
        "run",
        help="run the daemon",
        description="Run the daemon: read the configured sources, detect, alert, serve "
        "/metrics, /healthz, /readyz, /playbooks/ and /incidents/. Stops gracefully on Ctrl-C "
        "or SIGTERM.",
    )
    run.add_argument("-c", "--config", type=Path, help=config_help)
    run.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop when every source has ended (a replay), instead of serving on",
    )
    run.add_argument(
        "--check",
        action="store_true",
        help="validate the config, rules and playbooks, then exit (like 'check')",
    )

    check = commands.add_parser(
        "check",
        help="validate config, rules and playbooks",
        description="Validate the config, every rule file and every playbook. Prints "
        "'file:line: message' for each problem and exits 1, or exits 0 when all is well "
        "(warnings, such as an expired rule, are printed too). With --diff and --data, also "
        "shows what a change of rules would do on recent data.",
    )
    check.add_argument("-c", "--config", type=Path, help=config_help)
    check.add_argument(
        "--diff",
        type=Path,
        metavar="OLD_RULES_DIR",
        help="with --data: replay the mentions with the rule files in OLD_RULES_DIR and with "
        "the config's rules, and print the alerts the change adds (+) and removes (-), per rule",
    )
    check.add_argument(
        "--data",
        type=Path,
        metavar="MENTIONS",
        help="with --diff: the mentions to replay (JSON lines, optionally .gz), as for "
        "'backtest --input'",
    )

    backtest = commands.add_parser(
        "backtest",
        help="replay history through the detectors and rules",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay history in event time through the same pipeline as the daemon.\n\n"
        "  xwatch backtest -c config.yaml --input mentions.jsonl[.gz]\n"
        "      prints the alerts the daemon would have sent (--json for JSON lines)\n"
        "  xwatch backtest --format nab < series.csv\n"
        "      reads 'timestamp,value' rows (value = mentions per bucket) and prints one\n"
        "      anomaly score in [0, 1] per row, from the daemon's volume detector with its\n"
        "      default parameters; row i's score depends on rows 0..i only.\n"
        "  xwatch backtest --format nab --report OUT_DIR --labels windows.json FILE.csv ...\n"
        "      reads the CSV files instead of stdin, turns the detector's signals into the\n"
        "      alerts the daemon would send and judges them against the labelled windows:\n"
        "      writes OUT_DIR/report.md, report.json and a chart per file and per window,\n"
        "      and prints the summary table.",
    )
    backtest.add_argument(
        "--format",
        choices=["mentions", "nab"],
        default="mentions",
        help="input format (default: mentions)",
    )
    backtest.add_argument("-c", "--config", type=Path, help=config_help)
    backtest.add_argument(
        "--input",
        type=Path,
        help="mentions file (JSON lines, optionally .gz), or with --format nab the CSV; "
        "'-' or absent: stdin",
    )
    backtest.add_argument("--json", action="store_true", help="print alert events as JSON lines")
    backtest.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="split the brands across N processes (default: one per CPU; 1 when reading "
        "stdin); the same alerts whatever N",
    )
    backtest.add_argument(
        "files", nargs="*", type=Path, metavar="FILE.csv", help="with --report: NAB CSV files"
    )
    backtest.add_argument(
        "--report",
        type=Path,
        metavar="OUT_DIR",
        help="with --format nab: write a report on FILE.csv against --labels to OUT_DIR",
    )
    backtest.add_argument(
        "--labels", type=Path, help="with --report: NAB windows file (windows.json)"
    )
    backtest.add_argument(
        "--likelihood",
        type=float,
        default=0.9999,
        help="with --report: alert threshold on the likelihood (default: 0.9999)",
    )
    backtest.add_argument(
        "--resolve-after",
        type=float,
        default=7200.0,
        metavar="SECONDS",
        help="with --report: calm time that ends an alert (default: 7200)",
    )

    sentiment = commands.add_parser(
        "sentiment",
        help="score texts from stdin",
        description='Read JSON lines {"text": ..., "lang": optional} on stdin; print '
        'JSON lines {"label": "negative|neutral|positive", "score": float, "lang": ...}, '
        "in order.",
    )
    sentiment.add_argument(
        "--fallback-lang", default="en", help="scorer for languages without one (default: en)"
    )
    sentiment.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="a model from 'xwatch train': it scores every line, or only the lines of its "
        "language when it was trained with --lang (the others get the default scorers)",
    )
    train = commands.add_parser(
        "train",
        help="fit a sentiment model on labelled mentions",
        description='Read JSON lines {"text": ..., "label": "negative|neutral|positive", '
        '"lang": optional} and fit hashed word and character n-grams + TF-IDF + a logistic '
        "regression (multinomial, or on naive Bayes log-count ratios: NB-LR), the kind, "
        "C, class weight and negative bias chosen by stratified cross-validation; print the "
        "cross-validated per-class precision, recall and F1, and save the model as plain "
        "arrays + JSON (.npz, never pickled).",
    )
    train.add_argument(
        "--input",
        type=Path,
        required=True,
        metavar="FILE",
        help="labelled JSON lines ('-': stdin, e.g. from 'xwatch labels export --out -')",
    )
    train.add_argument(
        "--out", type=Path, required=True, metavar="PATH", help="the model file (.npz)"
    )
    train.add_argument(
        "--lang",
        help="the model's language (e.g. ja): only lines of that language are used (their "
        "'lang', or the script when it is missing), and 'sentiment --model' uses it for it only",
    )
    train.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds, >= 2 (default: 5)"
    )
    train.add_argument(
        "--bits",
        type=int,
        default=18,
        help="hash space: 2**BITS word and 2**BITS character n-gram columns, 10..23 "
        "(default: 18; the file holds 3 weights per column)",
    )
    labels = commands.add_parser(
        "labels",
        help="the team's sentiment labels in the store",
        description="The sentiment labels given to alerts' sample posts (POST /api/labels, "
        "Slack), kept in the store.",
    )
    labels_commands = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    labels_export = labels_commands.add_parser(
        "export",
        help="write the training set for 'xwatch train --input'",
        description='Write JSON lines {"text", "label", "lang"}, one per labelled post (its '
        "latest label; not_negative becomes neutral), for 'xwatch train --input'.",
    )
    labels_export.add_argument("-c", "--config", type=Path, help=config_help)
    labels_export.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the file to write ('-': stdout)"
    )
    for command in (run, check, backtest, sentiment, train, labels_export):
        add_log_options(command, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader that stopped early shows here, not at the exit
    except BrokenPipeError:
        # the reader stopped reading (``| head``): not a failure to report with a traceback;
        # what is left to write goes nowhere, and the exit code is a tool's killed by
        # SIGPIPE, as ``grep`` or ``cat`` would give
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        level, log_format = logs.resolve(args.log_level, args.log_format)
    except logs.LogSettingsError as exc:
        print(f"xwatch: {exc}", file=sys.stderr)
        return 2
    logs.configure(level, log_format)
    try:
        if args.command == "check" or (args.command == "run" and args.check):
            return check(
                args.config,
                sys.stdout,
                diff=getattr(args, "diff", None),
                data=getattr(args, "data", None),
                environment=args.command == "run",
            )
        if args.command == "run":
            return run(args.config, args.exit_when_done)
        if args.command == "backtest":
            if args.report is not None or args.files or args.labels is not None:
                return backtest_report(args, sys.stdout)
            if args.format == "nab":
                return backtest_nab(sys.stdin, sys.stdout, args.input)
            return backtest_mentions(args.config, args.input, args.json, sys.stdout, args.jobs)
        if args.command == "sentiment":
            return sentiment(sys.stdin, sys.stdout, args.fallback_lang, args.model)
        if args.command == "train":
            return train(args.input, args.out, args.lang, args.folds, args.bits, sys.stdout)
        if args.command == "labels":
            return labels_export(args.config, args.out, sys.stdout)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except _model_error() as exc:  # evaluated only when an exception got here
        print(f"xwatch: {exc}", file=sys.stderr)
        return 1
    except _replay_error() as exc:
        print(f"xwatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _replay_error() -> type[Exception]:
    from xwatch.sources.replay import ReplayError

    return ReplayError


def _model_error() -> type[Exception]:
    """``ModelError``, imported only when needed (numpy and scipy load slowly)."""
    from xwatch.sentiment.trained import ModelError

    return ModelError


def check(
    config_path: Path | None,
    out: TextIO,
    *,
    diff: Path | None = None,
    data: Path | None = None,
    now: datetime | None = None,
    environment: bool = False,
) -> int:
    """``xwatch check``: validate the config, rules and playbooks (a ``ConfigError`` lists
    every problem, printed by ``main``); warn about what is valid but likely a mistake,
    such as a rule that has expired (at ``now``, default: the wall clock).

    A secret the sources and notifiers need that is not in this environment is a warning
    (a config is often checked elsewhere than where it runs); with ``environment``
    (``xwatch run --check``, in the daemon's own environment: systemd's ``ExecStartPre``)
    it is a problem, as it would stop ``run``.

    With ``diff`` (a folder of old rule files) and ``data`` (a mentions file): replay the
    data through the pipeline with the old rules and with the config's rules, and print
    the alerts that the change adds and removes, per rule.
    """
    from xwatch.settings import load_settings

    if (diff is None) != (data is None):
        print("xwatch check: --diff OLD_RULES_DIR and --data MENTIONS go together", file=sys.stderr)
        return 2
    settings = load_settings(config_path, files=True)  # ConfigError → printed by main
    if settings.config.sentiment.models:  # as the daemon will load them
        from xwatch.sentiment.trained import router_from_config

        router_from_config(settings.config)  # ModelError → printed by main
    missing = missing_secrets(settings)
    if missing and environment:
        raise ConfigError(missing)
    for problem in missing:
        print(f"{problem} (warning: not in this environment; run needs it)", file=out)
    if settings.config.link_warning is not None:
        print(f"{settings.config_file}: {settings.config.link_warning}", file=out)
    for warning in settings.rules.warnings(now or datetime.now(UTC)):
        print(warning, file=out)
    rules = settings.rules.rules
    print(
        f"{settings.config_file}: ok ({len(settings.config.brands)} brands, {len(rules)} "
        f"rules, {len(settings.playbooks.playbooks)} playbooks)",
        file=out,
    )
    if diff is not None and data is not None:
        with readable_twice(data) as path:
            print_rule_diff(settings, diff, path, out, shown=data)
    return 0


@contextlib.contextmanager
def readable_twice(path: Path) -> Iterator[Path]:
    """``path`` if it is a file; a pipe (``-``, ``/dev/stdin``, ``<(zcat ...)``) copied to a
    temporary file first, so that it can be read twice (the old rules' replay used it up,
    and the new rules saw no post: every alert read as removed)."""
    if str(path) != "-" and path.is_file():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="xwatch-") as folder:
        copy = Path(folder) / "data"
        try:
            with copy.open("wb") as sink:
                if str(path) == "-":
                    shutil.copyfileobj(sys.stdin.buffer, sink)
                else:
                    with path.open("rb") as source:
                        shutil.copyfileobj(source, sink)
        except OSError as exc:
            from xwatch.sources.replay import ReplayError

            raise ReplayError(f"{path}: cannot read: {exc.strerror or exc}") from None
        yield copy


def missing_secrets(settings: Settings) -> list[Problem]:
    """The secrets the daemon would not start without that this environment lacks, all of
    them: each source and notifier is built alone, as ``run`` builds it (nothing connects
    or starts)."""
    import dataclasses

    from prometheus_client import CollectorRegistry

    from xwatch.alerting import MemoryRefs
    from xwatch.config import WebhookSourceConfig
    from xwatch.daemon import build_notifiers
    from xwatch.metrics import Metrics
    from xwatch.sources import MetricsReport, build_sources
    from xwatch.sources.webhook import WebhookIngest

    config = settings.config
    report = MetricsReport(Metrics(CollectorRegistry()))
    builds: list[Callable[[], object]] = []
    for source in config.sources:
        if isinstance(source, WebhookSourceConfig):  # an endpoint, not one of the sources
            builds.append(functools.partial(WebhookIngest, source, report, lambda _: True))
        else:
            alone = config.model_copy(update={"sources": (source,)})
            builds.append(functools.partial(build_sources, alone, report))
    for name, notifier in config.notifiers.items():
        alone = config.model_copy(update={"notifiers": {name: notifier}})
        one = dataclasses.replace(settings, config=alone)
        builds.append(functools.partial(build_notifiers, one, MemoryRefs()))
    problems: list[Problem] = []
    for build in builds:
        try:
            build()
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def print_rule_diff(
    settings: Settings, old_dir: Path, data: Path, out: TextIO, shown: Path | None = None
) -> None:
    """The alerts (firings) that the config's rules add to, and remove from, what the rules
    in ``old_dir`` make of ``data`` (named ``shown`` in the output), per rule."""
    from xwatch.alerting.render import clean, describe
    from xwatch.backtest import replay_file
    from xwatch.model import Alert, AlertEvent, EventKind, Measure
    from xwatch.rules import load_rules
    from xwatch.settings import Settings

    old = Settings(
        settings.config,
        settings.config_file,
        settings.playbooks,
        load_rules(old_dir, settings.config, settings.playbooks),  # ConfigError → main
    )

    def firings(events: list[AlertEvent]) -> dict[tuple[str, datetime], Alert]:
        return {(e.alert.identity, e.at): e.alert for e in events if e.kind is EventKind.FIRING}

    before = firings(asyncio.run(replay_file(old, data)))
    after = firings(asyncio.run(replay_file(settings, data)))
    added = sorted(after.keys() - before.keys(), key=lambda k: (after[k].rule_id, k[1], k[0]))
    removed = sorted(before.keys() - after.keys(), key=lambda k: (before[k].rule_id, k[1], k[0]))
    # the same alert at the same time, of another severity: it pages other people
    regraded = sorted(
        (k for k in after.keys() & before.keys() if after[k].severity != before[k].severity),
        key=lambda k: (after[k].rule_id, k[1], k[0]),
    )
    same = len(after) - len(added) - len(regraded)
    print(
        f"rules {old_dir} -> {settings.config.rules_dir} on {shown or data}: {len(added)} "
        f"alerts added, {len(removed)} removed, {len(regraded)} of another severity, "
        f"{same} unchanged",
        file=out,
    )
    changes = [("+", key, after[key]) for key in added]
    changes += [("-", key, before[key]) for key in removed]
    changes += [("~", key, after[key]) for key in regraded]
    for rule_id in sorted({alert.rule_id for _, _, alert in changes}):
        mine = [(sign, key, alert) for sign, key, alert in changes if alert.rule_id == rule_id]
        counts = {sign: sum(s == sign for s, _, _ in mine) for sign in "+-~"}
        summary = f"+{counts['+']} -{counts['-']}" + (f" ~{counts['~']}" if counts["~"] else "")
        print(f"  {rule_id}: {summary}", file=out)
        for sign, (_, at), alert in mine:
            what = describe(alert.signal)
            if alert.term:
                what = f"{alert.term!r}, {what}"
            if alert.signal.measure is Measure.MENTION and alert.bucket.samples:
                post = alert.bucket.samples[0]
                what += f", @{clean(post.author.handle, 40)}: {clean(post.text, 60)!r}"
            when = f"{at:%Y-%m-%d %H:%M} UTC"
            severity = alert.severity.value
            if sign == "~":
                severity = f"{before[(alert.identity, at)].severity.value} -> {severity}"
            print(f"    {sign} {when} {alert.series} [{severity}] {what}", file=out)


def run(config_path: Path | None, exit_when_done: bool) -> int:
    import prometheus_client

    from xwatch import gc_tuning
    from xwatch.daemon import Daemon
    from xwatch.settings import load_settings

    # no *_created series: as many again as the rest, and nothing reads them (README)
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    base = Path.cwd()  # the embedded default's relative paths, on a reload too
    settings = load_settings(config_path, default_base=base, files=True)
    if settings.config.link_warning is not None:
        logging.getLogger("xwatch").warning("%s", settings.config.link_warning)
    daemon = Daemon(
        settings,
        exit_when_done=exit_when_done,
        reload=lambda: load_settings(config_path, default_base=base),
        settle=gc_tuning.settle,  # once loaded, the store's detectors too: a stream for hours
    )
    try:
        asyncio.run(daemon.run())
    except OSError as exc:
        logging.getLogger("xwatch").error("%s", exc)
        return 1
    return 0


def backtest_mentions(
    config_path: Path | None,
    input_path: Path | None,
    as_json: bool,
    out: TextIO,
    jobs: int | None = None,
) -> int:
    from xwatch import gc_tuning
    from xwatch.alerting.render import render_text
    from xwatch.backtest import print_progress, replay_file, replay_in_processes
    from xwatch.settings import load_settings

    if jobs is not None and jobs < 1:
        print(f"xwatch backtest: --jobs must be 1 or more (found {jobs})", file=sys.stderr)
        return 2
    settings = load_settings(config_path)
    gc_tuning.settle()  # (each process of --jobs settles its own)
    if input_path is None or str(input_path) == "-":  # stdin can be read only once
        events = asyncio.run(replay_file(settings, None, progress=print_progress))
    elif not input_path.is_file():  # a pipe (/dev/stdin, <(zcat ...)): read it once, here
        events = asyncio.run(replay_file(settings, input_path, progress=print_progress))
    else:
        jobs = jobs or available_cpus()
        events = replay_in_processes(settings, input_path, jobs, progress=True)
    for event in events:
        if as_json:
            from xwatch.backtest import event_to_json

            out.write(json.dumps(event_to_json(event), ensure_ascii=False) + "\n")
        else:
            out.write(render_text(event) + "\n")
    logging.getLogger("xwatch.backtest").info("%d alert events", len(events))
    return 0


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def backtest_nab(stdin: TextIO, out: TextIO, path: Path | None = None) -> int:
    """``backtest --format nab``: the CSV from ``path`` (``--input``), else ``stdin``."""
    from xwatch.backtest import nab_scores
    from xwatch.report import ReportInputError, read_series, series_rows

    try:
        if path is not None and str(path) != "-":
            rows = read_series(path)
        else:
            rows = series_rows(stdin, "<stdin>")
    except ReportInputError as exc:
        print(exc, file=sys.stderr)
        return 1
    buffer = io.StringIO()
    for score in nab_scores(rows):
        buffer.write(f"{score:.9f}\n")
    out.write(buffer.getvalue())
    return 0


def backtest_report(args: argparse.Namespace, out: TextIO) -> int:
    """``backtest --format nab --report OUT_DIR --labels windows.json FILE.csv ...``"""
    from xwatch.report import ReportInputError, ReportParams, build_report, render_table

    if args.format != "nab" or args.report is None or args.labels is None or not args.files:
        print(
            "usage: xwatch backtest --format nab --report OUT_DIR --labels windows.json "
            "FILE.csv [FILE.csv ...]",
            file=sys.stderr,
        )
        return 2
    if not 0.0 < args.likelihood <= 1.0 or args.resolve_after < 0:
        print("--likelihood must be in (0, 1] and --resolve-after >= 0", file=sys.stderr)
        return 2
    params = ReportParams(args.likelihood, args.resolve_after, str(args.labels))
    try:
        report = build_report(
            args.files,
            args.labels,
            args.report,
            params,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except ReportInputError as exc:
        print(exc, file=sys.stderr)
        return 1
    out.write(render_table(report.results))
    return 0


def sentiment(stdin: TextIO, out: TextIO, fallback_lang: str, model: Path | None = None) -> int:
    from xwatch.model import normalise_lang
    from xwatch.sentiment.lang import guess_lang
    from xwatch.sentiment.router import LanguageRouter, default_router
    from xwatch.sentiment.trained import TrainedScorer

    trained = None if model is None else TrainedScorer.from_file(model)  # ModelError: main
    scorers: dict[str, Scorer] = dict(default_router().scorers)
    if trained is not None and trained.lang is None:  # one model for every line
        scorers = {normalise_lang(fallback_lang): trained}
    elif trained is not None:  # the model scores its language; the defaults, the others
        scorers[normalise_lang(trained.lang)] = trained
    if normalise_lang(fallback_lang) not in scorers:
        print(
            f"xwatch sentiment: --fallback-lang {fallback_lang}: no scorer for it (languages "
            f"with one: {', '.join(sorted(scorers))})",
            file=sys.stderr,
        )
        return 2
    router = LanguageRouter(scorers, fallback_lang)
    batch: list[tuple[str, str | None]] = []

    def flush() -> None:
        results = router.score([t for t, _ in batch], [lang for _, lang in batch])
        for (text, lang), result in zip(batch, results, strict=True):
            out.write(
                json.dumps(
                    {
                        "label": result.label,
                        "score": round(result.score, 4),
                        "lang": lang or guess_lang(text),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        batch.clear()

    for line_no, line in enumerate(stdin, start=1):
        if line_no == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark is not JSON
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, lang = item["text"], item.get("lang")
            if not isinstance(text, str) or not (lang is None or isinstance(lang, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            flush()  # the lines before it are answered: the output stops at the bad line
            print(
                f'<stdin>:{line_no}: expected {{"text": string, "lang": optional string}}',
                file=sys.stderr,
            )
            return 1
        batch.append((text, lang))
        if len(batch) >= 1000:
            flush()
    flush()
    return 0


def labels_export(config_path: Path | None, out_path: Path, out: TextIO) -> int:
    """``xwatch labels export --out FILE``: the store's labels as a training set."""
    from xwatch.config import load_config
    from xwatch.store import Store, StoreError, training_line

    config, name = load_config(config_path)
    if not config.store.enabled:
        print(f"{name}: store.enabled is false: there are no labels to export", file=sys.stderr)
        return 1
    path = config.store.path
    if str(path) != ":memory:" and not Path(path).is_file():
        print(f"no store at {path} (the daemon creates it when it runs)", file=sys.stderr)
        return 1
    try:
        with Store.open(path) as store:
            if str(out_path) == "-":
                items = store.training_set()
                out.write("".join(training_line(item) for item in items))
                count = len(items)
            else:
                count = store.export_labels(out_path)
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return 1
    where = "stdout" if str(out_path) == "-" else str(out_path)
    logging.getLogger("xwatch.labels").info("%d labelled posts written to %s", count, where)
    return 0


def _unwritable(path: Path) -> str:
    """Why a file cannot be written at ``path`` ("" when it seems it can): a folder there,
    or a folder above it that is not one, or that this user cannot write to."""
    if path.is_dir():
        return "it is a folder"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing folder: save creates the rest
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    return ""


def train(
    input_path: Path, out_path: Path, lang: str | None, folds: int, bits: int, out: TextIO
) -> int:
    """``xwatch train``: cross-validate, fit, save; progress on stderr, the report on ``out``."""
    from xwatch.sentiment.trained import VectorizerParams, format_cv, read_examples
    from xwatch.sentiment.trained import train as fit_model

    if not 10 <= bits <= 23:
        print(f"xwatch train: --bits {bits} is not in 10..23", file=sys.stderr)
        return 2
    unwritable = _unwritable(out_path)
    if unwritable:  # said now, not after minutes of cross-validation
        print(f"xwatch train: cannot write the model to {out_path}: {unwritable}", file=sys.stderr)
        return 1
    examples, skipped = read_examples(input_path, lang)
    if skipped:
        print(f"{skipped} lines skipped: not in language {lang}", file=sys.stderr)
    model = fit_model(
        examples,
        lang=lang,
        folds=folds,
        params=VectorizerParams(bits=bits),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    try:
        model.save(out_path)
    except OSError as exc:
        print(f"xwatch train: cannot write the model to {out_path}: {exc}", file=sys.stderr)
        return 1
    out.write(format_cv(model.stats) + "\n")
    out.write(f"model saved to {out_path} (language: {model.lang or 'any'})\n")
    return 0
