"""`whatsapp-dev`: the whole product on the local control plane, for a newcomer.

Builds what is missing, starts the cluster, applies the CRD, starts the operator, the facade,
the receiver and a stand-in "instance" that prints the events it gets; writes the settings
a shell needs to `.whatsapp-dev.env`; runs until Ctrl-C, then ends everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
import threading
from pathlib import Path

from aiohttp import web

from localkube.cluster import Cluster, ClusterError, free_port
from localkube.product import apply_crd, start_facade, start_operator, start_receiver
from localkube.services import Service, ServiceError

REPO = Path(__file__).resolve().parents[2]
# As the chart lays it out: the channels and their Secrets in a namespace of their own (the
# receiver may read every Secret there), the operator's sealing keys in another.
NAMESPACE = "whatsapp-channels"
KEYS_NAMESPACE = "whatsapp-system"
EXAMPLE_INSTANCE = "497f6eca-6276-4993-bfeb-53cbbbba6f08"


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
        services.append(
            start_operator(
                cluster.kubeconfig,
                logs,
                namespace=NAMESPACE,
                keys_namespace=KEYS_NAMESPACE,
                webhook_base_url=webhook_base,
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
            f"export WA_NAMESPACE={NAMESPACE}\n"
            # whatsapp-seal's defaults: the channels' namespace and where the public key is
            # (where `whatsapp-operator rotate-key` finds the keys too).
            f"export WA_CHANNELS_NAMESPACE={NAMESPACE}\n"
            f"export WA_KEYS_NAMESPACE={KEYS_NAMESPACE}\n"
        )
        args.env_file.chmod(0o600)
        print(
            f"""
WhatsApp channels control plane is running.
  REST API      {api_url}   (docs: {api_url}/docs)
  webhooks      {webhook_base}/hooks/whatsapp/<instance id>
  kubeconfig    {cluster.kubeconfig}
  namespaces    {NAMESPACE} (channels, their Secrets), {KEYS_NAMESPACE} (sealing keys)
  logs          {logs}
Settings for your shell (API key included):  source {args.env_file}
Try:
  curl -s -X POST "$WA_API_URL/v1/instances/{EXAMPLE_INSTANCE}/channels/whatsapp" \\
    -H "X-Api-Key: $WA_API_KEY" -H 'Content-Type: application/json' \\
    -d '{{"access_token": "EAAG...", "app_secret": "0123456789abcdef",
         "phone_number_id": "106540352242922"}}'
  kubectl get whatsappchannels -n {NAMESPACE}
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
