"""The one validated settings model.

A config file is YAML; it is read once at start (and on reload) into the frozen
``Config`` below, and every problem is reported as ``file:line: key: message``.
With no file, the embedded default (``xwatch/defaults/config.yaml``) is used: the
bundled demo replayed fast, alerts on the console, metrics on 127.0.0.1:9464.

Relative paths (``rules_dir``, ``playbooks_dir``, a replay ``path``, ``store.path``,
``sentiment.models``)
are resolved against the config file's folder; for the embedded default, against
the current folder (run it from the repository root).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xwatch.errors import ConfigError, Problem
from xwatch.model import Severity, normalise_lang
from xwatch.yamlfile import ValueAt, YamlDocument, load_yaml

DEFAULT_CONFIG_NAME = "<embedded default config>"
_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_HANDLE = re.compile(r"@?[A-Za-z0-9_]{1,50}")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def known_zone(name: str) -> str:
    """``name`` if it is an IANA time zone, else a ``ValueError`` saying what is expected."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name, like Asia/Tokyo or UTC)"
        ) from None
    return name


class Brand(Frozen):
    """A brand to watch. ``terms`` find its mentions; ``accounts`` are its own handles;
    ``timezone`` (IANA) is its audience's: the hours and days its rhythm is learned in."""

    id: Annotated[str, Field(pattern=_ID)]
    name: str
    terms: Annotated[tuple[str, ...], Field(min_length=1)]
    accounts: tuple[str, ...] = ()
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("terms")
    @classmethod
    def _terms_not_blank(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        if any(not term.strip() for term in terms):
            raise ValueError("terms must not be blank")
        return terms

    @field_validator("accounts")
    @classmethod
    def _accounts_are_handles(cls, accounts: tuple[str, ...]) -> tuple[str, ...]:
        # a blank one (or "@") would make every post without a handle the brand's own
        for j, account in enumerate(accounts):
            if not _HANDLE.fullmatch(account.strip()):
                raise ValueAt((j,), "expected an X handle like '@kettlebird' (letters, digits, _)")
        return accounts


class ReplaySourceConfig(Frozen):
    """JSON lines of mentions (xwatch's format or X API v2 payloads), optionally gzip'd."""

    type: Literal["replay"]
    name: Annotated[str, Field(pattern=_ID)] = "replay"
    path: Path
    speed: Annotated[float, Field(ge=0)] = 0.0  # 0: as fast as possible; 60: a minute per second


class DemoSourceConfig(Frozen):
    """The bundled demo stream: a week of a fictional brand, with one crisis."""

    type: Literal["demo"]
    name: Annotated[str, Field(pattern=_ID)] = "demo"
    speed: Annotated[float, Field(ge=0)] = 30000.0


class MqttSourceConfig(Frozen):
    """Mentions published to an MQTT broker, one post per message (xwatch JSON or X v2).

    QoS 1 and a persistent session (fixed client id; MQTT 5 ``clean_start=False`` with a
    session expiry, or 3.1.1 ``clean_session=False``), so what is published while xwatch
    is down arrives when it is back. Credentials come from the environment.
    """

    type: Literal["mqtt"]
    name: Annotated[str, Field(pattern=_ID)] = "mqtt"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topics: Annotated[tuple[str, ...], Field(min_length=1)] = ("xwatch/mentions/#",)
    qos: Literal[0, 1, 2] = 1
    client_id: Annotated[str, Field(min_length=1, max_length=64)] = "xwatch"
    protocol: Literal["3.1.1", "5"] = "5"
    session_expiry_seconds: Annotated[int, Field(ge=0)] = 7 * 86400  # MQTT 5 only
    shared_group: str | None = None  # MQTT 5: subscribe to $share/<group>/<topic>
    brand_from_topic: bool = True  # xwatch/mentions/<brand>: the last topic level names it
    tls: bool = False
    ca_file: Path | None = None
    username_env: str = "XWATCH_MQTT_USERNAME"  # read from the environment when set
    password_env: str = "XWATCH_MQTT_PASSWORD"
    reconnect_min_seconds: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_seconds: Annotated[float, Field(gt=0)] = 30.0


class XStreamSourceConfig(Frozen):
    """The X API v2 filtered stream, with rules derived from the brands and backfill by search."""

    type: Literal["x_stream"]
    name: Annotated[str, Field(pattern=_ID)] = "x"
    base_url: str = "https://api.x.com"
    bearer_token_env: str = "XWATCH_X_BEARER_TOKEN"
    sync_rules: bool = True  # make the stream's rules match the brands at start
    backfill: bool = True  # after a gap, fetch what was missed through recent search
    backfill_max_seconds: Annotated[float, Field(gt=0)] = 6 * 3600.0
    # at start, learn each brand's volume of the last 7 days from X's recent counts (needs
    # an X plan with access to them), so that it is judged from the first minute, not
    # after a day of warm-up; a brand whose counts do not arrive in time starts cold
    warm_start: bool = False
    warm_start_timeout_seconds: Annotated[float, Field(gt=0)] = 120.0
    stall_seconds: Annotated[float, Field(gt=0)] = 20.0  # no data nor keep-alive: reconnect
    # Posts the X plan lets this app read a month; exported as xwatch_x_monthly_post_cap so
    # that Prometheus can warn while the month's pace would run past it (None: not watched).
    monthly_post_cap: Annotated[int, Field(ge=1)] | None = None


class WebhookSourceConfig(Frozen):
    """``POST /ingest`` on the daemon's server, signed with HMAC-SHA256."""

    type: Literal["webhook"]
    name: Annotated[str, Field(pattern=_ID)] = "webhook"
    secret_env: str = "XWATCH_WEBHOOK_SECRET"
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    tolerance_seconds: Annotated[int, Field(ge=1)] = 300


SourceConfig = Annotated[
    ReplaySourceConfig
    | DemoSourceConfig
    | MqttSourceConfig
    | XStreamSourceConfig
    | WebhookSourceConfig,
    Field(discriminator="type"),
]


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "", "*", "[::]"})
"""Server hosts that mean every interface: no address to put in a link."""
DEFAULT_SCORER_LANGS = ("en", "ja")
"""The languages the default sentiment scorers cover (``sentiment.router.default_router``)."""


