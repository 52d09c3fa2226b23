"""`whatsapp-seal`: seal a channel's credentials for people who write channels by hand.

Like `kubeseal`: the operator's public key comes from its ConfigMap (through KUBECONFIG), in
the operator's keys namespace (`--keys-namespace`, $WA_KEYS_NAMESPACE), or from
`--public-key`; the credentials come from files, the environment or stdin, never from
the command line (where `ps` and shell history would keep them). The output is a
WhatsAppChannel ready for `kubectl apply`, or only its `sealed` block.

    export WA_ACCESS_TOKEN=... WA_APP_SECRET=... WA_VERIFY_TOKEN=...
    whatsapp-seal --instance-id 7c9e6679-7425-40de-944b-e07fc1f90ae7 \\
        --phone-number-id 106540352242922 --display-phone +61400111222 | kubectl apply -f -

A seal opens only for the namespace and name it was made for: the channel's (`--namespace`,
$WA_CHANNELS_NAMESPACE).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import getpass
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from whatsapp_channel.model import (
    CREDENTIAL_FIELDS,
    DEFAULT_NAMESPACE,
    SEALING_PUBLIC_CONFIGMAP,
    ChannelSpec,
    SealedCredentials,
    channel_body,
)
from whatsapp_channel.sealing import PublicSealingKey, key_id_of, published_keys, seal
from whatsapp_channel.settings import CHANNELS_NAMESPACE_VARIABLE, KEYS_NAMESPACE_VARIABLE

log = logging.getLogger(__name__)

# Secret key (as in the generated Secret) -> environment variable that may hold it.
ENVIRONMENT = {
    "access_token": "WA_ACCESS_TOKEN",
    "app_secret": "WA_APP_SECRET",
    "verify_token": "WA_VERIFY_TOKEN",
}


class SealCliError(Exception):
    pass


# --- the public key ---------------------------------------------------------------------


def key_from_public_data(data: Mapping[str, Any]) -> PublicSealingKey:
    """The active key of the public ConfigMap's data (activeKeyId, publicKeys)."""
    try:
        return published_keys(data).active
    except ValueError as exc:
        raise SealCliError(str(exc)) from None


def key_from_b64(text: str) -> PublicSealingKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealCliError("--public-key is neither a file nor a base64 public key") from None
    if len(raw) != 32:
        raise SealCliError("a sealing public key is 32 bytes (base64 of the raw X25519 key)")
    return PublicSealingKey(key_id=key_id_of(raw), public_key=raw)


def key_from_argument(value: str) -> PublicSealingKey:
    """`--public-key`: a file (the ConfigMap as YAML/JSON, its data, or a base64 key), or a
    base64 key itself."""
    path = Path(value)
    if not path.is_file():
        return key_from_b64(value)
    text = path.read_text()
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = None
    if isinstance(loaded, Mapping):
        data = loaded.get("data")
        return key_from_public_data(data if isinstance(data, Mapping) else loaded)
    return key_from_b64(text)


async def fetch_key(namespace: str, kubeconfig: str | None) -> PublicSealingKey:
    from whatsapp_channel.kube import Kube, KubeConfigError, KubeError, core_path

    try:
        kube = await asyncio.to_thread(Kube.connect, kubeconfig, user_agent="whatsapp-seal")
    except KubeConfigError as exc:
        raise SealCliError(f"{exc}; or pass --public-key") from None
    try:
        configmap = await kube.get(core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP))
    except KubeError as exc:
        raise SealCliError(
            f"cannot read ConfigMap {namespace}/{SEALING_PUBLIC_CONFIGMAP} ({exc.status} "
            f"{exc.reason}); does the operator keep its keys there? Name its keys namespace "
            "with --keys-namespace (or $WA_KEYS_NAMESPACE), or pass --public-key"
        ) from None
    finally:
        await kube.close()
    return key_from_public_data(configmap.get("data") or {})


# --- the credentials --------------------------------------------------------------------


