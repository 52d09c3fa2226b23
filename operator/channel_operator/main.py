"""`whatsapp-operator`: run the operator, or rotate its sealing key.

    whatsapp-operator               reconcile the WhatsAppChannels of WA_OPERATOR_NAMESPACE
    whatsapp-operator rotate-key    add a sealing key that new seals use; old seals still open

The sealing keys live in WA_OPERATOR_KEYS_NAMESPACE (default: WA_OPERATOR_NAMESPACE), which
`rotate-key` follows too: in the operator's pod it needs no arguments.

Settings are environment variables (see `channel_operator.settings`); cluster access is
KUBECONFIG or the in-cluster service account.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

import kopf
import prometheus_client
import uvloop
from pydantic import ValidationError
from whatsapp_channel.model import DEFAULT_NAMESPACE

from channel_operator.settings import OperatorSettings


def _settings() -> OperatorSettings:
    try:
        return OperatorSettings()  # from the environment
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"WA_OPERATOR_{field.upper()}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def run(settings: OperatorSettings) -> None:
    from channel_operator import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        debug=settings.log_level == "DEBUG",
        verbose=settings.log_level in {"DEBUG", "INFO"},
        quiet=settings.log_level in {"WARNING", "ERROR"},
    )
    logging.getLogger().setLevel(settings.log_level)
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.liveness_host)
    # kopf names itself after the login user unless POD_ID is set, and the image's user
    # (uid 65532) has no passwd entry: without this the operator dies at start in its pod.
    os.environ.setdefault("POD_ID", socket.gethostname())
    # uvloop: the same asyncio, with a faster loop and transports (the operator is CPU-bound
    # on event handling when thousands of channels arrive at once).
    uvloop.run(
        kopf.operator(
            namespaces=[settings.namespace],
            standalone=True,
            liveness_endpoint=settings.liveness_endpoint,
            memo=kopf.Memo(settings=settings),
        )
    )


async def _rotate(namespace: str) -> str:
    from whatsapp_channel.kube import Kube, load_config

    from channel_operator import sealing_keys

    kube = Kube(await asyncio.to_thread(load_config), user_agent="whatsapp-operator")
    try:
        keyring = await sealing_keys.rotate(kube, namespace)
    finally:
        await kube.close()
    return keyring.active_key_id


def _keys_namespace() -> str:
    """Where the running operator keeps its keys, from the same variables it reads."""
    return (
        os.environ.get("WA_OPERATOR_KEYS_NAMESPACE")
        or os.environ.get("WA_OPERATOR_NAMESPACE")
        or DEFAULT_NAMESPACE
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="whatsapp-operator", description="The WhatsAppChannel operator."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="reconcile channels (the default)")
    rotate = commands.add_parser(
        "rotate-key",
        help="add a fresh sealing key for new seals; the old keys keep opening old seals",
    )
    rotate.add_argument(
        "--keys-namespace",
        "--namespace",
        dest="keys_namespace",
        default=_keys_namespace(),
        help="the namespace of the operator's sealing keys (default: "
        f"$WA_OPERATOR_KEYS_NAMESPACE, else $WA_OPERATOR_NAMESPACE, else {DEFAULT_NAMESPACE})",
    )
    args = parser.parse_args(argv)
    if args.command == "rotate-key":
        from whatsapp_channel.kube import KubeError

        from channel_operator.sealing_keys import KeyringError

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            print(asyncio.run(_rotate(args.keys_namespace)))
        except (KeyringError, KubeError) as exc:
            print(f"whatsapp-operator rotate-key: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        return
    run(_settings())


if __name__ == "__main__":
    main()