class SentimentConfig(Frozen):
    fallback_lang: str = "en"  # scorer for languages that have none
    # Trained models (``xwatch train``) by language, e.g. {ja: models/ja.npz}: each replaces
    # the default scorer of its language.  Paths are relative to the config file's folder.
    models: dict[str, Path] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _model_languages(cls, models: dict[str, Path]) -> dict[str, Path]:
        for lang in models:
            if not re.match(r"^[a-z]{2,3}$", lang):
                raise ValueError(f"model language {lang!r} must be a language code like 'ja'")
        return models

    @model_validator(mode="after")
    def _fallback_has_a_scorer(self) -> SentimentConfig:
        fallback = normalise_lang(self.fallback_lang)  # "EN-us" is "en"
        scored = sorted({*DEFAULT_SCORER_LANGS, *self.models})
        if fallback not in scored:
            raise ValueAt(
                ("fallback_lang",),
                f"expected a language with a scorer ({', '.join(scored)}; a trained model "
                "under sentiment.models adds its language)",
            )
        return self


class DetectConfig(Frozen):
    scales_seconds: Annotated[tuple[int, ...], Field(min_length=1)] = (60, 300, 900)
    allowed_lateness_seconds: Annotated[int, Field(ge=0, le=3600)] = 60
    samples_per_bucket: Annotated[int, Field(ge=1, le=50)] = 5

    @field_validator("scales_seconds")
    @classmethod
    def _scales_divide_a_day(cls, scales: tuple[int, ...]) -> tuple[int, ...]:
        for scale in scales:
            if scale < 10 or 86400 % scale:
                raise ValueError(f"{scale} is not a bucket width that divides a day (>= 10 s)")
        if len(set(scales)) != len(scales):
            raise ValueError("scales must be distinct")
        return tuple(sorted(scales))