def parse_stdin(text: str) -> dict[str, str]:
    """A JSON object, or lines `key=value` (dotenv style); keys as in the Secret
    (access_token) or the CR (accessToken)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError:
            raise SealCliError("stdin is not valid JSON") from None
        pairs = {str(k): str(v) for k, v in loaded.items()}
    else:
        pairs = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise SealCliError(f"stdin line {number} is not key=value")
            pairs[key.strip()] = value.strip()
    result: dict[str, str] = {}
    for key, value in pairs.items():
        secret_key = CREDENTIAL_FIELDS.get(key, key)
        if secret_key not in ENVIRONMENT:
            raise SealCliError(f"unknown credential {key!r} on stdin")
        result[secret_key] = value
    return result


def read_credentials(
    files: Mapping[str, str],
    environ: Mapping[str, str],
    stdin: TextIO,
) -> dict[str, str]:
    """Each credential from --from-file, else the environment, else stdin (a pipe), else a
    prompt (a terminal)."""
    values: dict[str, str] = {}
    for key, path in files.items():
        values[key] = Path(path).read_text().rstrip("\r\n")
    for key, variable in ENVIRONMENT.items():
        if key not in values and environ.get(variable):
            values[key] = environ[variable]
    missing = [key for key in ENVIRONMENT if key not in values]
    if missing and not stdin.isatty():
        piped = parse_stdin(stdin.read())
        values.update({k: v for k, v in piped.items() if k not in values})
    elif missing:
        for key in missing:
            values[key] = getpass.getpass(f"{key}: ")
    missing = [key for key in ENVIRONMENT if not values.get(key)]
    if missing:
        raise SealCliError(
            "missing credential(s): "
            + ", ".join(f"{k} (--from-file {k}=PATH, ${ENVIRONMENT[k]} or stdin)" for k in missing)
        )
    return values


# --- sealing ----------------------------------------------------------------------------


def seal_credentials(
    key: PublicSealingKey, *, namespace: str, name: str, values: Mapping[str, str]
) -> SealedCredentials:
    sealed = {
        field: seal(key, namespace=namespace, name=name, field=field, value=values[secret_key])
        for field, secret_key in CREDENTIAL_FIELDS.items()
    }
    return SealedCredentials.model_validate(sealed)


def render(document: Mapping[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(dict(document), sort_keys=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whatsapp-seal",
        description="Seal a WhatsApp channel's credentials to the operator's public key. "
        "Credentials come from --from-file, $WA_ACCESS_TOKEN/$WA_APP_SECRET/$WA_VERIFY_TOKEN, "
        "or stdin (JSON or key=value lines), never from arguments.",
    )
    parser.add_argument("--instance-id", help="the instance id: the channel's name (a UUID)")
    parser.add_argument("--phone-number-id", help="Meta's phone number id")
    parser.add_argument("--display-phone", help="the number in E.164, e.g. +61400111222")
    parser.add_argument("--disabled", action="store_true", help="write the channel disabled")
    parser.add_argument(
        "-n",
        "--namespace",
        help="the channel's namespace, bound into the seal (default: "
        f"${CHANNELS_NAMESPACE_VARIABLE}, else {DEFAULT_NAMESPACE})",
    )
    parser.add_argument(
        "--keys-namespace",
        help="the operator's keys namespace, where it publishes its public key (default: "
        f"${KEYS_NAMESPACE_VARIABLE}, else --namespace)",
    )
    parser.add_argument(
        "--controller-namespace",
        dest="deprecated_keys_namespace",
        help="deprecated: --keys-namespace",
    )
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument(
        "--public-key",
        metavar="FILE_OR_BASE64",
        help="seal offline: the public key ConfigMap (YAML/JSON) or a base64 key, instead of "
        "reading the ConfigMap from the cluster",
    )
    parser.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="KEY=PATH",
        help="read a credential (access_token, app_secret, verify_token) from a file",
    )
    parser.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    parser.add_argument(
        "--sealed-only", action="store_true", help="print only the spec.sealed block"
    )
    parser.add_argument(
        "--fetch-public-key",
        action="store_true",
        help="print the operator's active public key (base64) for offline sealing, and exit",
    )
    return parser


def run(argv: list[str] | None, stdin: TextIO, stdout: TextIO, environ: Mapping[str, str]) -> None:
    args = _parser().parse_args(argv)
    args.namespace = args.namespace or environ.get(CHANNELS_NAMESPACE_VARIABLE) or DEFAULT_NAMESPACE
    if args.deprecated_keys_namespace is not None:
        log.warning("whatsapp-seal: --controller-namespace is deprecated; use --keys-namespace")
    keys_namespace = (
        args.keys_namespace
        or args.deprecated_keys_namespace
        or environ.get(KEYS_NAMESPACE_VARIABLE)
        or args.namespace
    )
    if args.public_key:
        key = key_from_argument(args.public_key)
    else:
        key = asyncio.run(fetch_key(keys_namespace, args.kubeconfig))
    if args.fetch_public_key:
        stdout.write(key.b64 + "\n")
        return
    if not args.instance_id or (not args.sealed_only and not args.phone_number_id):
        raise SealCliError("--instance-id and --phone-number-id are required")
    files: dict[str, str] = {}
    for item in args.from_file:
        key_name, sep, path = item.partition("=")
        key_name = CREDENTIAL_FIELDS.get(key_name, key_name)
        if not sep or key_name not in ENVIRONMENT:
            raise SealCliError(f"--from-file takes KEY=PATH with KEY one of {list(ENVIRONMENT)}")
        files[key_name] = path
    values = read_credentials(files, environ, stdin)
    name = args.instance_id
    sealed = seal_credentials(key, namespace=args.namespace, name=name, values=values)
    if args.sealed_only:
        stdout.write(render({"sealed": sealed.model_dump(by_alias=True)}, args.output))
        return
    try:
        spec = ChannelSpec(
            instance_id=name,
            phone_number_id=args.phone_number_id,
            display_phone=args.display_phone,
            enabled=not args.disabled,
            sealed=sealed,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise SealCliError(problems) from None
    stdout.write(render(channel_body(namespace=args.namespace, name=name, spec=spec), args.output))


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv, sys.stdin, sys.stdout, os.environ)
    except SealCliError as exc:
        print(f"whatsapp-seal: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
