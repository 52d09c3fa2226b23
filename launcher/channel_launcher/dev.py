"""`whatsapp-dev`: the whole product on the local control plane, for a newcomer.

Builds what is missing, starts the cluster, applies the CRD, starts the Graph API stand-in
(with one demo number), the operator (pointed at the stand-in), the facade, the receiver and
a stand-in "instance" that prints the events it gets; writes the settings a shell needs to
`.whatsapp-dev.env`; runs until Ctrl-C, then ends everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import signal
import sys
import threading
import urllib.request
from pathlib import Path

from aiohttp import web
from localkube.cluster import Cluster, free_port
from localkube.processes import ClusterError
from localkube.services import Service, ServiceError, script, start_service
from whatsapp_channel.settings import CHANNELS_NAMESPACE_VARIABLE, KEYS_NAMESPACE_VARIABLE

from channel_launcher.product import apply_crd, start_facade, start_operator, start_receiver

REPO = Path(__file__).resolve().parents[2]
# As the chart lays it out: the channels and their Secrets in a namespace of their own (the
# receiver may read every Secret there), the operator's sealing keys in another.
NAMESPACE = "whatsapp-channels"
KEYS_NAMESPACE = "whatsapp-system"
EXAMPLE_INSTANCE = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
# The number the Graph stand-in knows, for the demo (made-up credentials, printed on purpose).
DEMO_NUMBER = {
    "phone_number_id": "106540352242922",
    "waba_id": "102290129340398",
    "access_token": "EAAGdev",
    "app_secret": "0123456789abcdef0123456789abcdef",
    "app_id": "1234567890123456",
}
# The platform's own Meta app against the stand-in: the demo number's app (so a POST may
# leave out app_secret), with a made-up Embedded Signup configuration id. The layout is a
# mounted Secret's, as channel_operator.platform_app reads it.
DEMO_CONFIG_ID = "9876543210987"


def write_platform_app(dev: Path) -> Path:
    directory = dev / "platform-app"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for key, value in (
        ("app_id", DEMO_NUMBER["app_id"]),
        ("app_secret", DEMO_NUMBER["app_secret"]),
        ("config_id", DEMO_CONFIG_ID),
    ):
        path = directory / key
        path.touch(mode=0o600)
        path.write_text(value + "\n")
    return directory


def mint_onboarding_link(api_url: str, api_key: str, instance: str) -> str:
    """The onboarding page's path for `instance`, minted with the API key as a platform
    would (it lives WA_FACADE_ONBOARDING_LINK_SECONDS, 15 minutes by default)."""
    request = urllib.request.Request(  # noqa: S310 - the facade on loopback
        f"{api_url}/v1/instances/{instance}/channels/whatsapp/onboarding-link",
        method="POST",
        headers={"X-Api-Key": api_key},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["url"])


def start_graph_standin(dev: Path, logs: Path) -> Service:
    """`whatsapp-graph-standin serve` on a free loopback port, seeded with the demo number."""
    seed = dev / "graph-numbers.json"
    seed.write_text(json.dumps([DEMO_NUMBER]))
    seed.chmod(0o600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return start_service(
        "whatsapp-graph-standin",
        [script("whatsapp-graph-standin"), "serve", f"--port={port}", f"--seed={seed}"],
        env={},
        log_path=logs / f"whatsapp-graph-standin-{port}.log",
        url=url,
        health_url=f"{url}/_standin/stats",
    )


def _sink(port: int) -> None:
    """The instance stand-in: accepts every forwarded event and says so (a daemon thread:
    it ends with the process)."""

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        print(
            f"[instance {request.match_info['instance_id']}] event, {len(body)} bytes", flush=True
        )
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/instances/{instance_id}/whatsapp", accept)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whatsapp-dev", description=__doc__)
    parser.add_argument("--dir", type=Path, default=REPO / ".localkube", help="state folder")
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--webhook-port", type=int, default=8081)
    parser.add_argument("--env-file", type=Path, default=REPO / ".whatsapp-dev.env")
    parser.add_argument(
        "--graph-url",
        help="ask this Graph API (e.g. https://graph.facebook.com) instead of starting the "
        "stand-in; Meta must then reach the webhooks (a public tunnel to --webhook-port)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    state: Path = args.dir.resolve()
    services: list[Service] = []
    cluster: Cluster | None = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        existing = Cluster.attach(state)
        if existing is not None and existing.running():
            print(f"stopping the previous cluster in {state}")
            existing.stop()
        cluster = Cluster.start(state, tie_to_parent=True)
        print(f"control plane up in {cluster.started_in:.1f}s at {cluster.server}")
        for namespace in (NAMESPACE, KEYS_NAMESPACE):
            cluster.kubectl("create", "namespace", namespace)
        apply_crd(cluster, NAMESPACE)

        dev = state / "dev"
        dev.mkdir(parents=True, exist_ok=True)
        api_key = secrets.token_urlsafe(32)
        keys_file = dev / "api-keys"
        keys_file.write_text(f"dev {api_key}\n")
        keys_file.chmod(0o600)
        forward_secret = dev / "forward-secret"
        forward_secret.write_text(secrets.token_urlsafe(32))
        forward_secret.chmod(0o600)
        api_url = f"http://127.0.0.1:{args.api_port}"
        webhook_base = f"http://127.0.0.1:{args.webhook_port}"
        sink_port = free_port()
        threading.Thread(target=_sink, args=(sink_port,), daemon=True).start()

        logs = state / "logs"
        graph_url = args.graph_url
        platform_app: Path | None = None
        if graph_url is None:
            standin = start_graph_standin(dev, logs)
            services.append(standin)
            graph_url = standin.url
            platform_app = write_platform_app(dev)
        services.append(
            start_operator(
                cluster.kubeconfig,
                logs,
                namespace=NAMESPACE,
                keys_namespace=KEYS_NAMESPACE,
                webhook_base_url=webhook_base,
                graph_base_url=graph_url,
                platform_app_dir=platform_app,
            )
        )
        services.append(
            start_facade(
                cluster.kubeconfig,
                logs,
                namespace=NAMESPACE,
                keys_namespace=KEYS_NAMESPACE,
                api_keys_file=keys_file,
                port=args.api_port,
                platform_app=platform_app is not None,
                onboarding_page=platform_app is not None,
                platform_app_id=DEMO_NUMBER["app_id"] if platform_app else None,
                signup_config_id=DEMO_CONFIG_ID if platform_app else None,
                facebook_sdk_url=f"{graph_url}/_standin/sdk.js" if platform_app else None,
            )
        )
        services.append(
            start_receiver(
                cluster.kubeconfig,
                logs,
                namespace=NAMESPACE,
                forward_url_template=(
                    f"http://127.0.0.1:{sink_port}/instances/{{instance_id}}/whatsapp"
                ),
                forward_secret_file=forward_secret,
                port=args.webhook_port,
            )
        )
        args.env_file.write_text(
            f"export KUBECONFIG={cluster.kubeconfig}\n"
            f"export WA_API_URL={api_url}\n"
            f"export WA_API_KEY={api_key}\n"
            f"export WA_WEBHOOK_BASE_URL={webhook_base}\n"
            # The channels' namespace and the keys' (docs/namespaces.md), as every process
            # reads them: whatsapp-seal and `whatsapp-operator rotate-key` from this shell.
            f"export {CHANNELS_NAMESPACE_VARIABLE}={NAMESPACE}\n"
            f"export {KEYS_NAMESPACE_VARIABLE}={KEYS_NAMESPACE}\n"
            # where `whatsapp-graph-standin send-text` finds the stand-in
            + (f"export WA_GRAPH_STANDIN_URL={graph_url}\n" if args.graph_url is None else "")
        )
        args.env_file.chmod(0o600)
        page = (
            f"""
