"""Who may upload: the Hub token (HF_TOKEN, or a Prefect Secret block) and its write access to upload.org, checked
before anything slow (tasks/publish/upload.py); the token is never logged or written."""

from __future__ import annotations

from tasks.config import UploadSpec
from tasks.environment import hf_token_from_env


class UploadRefusedError(RuntimeError):
    """The decision, a gate or a check says this must not be uploaded."""


def resolve_token(spec: UploadSpec) -> str | None:
    token = hf_token_from_env()
    if token or not spec.token_secret_block:
        return token
    try:
        from prefect.blocks.system import Secret
    except ImportError:
        raise RuntimeError(f"upload.token_secret_block={spec.token_secret_block!r} needs Prefect installed "
                           "(or set HF_TOKEN).") from None
    return Secret.load(spec.token_secret_block).get()


def check_access(api, namespace: str) -> str:
    """whoami + write role + the namespace is the user or one of its orgs; returns the user name."""
    me = api.whoami()
    role = me.get("auth", {}).get("accessToken", {}).get("role")
    owners = {me["name"]} | {o["name"] for o in me.get("orgs", [])}
    if role not in ("write", "fineGrained"):
        raise UploadRefusedError(f"The Hub token for {me['name']} has role {role!r}; uploading needs a write token.")
    if namespace not in owners:
        raise UploadRefusedError(f"{me['name']} cannot write to {namespace!r} (can write to {sorted(owners)}); "
                            "fix upload.org.")
    return me["name"]


def preflight(spec: UploadSpec) -> str | None:
    """At the start of a run with upload enabled: token present, valid, and allowed to write to upload.org.
    Returns the Hub user name (None when upload is disabled)."""
    if not spec.enabled:
        return None
    token = resolve_token(spec)
    if not token:
        raise UploadRefusedError("upload.enabled is true but no Hub token was found: set HF_TOKEN or "
                                 "upload.token_secret_block, or disable upload for a dry run.")
    from huggingface_hub import HfApi

    return check_access(HfApi(endpoint=spec.endpoint, token=token), spec.org)
