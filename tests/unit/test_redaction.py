"""Credentials in pod output never reach status, Events or bundles."""

from __future__ import annotations

import pytest

from proctor.api.redaction import REDACTED, known_secrets, redact

SECRETS = [
    ("aws key AKIAABCDEFGHIJKLMNOP in the log", "AKIAABCDEFGHIJKLMNOP"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ('{"db_password": "hunter22"}', "hunter22"),
    ("HF_TOKEN: hf_abcdefghijklmnop", "hf_abcdefghijklmnop"),
    ("connecting to postgres://trainer:s3cr3t@db:5432/runs", "s3cr3t"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
    # os.environ or a dict printed by Python quotes with ', shells too
    ("environ({'HF_TOKEN': 'hf_abcdefghijklmnop', 'HOME': '/tmp'})", "hf_abcdefghijklmnop"),
    ("export DB_PASSWORD='hunter22'", "hunter22"),
    # a token as the whole user part of a URL
    ("cannot reach http://ghp_0123456789abcdef@prometheus:9090/api", "ghp_0123456789abcdef"),
    # an exception's prose
    ("RuntimeError: refused token hf_abc123def456ghi789", "hf_abc123def456ghi789"),
    ("the api key is sk0123456789abcdefXYZ, retry", "sk0123456789abcdefXYZ"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_recognised_credentials_are_replaced(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned
    assert REDACTED in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "step 120 loss 0.314 tokens_per_second=5120 lr=0.003 tokenizer_path=/data/tok.json",
        "token embeddings of size 512; the password reset flow; special token <eos> id 50256",
        "git@github.com:team/repo.git and https://example.com/a@b",
    ],
)
def test_ordinary_training_output_is_left_alone(text):
    assert redact(text) == text


def test_a_process_knows_its_secret_held_values_by_name():
    environment = {
        "PROCTOR_SECRET_ENV": "DATASET_URL, SALT",
        "DATASET_URL": 'https://u:p@h/"x"',
        "SALT": "opaque-salt-0x7f",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "PROCTOR_REDACT_0": "hf_from_the_trainer",
        "HOME": "/tmp",
    }
    known = known_secrets(environment)
    assert set(known) == {
        'https://u:p@h/"x"',
        'https://u:p@h/\\"x\\"',  # as JSON writes it
        "opaque-salt-0x7f",
        "wJalrXUtnFEMI/K7MDENG",
        "hf_from_the_trainer",
    }
    assert redact("salt opaque-salt-0x7f", known) == f"salt {REDACTED}"