Embedded Signup, in a browser (the stand-in plays Facebook's SDK and popup):
  onboarding page  {api_url}{mint_onboarding_link(api_url, api_key, EXAMPLE_INSTANCE)}
  after "Connect WhatsApp", finish the popup as the tenant would:
  curl -s $WA_GRAPH_STANDIN_URL/_standin/sessions    (the popup's session id)
  whatsapp-graph-standin signup --app-id {DEMO_NUMBER["app_id"]} \\
    --phone-number-id <a seeded number> --session <that id>"""
            if platform_app is not None
            else ""
        )
        print(
            f"""
WhatsApp channels control plane is running.
  REST API      {api_url}   (docs: {api_url}/docs)
  webhooks      {webhook_base}/hooks/whatsapp/<instance id>
  Graph API     {graph_url}{"   (the stand-in)" if args.graph_url is None else ""}
  kubeconfig    {cluster.kubeconfig}
  namespaces    {NAMESPACE} (channels, their Secrets), {KEYS_NAMESPACE} (sealing keys)
  logs          {logs}
Settings for your shell (API key included):  source {args.env_file}
Try:
  curl -s -X POST "$WA_API_URL/v1/instances/{EXAMPLE_INSTANCE}/channels/whatsapp" \\
    -H "X-Api-Key: $WA_API_KEY" -H 'Content-Type: application/json' \\
    -d '{{"access_token": "{DEMO_NUMBER["access_token"]}", \
         "phone_number_id": "{DEMO_NUMBER["phone_number_id"]}", \
         "waba_id": "{DEMO_NUMBER["waba_id"]}"}}'
  kubectl get whatsappchannels -n {NAMESPACE} -o wide
  whatsapp-graph-standin send-text --phone-number-id {DEMO_NUMBER["phone_number_id"]} "hello"
{page}
Ctrl-C stops everything.""",
            flush=True,
        )
        while not stop.is_set():
            for service in services:
                if not service.alive():
                    raise ServiceError(f"{service.name} stopped:\n{service.log_tail()}")
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    except (ClusterError, ServiceError) as exc:
        print(f"whatsapp-dev: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        for service in reversed(services):
            service.stop()
        if cluster is not None:
            cluster.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