class Route(Frozen):
    """Extra notifiers for incidents of some severities and/or with some rule labels.

    A route with ``severity: [critical]`` also tells its notifiers about every critical
    incident; ``labels: {team: support}`` about every incident with an alert whose rule
    has that label; both: incidents that match both.
    """

    severity: tuple[Severity, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    notify: Annotated[tuple[str, ...], Field(min_length=1)]


class AlertingConfig(Frozen):
    """How alerts become incidents, and how their notifications are delivered.

    Times are event time for what the data drives (resolution, reminders, escalation),
    wall time for delivery retries.
    """

    resolve_after_seconds: Annotated[int, Field(ge=0)] = 7200  # calm this long → resolved
    repeat_after_seconds: Annotated[int, Field(ge=0)] = 3600  # reminder if unacknowledged; 0: off
    escalate_to: tuple[str, ...] = ()  # notifiers told when a critical incident is not
    # acknowledged within its playbook's first-response time
    routes: tuple[Route, ...] = ()
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 2.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 300.0
    give_up_after_seconds: Annotated[float, Field(gt=0)] = 86400.0  # then: failed for good


class ConsoleNotifierConfig(Frozen):
    type: Literal["console"]


class SlackNotifierConfig(Frozen):
    """Slack through the Web API (a bot token with chat:write, files:write)."""

    type: Literal["slack"]
    channel: str  # a channel id (C0123...) or name
    token_env: str = "SLACK_BOT_TOKEN"
    signing_secret_env: str = "SLACK_SIGNING_SECRET"  # verifies /slack/actions requests
    api_url: str = "https://slack.com/api/"  # tests point this at a local server
    chart: bool = True
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0


class EmailNotifierConfig(Frozen):
    """Email through an SMTP server (aiosmtplib)."""

    type: Literal["email"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    sender: str
    recipients: Annotated[tuple[str, ...], Field(min_length=1)]
    chart: bool = True
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0


class WebhookNotifierConfig(Frozen):
    """A JSON POST per notification, signed with HMAC-SHA256 when ``secret_env`` is set."""

    type: Literal["webhook"]
    url: str
    format: Literal["xwatch", "pagerduty"] = "xwatch"
    secret_env: str | None = None
    routing_key_env: str | None = None  # PagerDuty Events v2 integration key
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0


def _console() -> NotifierConfig:
    return ConsoleNotifierConfig(type="console")


NotifierConfig = Annotated[
    ConsoleNotifierConfig | SlackNotifierConfig | EmailNotifierConfig | WebhookNotifierConfig,
    Field(discriminator="type"),
]


class ServerConfig(Frozen):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464


class StoreConfig(Frozen):
    """The embedded SQLite store where detector state is checkpointed (see ``xwatch.store``)."""

    enabled: bool = True
    path: Path = Path("xwatch.sqlite3")  # relative to the config's folder; ":memory:" for tests
    checkpoint_interval_seconds: Annotated[float, Field(gt=0)] = 300.0  # wall time
    # how long resolved incidents (their timeline, deliveries) and ended silences are
    # kept, in days of the data's time; null: for ever
    retention_days: Annotated[int, Field(ge=1)] | None = 90
    # every post a live source hands over is written to ``<path>.journal/`` before the
    # source hears it was taken, and read back at start (``xwatch.journal``): a crash
    # loses no post. false: the posts taken since the last checkpoint die with the process
    journal: bool = True


class ApiConfig(Frozen):
    """The JSON API under ``/api/`` (sentiment labels): on when ``token_env`` is set.

    Clients send ``Authorization: Bearer <token>``; without the variable in the
    environment the API answers 503 to every request.
    """

    token_env: str = "XWATCH_API_TOKEN"
    remember_posts: Annotated[int, Field(ge=1, le=1_000_000)] = 5000  # alerts' samples kept


class Config(Frozen):
    brands: Annotated[tuple[Brand, ...], Field(min_length=1)]
    sources: Annotated[tuple[SourceConfig, ...], Field(min_length=1)]
    sentiment: SentimentConfig = SentimentConfig()
    detect: DetectConfig = DetectConfig()
    alerting: AlertingConfig = AlertingConfig()
    notifiers: dict[str, NotifierConfig] = Field(default_factory=lambda: {"console": _console()})
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    api: ApiConfig = ApiConfig()
    rules_dir: Path = Path("rules")
    playbooks_dir: Path = Path("playbooks")
    playbook_base_url: str | None = None  # None: the daemon serves /playbooks/<id>
    public_url: str | None = None  # how people reach this daemon (incident links); None: server
    queue_size: Annotated[int, Field(ge=1)] = 10000
    dedup_capacity: Annotated[int, Field(ge=1)] = 200_000  # ids remembered to drop duplicates
    drain_timeout_seconds: Annotated[float, Field(ge=0)] = 10.0

    @field_validator("brands")
    @classmethod
    def _unique_brands(cls, brands: tuple[Brand, ...]) -> tuple[Brand, ...]:
        ids = [brand.id for brand in brands]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"brand ids must be unique, repeated: {', '.join(duplicates)}")
        return brands

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: tuple[SourceConfig, ...]) -> tuple[SourceConfig, ...]:
        names = [source.name for source in sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"source names must be unique (set 'name:'), repeated: {', '.join(repeated)}"
            )
        if sum(isinstance(s, WebhookSourceConfig) for s in sources) > 1:
            raise ValueError("at most one webhook source: it is the daemon's POST /ingest")
        return sources

    @field_validator("notifiers")
    @classmethod
    def _notifier_names(cls, notifiers: dict[str, NotifierConfig]) -> dict[str, NotifierConfig]:
        for name in notifiers:
            if not re.match(_ID, name):
                raise ValueError(f"notifier name {name!r} must match {_ID}")
        return notifiers

    @model_validator(mode="after")
    def _webhook_needs_the_server(self) -> Config:
        """The webhook source is the server's ``POST /ingest``: without the server it
        would receive nothing, and say nothing of it."""
        if not self.server.enabled:
            for i, source in enumerate(self.sources):
                if isinstance(source, WebhookSourceConfig):
                    raise ValueAt(
                        ("sources", i, "type"),
                        "a webhook source is the server's POST /ingest, and server.enabled "
                        "is false: it would receive nothing",
                    )
        return self

    @model_validator(mode="after")
    def _routes_name_notifiers(self) -> Config:
        known = ", ".join(sorted(self.notifiers))
        named: list[tuple[tuple[str | int, ...], str]] = [
            (("alerting", "escalate_to", j), n) for j, n in enumerate(self.alerting.escalate_to)
        ] + [
            (("alerting", "routes", i, "notify", j), n)
            for i, route in enumerate(self.alerting.routes)
            for j, n in enumerate(route.notify)
        ]
        for path, name in named:
            if name not in self.notifiers:
                raise ValueAt(path, f"unknown notifier {name!r} (configured: {known})")
        return self

    @property
    def base_url(self) -> str:
        """Where people reach this daemon's web pages, ending in ``/``."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        return f"http://{self.server.host}:{self.server.port}/"

    @property
    def link_warning(self) -> str | None:
        """What is wrong with the links in alerts, if they cannot be opened: without
        ``public_url``, they name the server's address, and a wildcard one (0.0.0.0,
        every interface) is no address anyone can open."""
        if self.public_url or self.server.host not in WILDCARD_HOSTS:
            return None
        return (
            f"public_url: warning: not set, so the links in alerts read {self.base_url}..., "
            f"which nobody can open ({self.server.host} is every interface): set it to the "
            "URL people reach this daemon at (your ingress or proxy)"
        )

    @property
    def playbook_url_base(self) -> str:
        if self.playbook_base_url:
            return self.playbook_base_url.rstrip("/") + "/"
        return f"{self.base_url}playbooks/"

    @property
    def incident_url_base(self) -> str:
        return f"{self.base_url}incidents/"


def load_config(
    path: Path | None = None, *, default_base: Path | None = None, files: bool = False
) -> tuple[Config, str]:
    """Read and validate a config file (or the embedded default).

    Returns the config, with relative paths resolved, and the name to use for it
    in messages. Raises ``ConfigError`` naming file, line and key for each problem.
    The embedded default resolves its paths against ``default_base`` (default: the
    current folder). ``files``: also check that the files it names are there
    (``missing_files``), as ``xwatch check`` and ``xwatch run`` do; a backtest reads
    its own ``--input``.
    """
    if path is None:
        text = resources.files("xwatch.defaults").joinpath("config.yaml").read_text("utf-8")
        document = YamlDocument(text, DEFAULT_CONFIG_NAME)
        base = default_base or Path.cwd()
    else:
        document = load_yaml(path)
        base = path.parent
    config = resolve_paths(document.validate(Config), base)
    if files and (problems := missing_files(config, document)):
        raise ConfigError(problems)
    return config, document.file


def missing_files(config: Config, document: YamlDocument) -> list[Problem]:
    """The files the daemon reads at start that are not there: a replay source's file, a
    trained sentiment model, the rules and playbooks folders (each on its line). Not the
    store's folder: it is the host's (a volume, a state directory) and may not exist where
    the config is checked, and the daemon says so clearly at start if it is missing."""
    problems = []

    def found(path: Path) -> str:
        return "a folder" if path.is_dir() else "nothing"

    for i, source in enumerate(config.sources):
        if isinstance(source, ReplaySourceConfig) and not source.path.is_file():
            problems.append(
                document.problem(
                    ("sources", i, "path"),
                    f"expected a file of mentions (found {found(source.path)} at {source.path})",
                )
            )
    for lang, model in config.sentiment.models.items():
        if not model.is_file():
            problems.append(
                document.problem(
                    ("sentiment", "models", lang),
                    f"expected a model file from 'xwatch train' (found {found(model)} at {model})",
                )
            )
    folders = (
        ("rules_dir", config.rules_dir, "rule files"),
        ("playbooks_dir", config.playbooks_dir, "playbooks"),
    )
    for key, folder, what in folders:
        if not folder.is_dir():
            there = "a file" if folder.exists() else "nothing"
            problems.append(
                document.problem((key,), f"expected a folder of {what} (found {there} at {folder})")
            )
    return problems


def resolve_paths(config: Config, base: Path) -> Config:
    sources = tuple(
        source.model_copy(update={"path": base / source.path})
        if isinstance(source, ReplaySourceConfig)
        else source
        for source in config.sources
    )
    return config.model_copy(
        update={
            "rules_dir": base / config.rules_dir,
            "playbooks_dir": base / config.playbooks_dir,
            "sources": sources,
            "store": resolve_store_path(config.store, base),
            "sentiment": config.sentiment.model_copy(
                update={
                    "models": {lang: base / path for lang, path in config.sentiment.models.items()}
                }
            ),
        }
    )


def resolve_store_path(store: StoreConfig, base: Path) -> StoreConfig:
    if str(store.path) == ":memory:":
        return store
    return store.model_copy(update={"path": base / store.path})
