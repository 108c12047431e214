"""Credentials in pod output never reach status, Events or bundles."""

from __future__ import annotations

import pytest

from proctor.api.redaction import REDACTED, redact

SECRETS = [
    ("aws key AKIAABCDEFGHIJKLMNOP in the log", "AKIAABCDEFGHIJKLMNOP"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ('{"db_password": "hunter22"}', "hunter22"),
    ("HF_TOKEN: hf_abcdefghijklmnop", "hf_abcdefghijklmnop"),
    ("connecting to postgres://trainer:s3cr3t@db:5432/runs", "s3cr3t"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_recognised_credentials_are_replaced(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


def test_ordinary_training_output_is_left_alone():
    text = "step 120 loss 0.314 tokens_per_second=5120 lr=0.003 tokenizer_path=/data/tok.json"
    assert redact(text) == text
