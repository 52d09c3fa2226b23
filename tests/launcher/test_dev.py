"""`make run` (whatsapp-dev) does what the README says: a newcomer's whole product on the
local control plane, settings in a file a shell can source, and nothing left on Ctrl-C."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import script

pytestmark = pytest.mark.cluster  # whatsapp-dev starts a local control plane of its own


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "whatsapp-dev exited during start-up"
        assert time.monotonic() < deadline, "whatsapp-dev did not write its env file"
        time.sleep(0.2)


def _sourced(env_file: Path) -> dict[str, str]:
    values = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = value
    return values


def test_whatsapp_dev_runs_the_product_and_stops_cleanly(tmp_path: Path):
    env_file = tmp_path / "dev.env"
    api_port, webhook_port = free_port(), free_port()
    out = (tmp_path / "out.log").open("wb")
    process = subprocess.Popen(
        [
            script("whatsapp-dev"),
            f"--dir={tmp_path / 'state'}",
            f"--api-port={api_port}",
            f"--webhook-port={webhook_port}",
            f"--env-file={env_file}",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(env_file, process)
        settings = _sourced(env_file)
        assert set(settings) >= {"KUBECONFIG", "WA_API_URL", "WA_API_KEY", "WA_WEBHOOK_BASE_URL"}
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"  # it holds the API key
        cluster = Cluster.attach(tmp_path / "state")
        assert cluster is not None
        assert cluster.running()

        instance = str(uuid.uuid4())
        url = f"{settings['WA_API_URL']}/v1/instances/{instance}/channels/whatsapp"
        headers = {"X-Api-Key": settings["WA_API_KEY"]}
        app_secret = "0123456789abcdef0123456789abcdef"
        created = httpx.post(
            url,
            headers=headers,
            timeout=30,
            # No app_secret: whatsapp-dev's operator holds the demo app as the platform app.
            json={"access_token": "EAAGdev", "phone_number_id": "106540352242922"},
        )
        assert created.status_code == 200, created.text
        channel = created.json()
        assert channel["status"] == "active"
        assert channel["webhook_url"] == (
            f"{settings['WA_WEBHOOK_BASE_URL']}/hooks/whatsapp/{instance}"
        )

        # Meta's challenge and a signed event, to the URL the API reported.
        challenge = httpx.get(
            channel["webhook_url"],
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": channel["verify_token"],
                "hub.challenge": "1158201444",
            },
        )
        assert (challenge.status_code, challenge.text) == (200, "1158201444")
        event = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "1",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {"metadata": {"phone_number_id": "106540352242922"}},
                            }
                        ],
                    }
                ],
            }
        ).encode()
        signature = hmac.new(app_secret.encode(), event, hashlib.sha256).hexdigest()
        delivered = httpx.post(
            channel["webhook_url"],
            content=event,
            headers={"X-Hub-Signature-256": f"sha256={signature}"},
        )
        assert delivered.status_code == 200
        assert (
            f"[instance {instance}] event, {len(event)} bytes" in (tmp_path / "out.log").read_text()
        )
        # The whole loop of issue 11: the operator checked the number at the Graph stand-in
        # and registered the override (the stand-in called the receiver's challenge), so a
        # customer's text sent by the stand-in arrives at the instance.
        assert channel["status_reason"] == "ChannelReady"
        sent = subprocess.run(
            [script("whatsapp-graph-standin"), "send-text", "--phone-number-id",
             "106540352242922", "hello from the stand-in"],
            env={**os.environ, **settings}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert channel["webhook_url"] in sent.stdout
        events = (tmp_path / "out.log").read_text().count(f"[instance {instance}] event")
        assert events == 2
        # Issue 20: the onboarding page's link for the demo instance, printed; it serves the
        # page, which loads the stand-in's SDK, and never holds the API key.
        printed = (tmp_path / "out.log").read_text()
        found = re.search(r"onboarding page\s+(http://\S+/onboarding/\S+\?link=\S+)", printed)
        assert found is not None, printed
        page = httpx.get(found.group(1), timeout=30)
        assert page.status_code == 200
        assert "Connect WhatsApp" in page.text
        assert f"{settings['WA_GRAPH_STANDIN_URL']}/_standin/sdk.js" in page.text
        assert settings["WA_API_KEY"] not in page.text
        # The sealing keys are in their own namespace, not where the receiver reads Secrets;
        # the env file points whatsapp-seal and rotate-key at them.
        keys = settings["WA_KEYS_NAMESPACE"]
        assert keys != settings["WA_CHANNELS_NAMESPACE"]
        cluster.kubectl("get", "secret", "whatsapp-channels-sealing-keys", "-n", keys)
        beside = cluster.kubectl(
            "get", "secrets", "-n", settings["WA_CHANNELS_NAMESPACE"], "-o", "name"
        ).stdout.split()
        assert beside == [f"secret/whatsapp-{instance}"]
        sourced_env = {**os.environ, **settings}

        def public_key() -> str:
            return subprocess.run(
                [script("whatsapp-seal"), "--fetch-public-key"],
                env=sourced_env, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip

        before = public_key()
        subprocess.run(
            [script("whatsapp-operator"), "rotate-key"],
            env=sourced_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert public_key() not in {before, ""}
        pids = dict(cluster.pids)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=60)
        out.close()
    assert process.returncode == 0, (tmp_path / "out.log").read_text()
    for pid in pids.values():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} outlived whatsapp-dev")
