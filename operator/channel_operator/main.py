"""`whatsapp-operator`: run the operator, or rotate its sealing key.

    whatsapp-operator               reconcile the WhatsAppChannels of WA_CHANNELS_NAMESPACE
    whatsapp-operator rotate-key    add a sealing key that new seals use; old seals still open
    whatsapp-operator retire-key ID re-seal every channel on key ID to the active key, then
                                    remove ID (kept, and the channels named, if any fails)

The sealing keys live in WA_KEYS_NAMESPACE (default: WA_CHANNELS_NAMESPACE), which
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
from whatsapp_channel.kube import Kube, KubeConfigError, KubeError
from whatsapp_channel.settings import load_settings, refuse

from channel_operator import leader
from channel_operator.settings import KeysSettings, OperatorSettings

PROG = "whatsapp-operator"
USER_AGENT = "whatsapp-channel-operator"

log = logging.getLogger(__name__)


def connect() -> Kube:
    try:
        return Kube.connect(user_agent=USER_AGENT, max_concurrency=32)
    except KubeConfigError as exc:
        refuse(PROG, str(exc))


def run(settings: OperatorSettings) -> None:
    from channel_operator import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        debug=settings.log_level == "DEBUG",
        verbose=settings.log_level in {"DEBUG", "INFO"},
        quiet=settings.log_level in {"WARNING", "ERROR", "CRITICAL"},
    )
    logging.getLogger().setLevel(settings.log_level)
    kube = connect()
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.liveness_host)
    # kopf names itself after the login user unless POD_ID is set, and the image's user
    # (uid 65532) has no passwd entry: without this the operator dies at start in its pod.
    os.environ.setdefault("POD_ID", socket.gethostname())
    # Only the leader runs Kopf (and with it every handler, health check and Graph call);
    # its Lease is renewed on a connection of its own, never queued behind the operator's.
    election = leader.Election(
        kube=connect(),
        namespace=settings.sealing_namespace,
        name=settings.leader_election_lease,
        identity=leader.candidate_identity(),
        lease_duration=settings.lease_duration_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry_period=settings.retry_period_seconds,
    )

    async def operate() -> None:
        await kopf.operator(
            namespaces=[settings.namespace],
            standalone=True,
            liveness_endpoint=settings.liveness_endpoint,
            memo=kopf.Memo(settings=settings, kube=kube),
        )

    # uvloop: the same asyncio, with a faster loop and transports (the operator is CPU-bound
    # on event handling when thousands of channels arrive at once).
    uvloop.run(
        leader.lead(election, operate, health=(settings.liveness_host, settings.liveness_port))
    )


async def _rotate(kube: Kube, namespace: str) -> str:
    from channel_operator import keystore

    try:
        keyring = await keystore.rotate(kube, namespace)
    finally:
        await kube.close()
    return keyring.active_key_id


async def _retire(kube: Kube, keys_namespace: str, namespace: str, key_id: str) -> int:
    from channel_operator.retire import retire_key

    try:
        result = await retire_key(kube, keys_namespace, namespace, key_id)
    finally:
        await kube.close()
    for name in result.resealed:
        print(f"re-sealed {name}")
    for name, why in sorted(result.failed.items()):
        print(f"{PROG} retire-key: channel {name} not re-sealed: {why}", file=sys.stderr)
    if not result.removed:
        print(
            f"{PROG} retire-key: key {key_id} kept: channels above still need it", file=sys.stderr
        )
        return 1
    print(f"removed {key_id}")
    for name in result.sealed_since:
        print(
            f"{PROG} retire-key: channel {name} was sealed to {key_id} meanwhile; set it up again",
            file=sys.stderr,
        )
    return 1 if result.sealed_since else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description="The WhatsAppChannel operator.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="reconcile channels (the default)")
    rotate = commands.add_parser(
        "rotate-key",
        help="add a fresh sealing key for new seals; the old keys keep opening old seals",
    )
    rotate.add_argument(
        "--keys-namespace",
        dest="keys_namespace",
        help="the namespace of the operator's sealing keys (default: the operator's own: "
        "$WA_KEYS_NAMESPACE, else $WA_CHANNELS_NAMESPACE, else its default)",
    )
    rotate.add_argument(
        "--namespace", dest="deprecated_namespace", help="deprecated: --keys-namespace"
    )
    retire = commands.add_parser(
        "retire-key",
        help="re-seal every channel on a sealing key to the active key, then remove the key",
    )
    retire.add_argument("key_id", help="the key to retire (not the active one)")
    retire.add_argument(
        "--keys-namespace",
        dest="keys_namespace",
        help="the namespace of the operator's sealing keys (default as for rotate-key)",
    )
    retire.add_argument(
        "--channels-namespace",
        dest="channels_namespace",
        help="the namespace of the channels (default: $WA_CHANNELS_NAMESPACE, else its default)",
    )
    args = parser.parse_args(argv)
    if args.command == "retire-key":
        from channel_operator.keystore import KeyringError

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        keys_settings = load_settings(KeysSettings, f"{PROG} retire-key")
        kube = connect()
        try:
            code = asyncio.run(
                _retire(
                    kube,
                    args.keys_namespace or keys_settings.sealing_namespace,
                    args.channels_namespace or keys_settings.namespace,
                    args.key_id,
                )
            )
        except (KeyringError, KubeError) as exc:
            print(f"{PROG} retire-key: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        raise SystemExit(code)
    if args.command == "rotate-key":
        from channel_operator.keystore import KeyringError

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        if args.deprecated_namespace is not None:
            log.warning("%s rotate-key: --namespace is deprecated; use --keys-namespace", PROG)
        namespace = (
            args.keys_namespace
            or args.deprecated_namespace
            or load_settings(KeysSettings, f"{PROG} rotate-key").sealing_namespace
        )
        kube = connect()
        try:
            print(asyncio.run(_rotate(kube, namespace)))
        except (KeyringError, KubeError) as exc:
            print(f"{PROG} rotate-key: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        return
    settings = load_settings(OperatorSettings, PROG)
    if settings.platform_app_dir is not None:  # refused here, before anything starts
        from channel_operator.platform_app import PlatformAppError, load

        try:
            load(settings.platform_app_dir)
        except PlatformAppError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    run(settings)


if __name__ == "__main__":
    main()
