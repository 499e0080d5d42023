"""The daemon's lifecycle: serving while it runs, finite sources, graceful stop."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.factories import GatedSource, mention
from xwatch.alerting.console import ConsoleNotifier
from xwatch.daemon import Daemon
from xwatch.settings import load_settings


def config_on_free_port(project: Path) -> Path:
    config = project / "config.yaml"
    config.write_text(config.read_text("utf-8").replace("port: 9464", "port: 0"), "utf-8")
    return config


@pytest.mark.asyncio
async def test_serves_metrics_and_health_while_running_and_exits_when_done(
    project: Path,
) -> None:
    settings = load_settings(config_on_free_port(project))
    source = GatedSource(
        [mention(f"kettlebird post {i}", at=i) for i in range(50)]
        + [mention("nothing to see", at=60)]
    )
    out = io.StringIO()
    daemon = Daemon(
        settings,
        sources=[source],
        exit_when_done=True,
        notifiers={"console": ConsoleNotifier("console", out)},
    )
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(source.sent.wait(), 10)
    await asyncio.wait_for(daemon.queue.join(), 10)  # everything sent has been processed
    assert daemon.web_url is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.web_url}/metrics") as response:
            text = await response.text()
            assert response.status == 200
        async with http.get(f"{daemon.web_url}/healthz") as health:
            assert health.status == 200
        async with http.get(f"{daemon.web_url}/readyz") as ready:
            assert (await ready.json())["ready"] is True
        async with http.get(f"{daemon.web_url}/playbooks/product-defect") as playbook:
            assert playbook.status == 200
            assert "Product defect" in await playbook.text()
        async with http.get(f"{daemon.web_url}/playbooks/nope") as missing:
            assert missing.status == 404
    assert 'xwatch_mentions_processed_total{brand="kettlebird"} 50.0' in text
    assert "xwatch_mentions_unmatched_total 1.0" in text
    source.finish.set()
    await asyncio.wait_for(task, 10)
    assert daemon.sources_done.is_set()


def test_sigterm_drains_and_exits_cleanly(project: Path, tmp_path: Path) -> None:
    replay = tmp_path / "slow.jsonl"
    replay.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": str(i),
                    "text": "kettlebird",
                    "created_at": f"2026-11-16T09:{i // 60:02d}:{i % 60:02d}Z",
                }
            )
            for i in range(600)
        )
        + "\n",
        "utf-8",
    )
    config = config_on_free_port(project)
    text = config.read_text("utf-8").replace(
        "  - type: demo\n    speed: 30000        # a week in about 20 seconds",
        f"  - type: replay\n    path: {replay}\n    speed: 1",
    )
    config.write_text(text, "utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "xwatch", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:  # wait until it serves
        if "serving http://" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopping: draining" in err
    assert "stopped:" in err
