"""``[storage]`` and ``[serve] packages-redirect`` in the config file."""

from __future__ import annotations

import pytest

from mirror.config import S3Settings, parse_config
from mirror.errors import ConfigError

BASE = "[mirror]\ndirectory = /srv/mirror\n"


def test_the_default_backend_is_the_file_system() -> None:
    config = parse_config(BASE)
    assert config.s3 is None
    assert config.packages_redirect is None
    assert parse_config(BASE + "[storage]\nbackend = filesystem\n").s3 is None


def test_an_s3_backend_with_every_key() -> None:
    config = parse_config(
        BASE
        + "[storage]\nbackend = S3\nbucket = pypi-mirror\nprefix = mirror\n"
        + "endpoint-url = https://s3.example.internal/\nregion = eu-west-1\n"
        + "[serve]\npackages-redirect = presigned\n"
    )
    assert config.s3 == S3Settings(
        bucket="pypi-mirror",
        prefix="mirror/",
        endpoint_url="https://s3.example.internal",
        region="eu-west-1",
    )
    assert config.packages_redirect == "presigned"
    cdn = parse_config(
        BASE
        + "[storage]\nbackend = s3\nbucket = pypi-mirror\n"
        + "[serve]\npackages-redirect = https://cdn.example/\n"
    )
    assert cdn.packages_redirect == "https://cdn.example"
    assert cdn.s3 == S3Settings(bucket="pypi-mirror")


@pytest.mark.parametrize(
    ("storage", "serve", "message"),
    [
        ("backend = s3\n", "", r"\[storage\] bucket: required key is missing"),
        ("backend = s3\nbucket = A_B\n", "", r"\[storage\] bucket: expected an S3 bucket"),
        ("backend = s3\nbucket = a..b\n", "", r"\[storage\] bucket"),
        ("backend = s3\nbucket = ab1\nprefix = ../x\n", "", r"\[storage\] prefix"),
        ("backend = s3\nbucket = ab1\nprefix = a b\n", "", r"\[storage\] prefix"),
        ("backend = s3\nbucket = ab1\nregion = Mars 1\n", "", r"\[storage\] region"),
        (
            "backend = s3\nbucket = ab1\nendpoint-url = https://key:secret@s3.example\n",
            "",
            r"\[storage\] endpoint-url: must not contain credentials",
        ),
        ("backend = tape\n", "", r"\[storage\] backend: expected one of filesystem, s3"),
        ("bucket = ab1\n", "", r"\[storage\] bucket: only used with backend = s3"),
        ("secret = x\n", "", r"\[storage\] secret: unknown key"),
        ("", "packages-redirect = presigned\n", r"packages-redirect: only used with"),
        ("backend = s3\nbucket = ab1\n", "packages-redirect = ftp://x\n", "packages-redirect"),
    ],
)
def test_bad_storage_settings_name_the_key(storage: str, serve: str, message: str) -> None:
    text = BASE + "[storage]\n" + storage + "[serve]\n" + serve
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(text)
    assert "secret@" not in str(caught.value)


def test_an_empty_redirect_is_none() -> None:
    config = parse_config(BASE + "[serve]\npackages-redirect =\n")
    assert config.packages_redirect is None
