"""Publishing a month's reconciliation: the files to S3, time-limited links, a short notice on SNS.

An adapter (it talks to S3 and SNS through boto3). Objects go under ``reports/YYYY-MM/`` with their
content type; the bucket's default encryption (KMS, set in template.yaml) applies. Links are SigV4
presigned GETs; SigV4 caps a link's life at 7 days (604,800 s), so a longer request is clamped (and
logged). A presigned link also dies when the credentials that signed it expire: signed with a Lambda
role's temporary credentials it works for hours, not days, whatever it says. The notice therefore
names the S3 location as well, and carries counts and links only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config

from closeloop.reports.monthly import CSV_NAME, HTML_NAME, XLSX_NAME
from closeloop.sync.reconcile import month_bounds

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

__all__ = ["MAX_PRESIGN_SECONDS", "PublishedReport", "publish_report", "report_prefix"]

logger = logging.getLogger(__name__)

#: SigV4 presigned URLs are valid for at most 7 days.
MAX_PRESIGN_SECONDS: Final = 7 * 86_400

CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".csv": "text/csv; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".html": "text/html; charset=utf-8",
}
#: The files a finance reader opens, in the order the notice lists them.
LINKED: Final = (XLSX_NAME, HTML_NAME)

_FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class PublishedReport:
    """Where the report went: the S3 keys, the workbook's link (``url``) and every link made, by file name."""

    keys: tuple[str, ...]
    url: str
    urls: Mapping[str, str] = field(default_factory=dict)
    expires_seconds: int = MAX_PRESIGN_SECONDS
    message_id: str = ""


def report_prefix(month: str) -> str:
    """``reports/2026-10/``. Raises ValueError for a month that is not YYYY-MM."""
    month_bounds(month)
    return f"reports/{month}/"


def _content_type(name: str) -> str:
    for suffix, kind in CONTENT_TYPES.items():
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"


def _disposition(month: str, name: str) -> str:
    """The HTML summary opens in the browser; the workbook and CSV download under a name with the month."""
    return "inline" if name.endswith(".html") else f'attachment; filename="closeloop-{month}-{name}"'


def _presign(client: S3Client, bucket: str, key: str, expires: int) -> str:
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
    # botocore presigns with SigV2 unless the client was made with signature_version="s3v4"; SigV2 links ignore
    # the 7-day cap and are being retired, so such a client is a configuration error.
    if "X-Amz-Algorithm=AWS4-HMAC-SHA256" not in url:
        raise ValueError("publish_report needs an S3 client made with Config(signature_version='s3v4')")
    return url


def publish_report(
    month: str,
    files: Mapping[str, bytes],
    *,
    bucket: str,
    topic_arn: str | None,
    expires_seconds: int = MAX_PRESIGN_SECONDS,
    s3: S3Client | None = None,
    sns: SNSClient | None = None,
    counts: Mapping[str, int] | None = None,
) -> PublishedReport:
    """Store ``files`` (name -> bytes, e.g. from ``render_all``) under ``reports/{month}/`` and announce them.

    Each object is written with its content type (the bucket's default encryption applies); the workbook and the
    HTML summary get presigned GET links valid ``expires_seconds`` (clamped to 1..604,800, with a warning).
    ``s3`` must be made with ``Config(signature_version="s3v4")``, as the default client is. When
    ``topic_arn`` is set, one SNS message (subject ``Closeloop reconciliation YYYY-MM``) lists ``counts``
    (discrepancies by type), the links and the S3 location: no personal data. Returns the keys and the
    workbook's link ("" when no workbook was given). Raises ValueError, before writing anything, for a bad
    month or file name, empty ``files`` or a client that would presign with SigV2; botocore's ClientError
    when S3 or SNS refuse.
    """
    prefix = report_prefix(month)
    if not files:
        raise ValueError("no report files to publish")
    for name in files:
        if not _FILE_NAME.fullmatch(name):
            raise ValueError(f"report file name {name!r} is not a plain file name")
    expires = min(max(int(expires_seconds), 1), MAX_PRESIGN_SECONDS)
    if expires != expires_seconds:
        logger.warning(
            "presigned link lifetime %ss clamped to %ss (SigV4 allows 1..%s)",
            expires_seconds,
            expires,
            MAX_PRESIGN_SECONDS,
        )
    client = s3 or boto3.client("s3", config=Config(signature_version="s3v4"))
    # Presigning is local and needs no object: done first, so a misconfigured client writes nothing.
    urls = {name: _presign(client, bucket, prefix + name, expires) for name in LINKED if name in files}

    keys: list[str] = []
    for name, body in files.items():
        key = prefix + name
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=_content_type(name),
            ContentDisposition=_disposition(month, name),
        )
        keys.append(key)

    message_id = ""
    if topic_arn:
        notifier: SNSClient = sns or boto3.client("sns")
        response = notifier.publish(
            TopicArn=topic_arn,
            Subject=f"Closeloop reconciliation {month}",
            Message=_message(month, bucket, prefix, urls, expires, counts or {}),
        )
        message_id = response.get("MessageId", "")
    return PublishedReport(
        keys=tuple(keys), url=urls.get(XLSX_NAME, ""), urls=urls, expires_seconds=expires, message_id=message_id
    )


def _message(
    month: str, bucket: str, prefix: str, urls: Mapping[str, str], expires: int, counts: Mapping[str, int]
) -> str:
    total = sum(counts.values())
    lines = [f"Closeloop reconciliation for {month}: {total} discrepanc{'y' if total == 1 else 'ies'}."]
    lines += [f"  {kind}: {count}" for kind, count in counts.items() if count]
    lines.append("")
    labels = {XLSX_NAME: "Workbook", HTML_NAME: "Summary", CSV_NAME: "Discrepancies (CSV)"}
    lines += [f"{labels.get(name, name)}: {url}" for name, url in urls.items()]
    days = expires / 86_400
    lines += [
        "",
        f"Links expire after {days:g} day(s), or sooner if the credentials that signed them expire.",
        f"The files stay in s3://{bucket}/{prefix}",
    ]
    return "\n".join(lines)
