"""Config, rule and playbook validation: every problem names file, line and key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from xwatch.cli import main
from xwatch.config import load_config
from xwatch.errors import ConfigError
from xwatch.settings import load_settings


def problems_of(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return [str(p) for p in caught.value.problems]


def test_the_embedded_default_and_shipped_rules_are_valid(in_repo_root: Path) -> None:
    settings = load_settings(None)
    assert [b.id for b in settings.config.brands] == ["kettlebird"]
    assert len(settings.rules.rules) >= 3
    # every shipped rule links an existing playbook
    assert all(r.playbook in settings.playbooks for r in settings.rules.rules)


def test_relative_paths_resolve_against_the_config_file(project: Path) -> None:
    config, name = load_config(project / "config.yaml")
    assert config.rules_dir == project / "rules"
    assert name == str(project / "config.yaml")


def test_wrong_type_in_a_rule_names_file_line_and_key(project: Path) -> None:
    rule_file = project / "rules" / "broken.yaml"
    rule_file.write_text(
        "rules:\n"
        "  - id: too-sure\n"
        "    title: x\n"
        "    when:\n"
        "      signal: volume_up\n"
        "      likelihood: 1.5\n"
        "    playbook: mention-spike\n",
        "utf-8",
    )
    assert problems_of(project / "config.yaml") == [
        f"{rule_file}:6: rules[0].when.likelihood: Input should be less than or equal to 1 "
        "(found 1.5)"
    ]


def test_unknown_playbook_and_notifier_are_reported_where_they_are(project: Path) -> None:
    rule_file = project / "rules" / "broken.yaml"
    rule_file.write_text(
        "rules:\n"
        "  - id: orphan\n"
        "    title: x\n"
        "    when: {signal: volume_up}\n"
        "    playbook: no-such-playbook\n"
        "    notify: [pager]\n",
        "utf-8",
    )
    found = problems_of(project / "config.yaml")
    assert any(
        p.startswith(f"{rule_file}:5: rules[0].playbook: no playbook with id 'no-such-playbook'")
        for p in found
    ), found
    assert any(
        p.startswith(f"{rule_file}:6: rules[0].notify: unknown notifier 'pager'") for p in found
    ), found


def test_an_unknown_notifier_in_the_alerting_section_is_reported_where_it_is(
    project: Path,
) -> None:
    """A check across sections (alerting names notifiers) names the key and its line,
    not the top of the file with the whole config as what was found."""
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace(
        "  resolve_after_seconds: 7200  # calm for two hours of event time\n",
        "  resolve_after_seconds: 7200\n"
        "  escalate_to: [console, pager]\n"
        "  routes:\n"
        "    - severity: [critical]\n"
        "      notify: [pagr]\n",
    )
    config.write_text(text, "utf-8")
    lines = text.splitlines()
    escalate = lines.index("  escalate_to: [console, pager]") + 1
    assert problems_of(config) == [
        f"{config}:{escalate}: alerting.escalate_to[1]: Value error, unknown notifier 'pager' "
        "(configured: console) (found 'pager')"
    ]
    config.write_text(text.replace("[console, pager]", "[console]"), "utf-8")
    notify = lines.index("      notify: [pagr]") + 1
    assert problems_of(config) == [
        f"{config}:{notify}: alerting.routes[0].notify[0]: Value error, unknown notifier "
        "'pagr' (configured: console) (found 'pagr')"
    ]


@pytest.mark.parametrize("account", ["@", "", " ", "kettle bird", "@kettlebird!"])
def test_an_account_that_is_no_handle_is_refused_on_its_line(project: Path, account: str) -> None:
    """A blank handle would make every post without a handle the brand's own (not
    counted in its series)."""
    config = project / "config.yaml"
    text = config.read_text("utf-8")
    assert '    accounts: ["kettlebird", "kettlebird_jp"]\n' in text
    text = text.replace('"kettlebird_jp"]', f'"kettlebird_jp", {account!r}]')
    config.write_text(text, "utf-8")
    line = (
        text.splitlines().index(f'    accounts: ["kettlebird", "kettlebird_jp", {account!r}]') + 1
    )
    assert problems_of(config) == [
        f"{config}:{line}: brands[0].accounts[2]: Value error, expected an X handle like "
        f"'@kettlebird' (letters, digits, _) (found {account!r})"
    ]


def test_a_brand_s_time_zone_is_an_iana_name_checked_on_its_line(project: Path) -> None:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace(
        "    name: Kettlebird\n", "    name: Kettlebird\n    timezone: America/New_Yrok\n"
    )
    config.write_text(text, "utf-8")
    line = text.splitlines().index("    timezone: America/New_Yrok") + 1
    assert problems_of(config) == [
        f"{config}:{line}: brands[0].timezone: Value error, unknown time zone "
        "'America/New_Yrok' (an IANA name, like Asia/Tokyo or UTC) "
        "(found 'America/New_Yrok')"
    ]
    config.write_text(text.replace("New_Yrok", "New_York"), "utf-8")
    assert load_settings(config).config.brands[0].timezone == "America/New_York"


def test_unknown_key_missing_key_and_bad_signal(project: Path) -> None:
    rule_file = project / "rules" / "broken.yaml"
    rule_file.write_text(
        "rules:\n"
        "  - id: typo\n"
        "    titel: x\n"
        "    when: {signal: volume_sideways}\n"
        "    playbook: mention-spike\n",
        "utf-8",
    )
    found = problems_of(project / "config.yaml")
    assert f"{rule_file}:2: rules[0].title: Field required" in found
    assert any(p.startswith(f"{rule_file}:3: rules[0].titel: unknown key") for p in found)
    assert any(
        p.startswith(f"{rule_file}:4: rules[0].when.signal: Input should be 'volume_up'")
        and "volume_sideways" in p
        for p in found
    ), found


def test_invalid_yaml_and_duplicate_keys(project: Path) -> None:
    (project / "rules" / "a.yaml").write_text("rules:\n  - id: [unclosed\n", "utf-8")
    (project / "rules" / "b.yaml").write_text("rules: []\nrules: []\n", "utf-8")
    found = problems_of(project / "config.yaml")
    assert any(p.startswith(f"{project / 'rules' / 'a.yaml'}:3: not valid YAML") for p in found)
    assert f"{project / 'rules' / 'b.yaml'}:2: rules: duplicate key" in found


def test_duplicate_rule_ids_across_files(project: Path) -> None:
    (project / "rules" / "zz.yaml").write_text(
        "rules:\n"
        "  - id: mention-volume-spike\n"
        "    title: again\n"
        "    when: {signal: volume_up}\n"
        "    playbook: mention-spike\n",
        "utf-8",
    )
    found = problems_of(project / "config.yaml")
    assert any(
        p.startswith(
            f"{project / 'rules' / 'zz.yaml'}:2: rules[0].id: "
            "'mention-volume-spike' is already defined"
        )
        for p in found
    ), found


def test_config_errors_name_the_line(project: Path) -> None:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("port: 9464", "port: ninety")
    config.write_text(text, "utf-8")
    line = text.splitlines().index("  port: ninety") + 1
    found = problems_of(config)
    assert found == [
        f"{config}:{line}: server.port: Input should be a valid integer, unable "
        "to parse string as an integer (found 'ninety')"
    ]


def test_source_errors_name_the_source_item(project: Path) -> None:
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace("speed: 30000", "speed: -1")
    config.write_text(text, "utf-8")
    found = problems_of(config)
    assert (
        len(found) == 1
        and ": sources[0].speed: Input should be greater than or equal to 0" in found[0]
    ), found


def test_a_webhook_source_without_the_server_is_refused_on_its_line(project: Path) -> None:
    """The webhook is the server's POST /ingest: with the server off it received nothing,
    and nothing said so."""
    config = project / "config.yaml"
    text = config.read_text("utf-8")
    text = text.replace("  - type: demo\n", "  - type: webhook\n  - type: demo\n", 1)
    text = text.replace("server:\n", "server:\n  enabled: false\n", 1)
    config.write_text(text, "utf-8")
    (found,) = problems_of(config)
    assert found == (
        f"{config}:13: sources[0].type: Value error, a webhook source is the server's "
        "POST /ingest, and server.enabled is false: it would receive nothing (found 'webhook')"
    )


def test_playbook_front_matter_is_validated(project: Path) -> None:
    playbook = project / "playbooks" / "bad.md"
    playbook.write_text("---\nid: bad\ntitle: Bad\n---\n# Bad\n", "utf-8")
    found = problems_of(project / "config.yaml")
    assert f"{playbook}:2: crisis_type: Field required" in found or any(
        p.startswith(f"{playbook}:") and "crisis_type: Field required" in p for p in found
    ), found


def test_check_command_exit_codes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(project / "config.yaml")]) == 0
    assert "ok (1 brands" in capsys.readouterr().out

    (project / "rules" / "broken.yaml").write_text("rules:\n  - id: X\n", "utf-8")
    assert main(["check", "-c", str(project / "config.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"{project / 'rules' / 'broken.yaml'}:2: rules[0].id: String should match pattern" in err


def test_check_reports_a_missing_config_file(tmp_path: Path) -> None:
    err = io.StringIO()
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.yaml")
    print(caught.value, file=err)
    assert f"{tmp_path / 'nope.yaml'}:1: cannot read" in err.getvalue()


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_an_infinite_or_nan_number_is_refused_on_its_line(project: Path, value: str) -> None:
    """``.inf`` passes every lower bound (a drain that never times out, a rule that needs
    a streak of forever): numbers must be finite, in the config and in the rules."""
    config = project / "config.yaml"
    text = config.read_text("utf-8")
    config.write_text(text + f"drain_timeout_seconds: {value}\n", "utf-8")
    assert problems_of(config) == [
        f"{config}:{len(text.splitlines()) + 1}: drain_timeout_seconds: Input should be a "
        f"finite number (found {float(value.replace('.', '')):g})"
    ]
    config.write_text(text, "utf-8")
    rule_file = project / "rules" / "endless.yaml"
    rule_file.write_text(
        "rules:\n"
        "  - id: endless\n"
        "    title: x\n"
        f"    when: {{signal: volume_up, likelihood: {value}}}\n"
        "    playbook: mention-spike\n",
        "utf-8",
    )
    assert problems_of(config) == [
        f"{rule_file}:4: rules[0].when.likelihood: Input should be a finite number "
        f"(found {float(value.replace('.', '')):g})"
    ]


def test_a_fallback_language_without_a_scorer_is_refused_on_its_line(project: Path) -> None:
    """It passed ``check``, then stopped ``run`` with a traceback."""
    config = project / "config.yaml"
    text = config.read_text("utf-8")
    config.write_text(text + "sentiment:\n  fallback_lang: fr\n", "utf-8")
    assert problems_of(config) == [
        f"{config}:{len(text.splitlines()) + 2}: sentiment.fallback_lang: Value error, "
        "expected a language with a scorer (en, ja; a trained model under sentiment.models "
        "adds its language) (found 'fr')"
    ]
    model = project / "fr.npz"
    config.write_text(text + f"sentiment:\n  fallback_lang: FR\n  models: {{fr: {model}}}\n")
    assert load_settings(config).config.sentiment.fallback_lang == "FR"


def test_check_and_run_refuse_files_that_are_not_there(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check`` said ok, then ``run`` stopped (a model) or replayed nothing and exited 0
    (a replay file): ``check`` and ``run`` look for them first."""
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace(
        "  - type: demo", "  - type: replay\n    path: history/mentions.jsonl.gz\n  - type: demo"
    )
    text += "sentiment:\n  models:\n    ja: models/ja.npz\n"
    config.write_text(text, "utf-8")
    lines = text.splitlines()
    assert load_settings(config)  # a backtest reads its own --input
    assert main(["check", "-c", str(config)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{config}:{lines.index('    path: history/mentions.jsonl.gz') + 1}: sources[0].path: "
        f"expected a file of mentions (found nothing at {project}/history/mentions.jsonl.gz)",
        f"{config}:{lines.index('    ja: models/ja.npz') + 1}: sentiment.models.ja: expected a "
        f"model file from 'xwatch train' (found nothing at {project}/models/ja.npz)",
    ]
    assert main(["run", "-c", str(config), "--exit-when-done"]) == 1
    assert "sources[0].path: expected a file of mentions" in capsys.readouterr().err
    (project / "models").mkdir()
    (project / "models" / "ja.npz").write_bytes(b"not a model")
    (project / "history").mkdir()
    (project / "history" / "mentions.jsonl.gz").write_bytes(b"")
    assert main(["check", "-c", str(config)]) == 1  # there, but no model: as run would say
    assert capsys.readouterr().err == (
        f"xwatch: {project}/models/ja.npz: not an xwatch model (not an .npz archive)\n"
    )


def test_check_and_run_name_the_key_of_a_rules_or_playbooks_folder_not_there(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said ``<folder>:1: rules folder not found``: neither the config nor the key
    (``rules_dir``, resolved against the config's folder) that named the folder."""
    config = project / "config.yaml"
    lines = config.read_text("utf-8").splitlines()
    (project / "rules").rename(project / "old-rules")
    (project / "playbooks").rename(project / "old-playbooks")
    (project / "playbooks").write_text("", "utf-8")
    expected = [
        f"{config}:{lines.index('rules_dir: rules') + 1}: rules_dir: expected a folder of "
        f"rule files (found nothing at {project}/rules)",
        f"{config}:{lines.index('playbooks_dir: playbooks') + 1}: playbooks_dir: expected a "
        f"folder of playbooks (found a file at {project}/playbooks)",
    ]
    assert main(["check", "-c", str(config)]) == 1
    assert capsys.readouterr().err.splitlines() == expected
    assert main(["run", "-c", str(config), "--exit-when-done"]) == 1
    assert capsys.readouterr().err.splitlines() == expected


def test_check_warns_when_the_links_in_alerts_name_a_wildcard_address(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listening on 0.0.0.0 without ``public_url`` made every incident link
    ``http://0.0.0.0:9464/...``, which nobody can open."""
    config = project / "config.yaml"
    text = config.read_text("utf-8")
    assert "host: 127.0.0.1" in text
    config.write_text(text.replace("host: 127.0.0.1", "host: 0.0.0.0"), "utf-8")
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{config}: public_url: warning: not set, so the links in alerts read " in out
    assert "http://0.0.0.0:9464/..." in out
    config.write_text(
        text.replace("host: 127.0.0.1", "host: 0.0.0.0") + "public_url: https://x.example\n"
    )
    assert main(["check", "-c", str(config)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_missing_secret_is_a_warning_for_check_and_a_problem_for_run_check(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run --check`` (systemd's ``ExecStartPre``) said ok, then ``run`` would not start:
    it now checks the environment as ``run`` would, every missing secret at once; ``check``
    warns (a config is often checked elsewhere than where it runs)."""
    for variable in ("XWATCH_WEBHOOK_SECRET", "XWATCH_X_BEARER_TOKEN", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    config = project / "config.yaml"
    text = config.read_text("utf-8").replace(
        "sources:\n", "sources:\n  - type: webhook\n  - type: x_stream\n"
    )
    slack = "  slack: {type: slack, channel: C0123, signing_secret_env: HOME}\n"
    config.write_text(text.replace("notifiers:\n", "notifiers:\n" + slack), "utf-8")
    missing = [
        "environment:0: XWATCH_WEBHOOK_SECRET is not set; the webhook source 'webhook' needs "
        "its shared secret",
        "environment:0: XWATCH_X_BEARER_TOKEN is not set; the x_stream source 'x' needs the "
        "X API bearer token",
    ]
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    for problem in missing:
        assert f"{problem} (warning: not in this environment; run needs it)" in out
    assert main(["run", "--check", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("\n".join(missing)), err
    assert "SLACK_BOT_TOKEN is not set" in err
    monkeypatch.setenv("XWATCH_WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("XWATCH_X_BEARER_TOKEN", "t0ken")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    assert main(["run", "--check", "-c", str(config)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_warning_about_many_brands_names_a_few_and_counts_the_rest(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 brands without accounts made each such warning 10,000 characters long."""
    config = project / "config.yaml"
    brands = "".join(
        f"  - {{id: brand{i:02d}, name: Brand {i}, terms: [brand{i:02d}]}}\n" for i in range(25)
    )
    text = config.read_text("utf-8")
    start, end = text.index("brands:\n") + len("brands:\n"), text.index("\nsources:")
    config.write_text(text[:start] + brands + text[end:], "utf-8")
    assert main(["check", "-c", str(config)]) == 0
    said = capsys.readouterr()
    lines = (said.out + said.err).splitlines()
    warnings = [line for line in lines if "own accounts" in line]
    assert warnings
    for warning in warnings:
        assert "brand00, brand01" in warning and "brand09 and 15 more have none" in warning
        assert "brand24" not in warning and len(warning) < 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "Input should be greater than or equal to 1 (found 0)"),
        ("1.5", "Input should be a valid integer, got a number with a fractional part (found 1.5)"),
    ],
)
def test_a_retention_under_a_day_is_refused_on_its_line(
    project: Path, value: str, expected: str
) -> None:
    """``store.retention_days``: whole days, at least one (``null`` keeps everything)."""
    config = project / "config.yaml"
    shipped = config.read_text("utf-8")
    assert "store:\n  enabled: false\n" in shipped
    text = shipped.replace("store:\n", f"store:\n  retention_days: {value}\n")
    config.write_text(text, "utf-8")
    line = text.splitlines().index(f"  retention_days: {value}") + 1
    assert problems_of(config) == [f"{config}:{line}: store.retention_days: {expected}"]
    config.write_text(shipped.replace("store:\n", "store:\n  retention_days: null\n"), "utf-8")
    assert load_config(config)[0].store.retention_days is None
