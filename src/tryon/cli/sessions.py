"""AWS sessions for the commands that call AWS, following the AWS CLI's conventions.

Region: ``--region`` > ``AWS_REGION`` > ``AWS_DEFAULT_REGION`` > the profile's ``region``
(the AWS CLI v2 and SAM CLI order; botocore itself reads only ``AWS_DEFAULT_REGION``).
Profile: ``--profile`` > ``AWS_PROFILE`` > ``default``. A region botocore's endpoint data does
not know (offline) is refused before any call, and so is an unknown profile.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Annotated, Any

import typer

from tryon.cli import EXIT_AWS, fail

Region = Annotated[
    str,
    typer.Option(help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, then your profile's region)."),
]
Profile = Annotated[
    str, typer.Option(help="Named profile from your AWS config and credentials files (default: AWS_PROFILE).")
]

NO_REGION = (
    "no region configured: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), "
    "or set one with `aws configure`"
)


@cache
def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's bundled endpoint data (no network)."""
    from botocore.loaders import create_loader

    data = create_loader().load_data("endpoints")
    return frozenset(region for partition in data["partitions"] for region in partition["regions"])


def check_region(region: str, source: str = "--region") -> str:
    """``region`` if botocore knows it; else exit 2 with a message naming ``source``."""
    if region not in known_regions():
        import botocore

        raise fail(
            f"{source}: unknown AWS region {region!r} (botocore {botocore.__version__} knows "
            f"{', '.join(sorted(known_regions()))})"
        )
    return region


def session(region: str = "", profile: str = "", *, need_region: bool = True) -> Any:
    """A boto3 Session for ``--region``/``--profile`` with the AWS CLI's precedence, checked up front."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    source = "--region"
    if not region and os.environ.get("AWS_REGION"):
        region, source = os.environ["AWS_REGION"], "AWS_REGION"
    try:
        result = boto3.Session(profile_name=profile or None, region_name=region or None)
    except ProfileNotFound as exc:
        option = "--profile" if profile else "AWS_PROFILE"
        raise fail(f"{option}: {exc}", EXIT_AWS) from None
    if not region and result.region_name:
        source = "AWS_DEFAULT_REGION" if os.environ.get("AWS_DEFAULT_REGION") else "the profile's region"
    if result.region_name:
        check_region(result.region_name, source)
    elif need_region:
        raise fail(NO_REGION, EXIT_AWS)
    return result
